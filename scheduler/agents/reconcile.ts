// What an agent says it runs, against what Postgres says it should run (on Register and every Heartbeat).
import type { SchedulerContext } from '../context.js';
import type { HeldAttempt } from '../../shared/proto.js';

/**
 * Attempts the agent holds that are not current are returned (cancel), for the agent to stop, and current
 * ones whose run was killed (kill), for the agent to stop as killed. With
 * `requeueMissing` (a Register: the agent process may have restarted), acknowledged attempts it no longer
 * holds were lost with its old process and go back to the queue.
 */
export async function reconcile(ctx: SchedulerContext, agent: string, held: HeldAttempt[], requeueMissing: boolean): Promise<{ cancel: HeldAttempt[]; kill: HeldAttempt[] }> {
  const placed = await ctx.db.selectFrom('runs').select(['id', 'lease', 'acked_at', 'kill_requested']).where('agent', '=', agent).execute();
  const current = new Map(placed.map((r) => [r.id, r]));
  const heldIds = new Set<string>();
  const cancel: HeldAttempt[] = [];
  const kill: HeldAttempt[] = [];
  for (const h of held) {
    heldIds.add(h.run_id!);
    const r = current.get(h.run_id!);
    if (!r || r.lease !== Number(h.lease)) cancel.push({ run_id: h.run_id, lease: h.lease });
    else if (r.kill_requested) kill.push({ run_id: h.run_id, lease: h.lease });
  }
  if (requeueMissing) {
    for (const r of placed) {
      if (heldIds.has(r.id) || r.acked_at === null) continue;
      await ctx.runs.requeue(r.id, r.lease!, `agent ${agent} restarted and lost the attempt`, true);
    }
  }
  return { cancel, kill };
}
