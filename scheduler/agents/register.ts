// Register (AgentLink): an agent says who it is and what it has. Who it is was settled by handlers.ts:
// either its own credential (a restart: the name must be the credential's), or a join token (a new agent):
// then this issues the agent's credential, returned once and stored only as a SHA-256 in
// agents.identity_sha256. A join token takes a name only if nobody holds it (scheduler/agents/status.ts
// refuses a held one with ALREADY_EXISTS, saying only that it is taken; `trainyard agents remove` frees a gone one's).
import type { SchedulerContext } from '../context.js';
import type { RegisterRequest__Output, RegisterResponse } from '../../shared/proto.js';
import { checkName } from '../../shared/names.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import type { Principal } from '../auth/principal.js';
import { newAgentCredential } from '../auth/secrets.js';
import { register } from './status.js';
import { reconcile } from './reconcile.js';

async function identityOf(ctx: SchedulerContext, caller: Principal, name: string): Promise<{ sha256: string; credential: string }> {
  if (caller.kind === 'joining') {
    const c = newAgentCredential();
    return { sha256: c.sha256, credential: c.credential };
  }
  if (caller.kind !== 'agent' || caller.agent !== name) {
    const who = caller.kind === 'agent' ? `agent "${caller.agent}"` : 'a client token';
    throw new TrainyardError(ErrorCodes.PermissionDenied, `${who}'s credential cannot register agent "${name}"`);
  }
  // The hash of the credential it presented, checked against the row a moment ago (authenticateAgent), and
  // again by register() under the row's lock. Not the row's hash read again: if the name was removed and
  // taken by a new agent between the two, the row's would be the new agent's, and would match itself.
  return { sha256: caller.identitySha256, credential: '' };
}

export async function registerAgent(ctx: SchedulerContext, req: RegisterRequest__Output, caller: Principal, peer: string): Promise<RegisterResponse> {
  const name = checkName('agent', req.name);
  if (req.cpus < 0 || req.memory_mb < 0) throw invalid('cpus and memory_mb must not be negative');
  if (!Number.isInteger(req.max_runs) || req.max_runs < 0 || req.max_runs > 100_000) throw invalid(`max_runs must be 0 (no limit) to 100000, got ${req.max_runs}`);
  const gpus = req.gpus ?? [];
  if (new Set(gpus.map((g) => g.index)).size !== gpus.length) throw invalid('GPU indices must be distinct');
  if (req.identity.length > 1024) throw invalid('identity is longer than 1024 characters');
  if ((req.accept_projects ?? []).length > 1000) throw invalid('accept_projects: at most 1000 projects');
  // Empty: every project's runs (agents older than the field send none).
  const accept = req.accept_projects?.length ? [...new Set(req.accept_projects.map((p) => checkName('project', p)))].sort() : null;
  // Multi-agent runs (placement/gang.ts): where other members reach it, and the ports a rank 0 here may use.
  const lo = req.rendezvous_port_lo || 29500;
  const hi = req.rendezvous_port_hi || (req.rendezvous_port_lo ? lo : 29599);
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) throw invalid(`rendezvous ports ${lo}-${hi} are not a range of ports (1-65535, first <= last)`);
  if (req.advertise_addr.length > 255 || /[\s/]/.test(req.advertise_addr)) throw invalid(`advertise_addr "${req.advertise_addr.slice(0, 80)}" is not a host name or address`);
  const identity = await identityOf(ctx, caller, name);
  const { session } = await register(ctx, {
    name, hostname: req.hostname, version: req.version, cpus: req.cpus, memoryMb: req.memory_mb, labels: req.labels ?? {}, gpus, maxRuns: req.max_runs, acceptProjects: accept,
    identitySha256: identity.sha256, address: peer, joining: caller.kind === 'joining', advertiseAddr: req.advertise_addr, rendezvous: { lo, hi },
    ...(caller.kind === 'joining' ? { joinTokenId: caller.tokenId } : {}),
  });
  // A killed run it still holds is stopped at its next heartbeat (which says kill).
  const { cancel } = await reconcile(ctx, name, req.held ?? [], true);
  ctx.log.info({ agent: name, session, gpus: gpus.length, cpus: req.cpus, held: req.held?.length ?? 0, cancel: cancel.length,
    joined: caller.kind === 'joining' ? caller.tokenId : undefined }, 'agent registered');
  ctx.kick();
  return { session, heartbeat_interval_ms: ctx.settings.heartbeatIntervalMs, subject_prefix: ctx.settings.subjectPrefix, cancel, credential: identity.credential };
}
