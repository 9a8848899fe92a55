// What an agent says it runs, against what Postgres says it should run (on Register and every Heartbeat).
import type { SchedulerContext } from '../context.js';
import type { Db } from '../db/database.js';
import type { RunTransitions } from '../runs/transitions.js';
import type { HeldAttempt } from '../../shared/proto.js';
import { AgentStatus } from './status.js';

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

/**
 * Runs placed on an agent that is lost, or that left without handing them back (its last report never
 * arrived), go back to the queue, each a lost attempt: the placer's failure sweep for every such agent,
 * `trainyard agents remove --force` for the one it has just shut out (`agent`, with its own `reason`).
 * Returns how many runs were found on such agents, and how many of them went back (the others had
 * changed meanwhile).
 */
export async function requeueStranded(deps: { db: Db; runs: RunTransitions }, o: { agent?: string; reason?: string } = {}): Promise<{ found: number; requeued: number }> {
  let q = deps.db.selectFrom('runs').innerJoin('agents', 'agents.name', 'runs.agent')
    .select(['runs.id', 'runs.lease', 'agents.status']).where('agents.status', 'in', [AgentStatus.Lost, AgentStatus.Offline]);
  if (o.agent !== undefined) q = q.where('agents.name', '=', o.agent);
  const stranded = await q.execute();
  let requeued = 0;
  for (const r of stranded) {
    const reason = o.reason ?? (r.status === AgentStatus.Lost ? 'agent lost' : 'agent left without reporting');
    if (await deps.runs.requeue(r.id, r.lease!, reason, true)) requeued++;
  }
  return { found: stranded.length, requeued };
}
