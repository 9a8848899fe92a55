// Register (AgentLink): an agent says who it is and what it has. Its identity is a random value kept in
// its work dir; only the SHA-256 is stored (scheduler/agents/status.ts refuses a name held by a live agent
// with another identity).
import { createHash } from 'node:crypto';
import type { SchedulerContext } from '../context.js';
import type { RegisterRequest__Output, RegisterResponse } from '../../shared/proto.js';
import { checkName } from '../../shared/names.js';
import { invalid } from '../../shared/errors.js';
import { register } from './status.js';
import { reconcile } from './reconcile.js';

export async function registerAgent(ctx: SchedulerContext, req: RegisterRequest__Output, peer: string): Promise<RegisterResponse> {
  const name = checkName('agent', req.name);
  if (req.cpus < 0 || req.memory_mb < 0) throw invalid('cpus and memory_mb must not be negative');
  const gpus = req.gpus ?? [];
  if (new Set(gpus.map((g) => g.index)).size !== gpus.length) throw invalid('GPU indices must be distinct');
  if (req.identity.length > 1024) throw invalid('identity is longer than 1024 characters');
  const { session } = await register(ctx, {
    name, hostname: req.hostname, version: req.version, cpus: req.cpus, memoryMb: req.memory_mb, labels: req.labels ?? {}, gpus,
    identitySha256: createHash('sha256').update(req.identity).digest('hex'), address: peer,
  }, ctx.settings.agentLostAfterMs);
  const cancel = await reconcile(ctx, name, req.held ?? [], true);
  ctx.log.info({ agent: name, session, gpus: gpus.length, cpus: req.cpus, held: req.held?.length ?? 0, cancel: cancel.length }, 'agent registered');
  ctx.kick();
  return { session, heartbeat_interval_ms: ctx.settings.heartbeatIntervalMs, subject_prefix: ctx.settings.subjectPrefix, cancel };
}
