// What an agent says it runs, against what Postgres says it should run (on Register and every Heartbeat).
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { Db } from '../db/database.js';
import type { RunTransitions } from '../runs/transitions.js';
import type { HeldAttempt } from '../../shared/proto.js';
import { AgentStatus } from './status.js';
import { membersOn } from '../runs/gang-member.js';

/**
 * Attempts the agent holds that are not current are returned (cancel), for the agent to stop, and current
 * ones whose run was killed or preempted (kill), for the agent to stop as killed. An acknowledged attempt the agent does
 * not list (nor a claim of it in flight) is gone from its memory, whatever the reason (a claim or finish
 * reply it never heard, a refusal it gave up on): the scheduler, not the agent, decides. With
 * `requeueMissing` (a Register: the agent process may have restarted) it goes back to the queue at once;
 * on a Heartbeat once it has been missing from `leaseBeats` beats in a row (one beat may cross a claim's
 * reply). Either way it is a lost attempt, or Killed if a kill was asked.
 */
export async function reconcile(ctx: SchedulerContext, agent: string, held: HeldAttempt[], requeueMissing: boolean): Promise<{ cancel: HeldAttempt[]; kill: HeldAttempt[] }> {
  const [placed, members] = await Promise.all([
    ctx.db.selectFrom('runs').select(['id', 'lease', 'attempt', 'acked_at', 'kill_requested', 'missed_beats', 'preempted_by']).where('agent', '=', agent).execute(),
    membersOn(ctx.db, agent),
  ]);
  const current = new Map(placed.map((r) => [r.id, r]));
  // A gang's members of node rank >= 1 here (runs/gang-member.ts) are current too. One missing from a
  // heartbeat is not counted here: the member's end report, or its agent's loss, requeues the gang.
  for (const m of members) {
    current.set(m.id, { id: m.id, lease: m.lease, attempt: m.attempt, acked_at: null, kill_requested: m.kill, missed_beats: 0, preempted_by: null });
  }
  const heldIds = new Set<string>();
  const cancel: HeldAttempt[] = [];
  const kill: HeldAttempt[] = [];
  for (const h of held) {
    const r = current.get(h.run_id!);
    if (Number(h.lease) === 0) {
      // A claim in flight: it holds nothing to stop yet, and keeps its attempt from being taken back.
      if (r && r.attempt === h.attempt) heldIds.add(r.id);
      continue;
    }
    // Only the current lease holds a run: an older attempt still stopping here does not.
    if (!r || r.lease !== Number(h.lease)) cancel.push({ run_id: h.run_id, lease: h.lease });
    else {
      heldIds.add(r.id);
      // A preempted attempt is stopped the same way; its end report then requeues it (runs/complete.ts).
      if (r.kill_requested || r.preempted_by !== null) kill.push({ run_id: h.run_id, lease: h.lease });
    }
  }
  const missing = placed.filter((r) => r.acked_at !== null && !heldIds.has(r.id));
  // A gang's member this agent acknowledged and, registering again, no longer holds (it restarted, and the
  // member had no record to be taken over from): the gang goes back whole, as for a lost member's agent.
  // Its other ranks would otherwise wait at their rendezvous, holding their GPUs, for a rank that is gone.
  // (Between registrations a member's missing beats are not counted; its rank 0's stall or its own end is.)
  if (requeueMissing) {
    for (const m of members.filter((x) => x.acked_at !== null && !heldIds.has(x.id))) {
      const why = `gang member on agent ${agent}: the agent restarted and lost it`;
      const c = await ctx.runs.requeue(m.id, m.lease, why, true);
      if (c) ctx.log.warn({ run: m.id, agent, reason: why, status: c.status }, 'multi-agent run taken back: a member\'s agent lost it');
    }
  }
  const back = missing.filter((r) => requeueMissing || r.missed_beats + 1 >= ctx.settings.attemptLeaseBeats);
  const counted = missing.filter((r) => !back.includes(r));
  const listedAgain = placed.filter((r) => r.missed_beats > 0 && heldIds.has(r.id));
  // One statement, only when a count changes (most beats change none), guarded by the lease it counted.
  if (counted.length + listedAgain.length > 0) {
    const ids = [...counted, ...listedAgain].map((r) => r.id);
    const leases = [...counted, ...listedAgain].map((r) => String(r.lease));
    await sql`UPDATE runs SET missed_beats = CASE WHEN runs.id = ANY(${counted.map((r) => r.id)}::text[]) THEN missed_beats + 1 ELSE 0 END
      FROM unnest(${ids}::text[], ${leases}::bigint[]) AS c(id, lease)
      WHERE runs.id = c.id AND runs.lease = c.lease AND runs.agent = ${agent}`.execute(ctx.db);
  }
  for (const r of back) {
    const why = requeueMissing ? `agent ${agent} restarted and lost the attempt` : `agent ${agent} no longer holds the attempt (missing from ${ctx.settings.attemptLeaseBeats} heartbeats)`;
    const c = await ctx.runs.requeue(r.id, r.lease!, why, true);
    if (c) ctx.log.warn({ run: r.id, agent, reason: why, status: c.status }, 'attempt taken back from its agent');
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
