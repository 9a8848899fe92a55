// ClaimAttempt (AgentLink): NATS only rings an agent's doorbell with a run's id; the agent takes the
// attempt's details here. One indexed statement (the primary key) that answers only for a run placed on
// the calling agent and not started yet, and acknowledges the dispatch in the same write, so the placer's
// ack deadline leaves it alone (the Packaging report acknowledges too, as before).
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { ClaimAttemptRequest__Output, Dispatch } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { RunStatus } from '../../shared/run-states.js';
import { dispatchFor } from './dispatch.js';
import { isRunId } from '../../shared/ids.js';

/**
 * Which agent is asking: the authenticated caller (scheduler/grpc/agent-service.ts passes it). The
 * request's `agent` is only a cross-check; without an authenticated caller (callers of this function
 * outside the gRPC service) it is the name.
 */
export function claimingAgent(req: ClaimAttemptRequest__Output, authenticated?: string): string {
  if (authenticated === undefined) return req.agent;
  if (req.agent && req.agent !== authenticated) throw new TrainyardError(ErrorCodes.PermissionDenied, `agent ${authenticated} cannot claim for agent ${req.agent}`);
  return authenticated;
}

export async function claimAttempt(ctx: SchedulerContext, req: ClaimAttemptRequest__Output, authenticated?: string): Promise<Dispatch> {
  const agent = claimingAgent(req, authenticated);
  if (!isRunId(req.run_id)) throw invalid(`run id "${req.run_id}" is not a run id`);
  if (!agent) throw invalid('the claiming agent is not named');
  let q = ctx.db.updateTable('runs')
    .set({ acked_at: sql<Date>`coalesce(acked_at, now())` })
    .where('id', '=', req.run_id).where('agent', '=', agent).where('status', '=', RunStatus.Scheduled).where('lease', 'is not', null);
  if (req.attempt) q = q.where('attempt', '=', req.attempt);
  const row = await q.returningAll().executeTakeFirst();
  if (!row) throw notFound(`run ${req.run_id}${req.attempt ? ` attempt ${req.attempt}` : ''} is not waiting to start on agent ${agent}`);
  return dispatchFor(row, ctx.settings.bucket);
}
