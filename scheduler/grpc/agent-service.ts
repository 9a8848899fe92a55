// The agent API (service AgentLink). Agents may talk to any scheduler; every call but Register carries the
// agent's credential (handlers.ts authenticates it: the caller is that agent, by name), and everything an
// agent says is checked against Postgres by session (for the agent) and by lease and caller (for an
// attempt: an agent reports only on attempts placed on it). Each handler is one call into agents/ or runs/.
import type { SchedulerContext } from '../context.js';
import type { AgentLinkHandlers } from '../../shared/proto/gen/trainyard/v1/AgentLink.js';
import { unary, type Gate } from './handlers.js';
import { registerAgent } from '../agents/register.js';
import { agentHeartbeat } from '../agents/heartbeat.js';
import { reportStatus } from '../runs/report-status.js';
import { appendLogs } from '../runs/logs.js';
import { finishGang, memberAppendLogs, memberAppendMetrics, memberReport } from '../runs/gang-member.js';
import { appendMetrics } from '../runs/metrics-ingest.js';
import { finishAttempt } from '../runs/complete.js';
import { claimAttempt, renewStorage } from '../runs/claim.js';
import { peekNextRun } from '../runs/next-run.js';
import { authenticateAgent, authenticateRegister } from '../auth/authenticate.js';
import type { Principal } from '../auth/principal.js';
import type { AgentIdentities } from '../auth/agent-identities.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';

/** The calling agent's name (the agent gate only lets agents through). */
function agentOf(p: Principal): string {
  if (p.kind !== 'agent') throw new TrainyardError(ErrorCodes.Unauthenticated, 'this call needs an agent credential');
  return p.agent;
}

/** The ordinary answer, unless it refused the caller (stop) and the caller is a gang member the member path knows. */
async function orMember<T extends { stop?: boolean }>(ordinary: T, member: () => Promise<T | null>): Promise<T> {
  return ordinary.stop ? (await member()) ?? ordinary : ordinary;
}

export function agentService(ctx: SchedulerContext, identities: AgentIdentities): AgentLinkHandlers {
  const g: Gate = { log: ctx.log, authenticate: (md) => authenticateAgent(identities, md) };
  const joining: Gate = { log: ctx.log, authenticate: (md) => authenticateRegister(ctx.db, identities, md) };
  return {
    // The peer address is kept so that a second agent given the same name can be told where the first is.
    Register: unary(joining, 'Register', (req, caller, call) => registerAgent(ctx, req, caller, call.getPeer())),
    Heartbeat: unary(g, 'Heartbeat', (req, caller) => agentHeartbeat(ctx, req, agentOf(caller))),
    // A gang's members of node rank >= 1 (scheduler/runs/gang-member.ts) hold a lease of run_members, not
    // the run's: the ordinary path refuses them (its statements are guarded by the run's lease) and says stop,
    // and only then is the member path asked. Every other run's report costs no member lookup.
    ReportStatus: unary(g, 'ReportStatus', async (req, caller) => orMember(await reportStatus(ctx, req, agentOf(caller)), () => memberReport(ctx, req, agentOf(caller)))),
    AppendLogs: unary(g, 'AppendLogs', async (req, caller) => orMember(await appendLogs(ctx, req, agentOf(caller)), () => memberAppendLogs(ctx, req, agentOf(caller)))),
    AppendMetrics: unary(g, 'AppendMetrics', async (req, caller) => orMember(await appendMetrics(ctx, req, agentOf(caller)), () => memberAppendMetrics(ctx, req, agentOf(caller)))),
    FinishAttempt: unary(g, 'FinishAttempt', async (req, caller) => (await finishGang(ctx, req, agentOf(caller))) ?? finishAttempt(ctx, req, agentOf(caller))),
    ClaimAttempt: unary(g, 'ClaimAttempt', (req, caller) => claimAttempt(ctx, req, agentOf(caller))),
    RenewStorage: unary(g, 'RenewStorage', (req, caller) => renewStorage(ctx, req, agentOf(caller))),
    PeekNextRun: unary(g, 'PeekNextRun', (req, caller) => peekNextRun(ctx, req, agentOf(caller))),
  };
}
