// The agent API (service AgentLink). Agents may talk to any scheduler; everything they say is checked
// against Postgres by session (for the agent) and by lease (for an attempt). Each handler is one call into
// agents/ or runs/.
import type { SchedulerContext } from '../context.js';
import type { AgentLinkHandlers } from '../../shared/proto/gen/trainyard/v1/AgentLink.js';
import { unary } from './handlers.js';
import { registerAgent } from '../agents/register.js';
import { agentHeartbeat } from '../agents/heartbeat.js';
import { reportStatus } from '../runs/report-status.js';
import { appendLogs } from '../runs/logs.js';
import { finishAttempt } from '../runs/complete.js';

export function agentService(ctx: SchedulerContext): AgentLinkHandlers {
  const { log } = ctx;
  return {
    // The peer address is kept so that a second agent given the same name can be told where the first is.
    Register: unary(log, 'Register', (req, call) => registerAgent(ctx, req, call.getPeer())),
    Heartbeat: unary(log, 'Heartbeat', (req) => agentHeartbeat(ctx, req)),
    ReportStatus: unary(log, 'ReportStatus', (req) => reportStatus(ctx, req)),
    AppendLogs: unary(log, 'AppendLogs', (req) => appendLogs(ctx, req)),
    FinishAttempt: unary(log, 'FinishAttempt', (req) => finishAttempt(ctx, req)),
  };
}
