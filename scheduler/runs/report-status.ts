// ReportStatus (AgentLink): an attempt's progress (accepted, Packaging, Running, released: its processes exited
// and its capacity is given back; checkpointed: checkpoint-report.ts), each a run transition
// guarded by the attempt's lease and by the reporting agent (the authenticated caller). The answer tells the attempt to stop when it is no longer current.
import type { SchedulerContext } from '../context.js';
import type { ReportStatusRequest__Output, ReportStatusResponse } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';
import { RunStatus } from '../../shared/run-states.js';
import { recordCheckpoint } from './checkpoint-report.js';
import type { Changed } from './transitions.js';

export async function reportStatus(ctx: SchedulerContext, req: ReportStatusRequest__Output, agent: string): Promise<ReportStatusResponse> {
  const lease = Number(req.lease);
  let changed: Changed | null = null;
  if (req.status === 'accepted') await ctx.runs.acknowledge(req.run_id, lease, agent);
  else if (req.status === RunStatus.Packaging) changed = await ctx.runs.startPackaging(req.run_id, lease, agent);
  else if (req.status === RunStatus.Running) changed = await ctx.runs.startRunning(req.run_id, lease, agent);
  else if (req.status === 'released') changed = await ctx.runs.releaseCapacity(req.run_id, lease, agent);
  else if (req.status === 'checkpointed') await recordCheckpoint(ctx.db, req.run_id, lease, agent, Number(req.checkpoint_at), Number(req.checkpoint_bytes));
  else throw invalid(`unknown status report "${req.status}"`);
  // A change was guarded by this lease and agent, so the attempt is current; whether to stop is in the
  // changed row. Otherwise (a report sent again, a stale attempt) the run is read.
  if (changed?.stopAsked !== undefined) return { stop: changed.stopAsked };
  const run = await ctx.db.selectFrom('runs').select(['lease', 'agent', 'kill_requested', 'preempted_by']).where('id', '=', req.run_id).executeTakeFirst();
  return { stop: !run || run.lease !== lease || run.agent !== agent || run.kill_requested || run.preempted_by !== null };
}
