// Impossible states, looked for continuously. Every transition is one guarded statement, so none of these
// should ever exist; the sweep is how we would know if one did (a bug, a manual edit of the database, an
// older scheduler). The placing scheduler runs it every few seconds with repair on; `trainyard doctor`
// runs it on demand. Each finding is logged with its run id and recorded in invariant_violations, and
// what is safe to repair is repaired through the same transitions everything else uses.
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from './db/database.js';
import type { RunTransitions } from './runs/transitions.js';
import { states } from './runs/transitions.js';
import { schedulerMetrics } from './metrics.js';
import { RunStatus, placedStatuses, queuedStatuses, terminalStatuses } from '../shared/run-states.js';

/** The kinds of impossible state, each with what the sweep does about it (README "Reliability"). */
export const ViolationKind = {
  /** A GPU lease whose run does not hold that GPU (not placed, another attempt, another agent): deleted. */
  OrphanGpuLease: 'orphan_gpu_lease',
  /** A placed run whose GPU has no lease row: the lease is written back. */
  MissingGpuLease: 'missing_gpu_lease',
  /** A queued run with a kill requested (the queue skips it, so it would wait forever): ended Killed. */
  KilledButQueued: 'killed_but_queued',
  /** A run placed on an agent not heard from for twice the loss deadline, or lost/gone: requeued. */
  PlacedOnSilentAgent: 'placed_on_silent_agent',
  /** More agent-loss attempts than max_attempts, or a live run that has spent them: a queued one fails. */
  AttemptsOverBudget: 'attempts_over_budget',
  /** A finished run still holding an agent: reported only. */
  EndedButPlaced: 'ended_but_placed',
  /** Packaging or Running without an agent: reported only. */
  RunningWithoutAgent: 'running_without_agent',
  /** A placement the database refused (the run stays queued; the cause is repaired by the kinds above). */
  PlacementFailed: 'placement_failed',
  // Stranded attempts (issue 20): each is normally handled as it happens (the ack deadline, the held list
  // of each heartbeat, the Packaging deadline); one found here is one that handling missed.
  /** A dispatch unacknowledged for twice the ack deadline: placed again. */
  DispatchUnacknowledged: 'dispatch_unacknowledged',
  /** An acknowledged attempt its agent has left out of its heartbeats for the lease: requeued (a lost attempt). */
  AttemptNotHeld: 'attempt_not_held',
  /** In Packaging past the scheduler's --packaging-deadline: ended Failed. */
  PackagingPastDeadline: 'packaging_past_deadline',
  /**
   * A gang run (placement/gang.ts) holding GPUs on some of its members but not all of them, or while not
   * placed: the state all-or-nothing placement exists to rule out. Reported only: its causes (a lease left
   * over, one missing) are repaired by the lease kinds above, and the run's own transitions free the rest.
   */
  PartialGang: 'partial_gang',
} as const;
export type ViolationKind = (typeof ViolationKind)[keyof typeof ViolationKind];

export interface Violation { kind: ViolationKind; runId: string; agent: string; detail: string; repaired: boolean }

export interface InvariantDeps {
  db: Db; runs: RunTransitions; log: Logger; agentLostAfterMs: number;
  /** The deadlines stranded attempts are judged by (scheduler settings); absent or 0: that kind is not looked for. */
  dispatchAckTimeoutMs?: number; attemptLeaseBeats?: number; packagingDeadlineMs?: number;
}

const PLACED = states(placedStatuses);
const QUEUED = states(queuedStatuses);
const TERMINAL = states([...terminalStatuses]);

export class Invariants {
  constructor(private readonly deps: InvariantDeps) {}

  /**
   * Looks for every kind of impossible state. `judgeSilence` is false right after a scheduler took over
   * placement (no heartbeats were heard while nobody led), so agent silence proves nothing yet.
   */
  async check(o: { repair: boolean; judgeSilence: boolean }): Promise<Violation[]> {
    const { db, runs, agentLostAfterMs } = this.deps;
    const found: Violation[] = [];
    const add = (v: Omit<Violation, 'repaired'>, repaired = false) => found.push({ ...v, repaired });

    const orphans = await sql<{ agent: string; gpu_index: number; run_id: string; lease: number; why: string }>`
      SELECT l.agent, l.gpu_index, l.run_id, l.lease,
        CASE WHEN r.id IS NULL THEN 'no such run'
             WHEN r.agent IS NULL THEN 'the run is ' || r.status || ' and placed nowhere'
             WHEN r.agent <> l.agent THEN 'the run is on ' || r.agent
             WHEN r.lease <> l.lease THEN 'the run is on attempt lease ' || r.lease || ', the lease is ' || l.lease
             ELSE 'the run holds GPUs ' || array_to_string(r.gpu_indices, ',') END AS why
      FROM gpu_leases l LEFT JOIN runs r ON r.id = l.run_id
      WHERE (r.id IS NULL OR r.agent IS DISTINCT FROM l.agent OR r.lease IS DISTINCT FROM l.lease
         OR NOT (l.gpu_index = ANY (r.gpu_indices)))
        -- A gang's member of node rank >= 1 (placement/gang.ts) holds its GPUs on its own agent.
        AND NOT (r.agent IS NOT NULL AND r.lease = l.lease AND EXISTS (SELECT 1 FROM run_members m
          WHERE m.run_id = l.run_id AND m.lease = l.lease AND m.agent = l.agent AND l.gpu_index = ANY (m.gpu_indices)))`.execute(db);
    for (const l of orphans.rows) {
      let repaired = false;
      if (o.repair) {
        // Guarded by the whole row: a lease written again meanwhile by a new placement is not touched.
        const del = await db.deleteFrom('gpu_leases').where('agent', '=', l.agent).where('gpu_index', '=', l.gpu_index)
          .where('run_id', '=', l.run_id).where('lease', '=', l.lease).executeTakeFirst();
        repaired = Number(del.numDeletedRows) > 0;
      }
      add({ kind: ViolationKind.OrphanGpuLease, runId: l.run_id, agent: l.agent, detail: `GPU ${l.gpu_index} leased to ${l.run_id}, but ${l.why}` }, repaired);
    }

    const missing = await sql<{ id: string; agent: string; gpu_index: number; lease: number }>`
      SELECT r.id, r.agent, g AS gpu_index, r.lease FROM runs r, unnest(r.gpu_indices) AS g
      WHERE r.agent IS NOT NULL AND r.status IN ${PLACED} AND r.released_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM gpu_leases l WHERE l.run_id = r.id AND l.agent = r.agent AND l.gpu_index = g AND l.lease = r.lease)`.execute(db);
    for (const m of missing.rows) {
      let repaired = false;
      if (o.repair) {
        const ins = await db.insertInto('gpu_leases').values({ agent: m.agent, gpu_index: m.gpu_index, run_id: m.id, lease: Number(m.lease) })
          .onConflict((oc) => oc.doNothing()).executeTakeFirst();
        repaired = Number(ins.numInsertedOrUpdatedRows ?? 0) > 0;
      }
      add({ kind: ViolationKind.MissingGpuLease, runId: m.id, agent: m.agent, detail: `placed on GPU ${m.gpu_index} of ${m.agent} without a lease` }, repaired);
    }

    const killedQueued = await sql<{ id: string; status: string }>`
      SELECT id, status FROM runs WHERE agent IS NULL AND status IN ${QUEUED} AND kill_requested`.execute(db);
    for (const r of killedQueued.rows) {
      const repaired = o.repair && (await runs.kill(r.id)) === 'ended';
      add({ kind: ViolationKind.KilledButQueued, runId: r.id, agent: '', detail: `${r.status} with a kill requested` }, repaired);
    }

    if (o.judgeSilence) {
      // Twice the loss deadline: the failure sweep requeues such runs within about a second of the first.
      const silentFor = sql`now() - make_interval(secs => ${(2 * agentLostAfterMs) / 1000})`;
      const goneFor = sql`now() - make_interval(secs => ${agentLostAfterMs / 1000})`;
      const silent = await sql<{ id: string; agent: string; lease: number; status: string; why: string }>`
        SELECT r.id, r.agent, r.lease, r.status,
          CASE WHEN a.name IS NULL THEN 'the agent is not registered'
               ELSE 'the agent is ' || a.status || ', last heard ' || to_char(a.last_heartbeat_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END AS why
        FROM runs r LEFT JOIN agents a ON a.name = r.agent
        WHERE r.agent IS NOT NULL AND r.status IN ${PLACED}
          AND (a.name IS NULL OR a.last_heartbeat_at < ${silentFor}
               OR (a.status IN ('lost', 'offline') AND a.last_heartbeat_at < ${goneFor}))`.execute(db);
      for (const r of silent.rows) {
        const repaired = o.repair && (await runs.requeue(r.id, Number(r.lease), 'agent lost', true)) !== null;
        add({ kind: ViolationKind.PlacedOnSilentAgent, runId: r.id, agent: r.agent, detail: `${r.status} on ${r.agent}, but ${r.why}` }, repaired);
      }
    }

    const over = await sql<{ id: string; status: RunStatus; agent: string | null; lost_attempts: number; max_attempts: number }>`
      SELECT id, status, agent, lost_attempts, max_attempts FROM runs
      WHERE lost_attempts > max_attempts OR (lost_attempts >= max_attempts AND status NOT IN ${TERMINAL})`.execute(db);
    for (const r of over.rows) {
      const repaired = o.repair && r.agent === null && !terminalStatuses.has(r.status)
        && (await runs.endUnplaced(r.id, RunStatus.Failed, `attempts spent: ${r.lost_attempts} of ${r.max_attempts}`)) !== null;
      add({ kind: ViolationKind.AttemptsOverBudget, runId: r.id, agent: r.agent ?? '', detail: `${r.status} after ${r.lost_attempts} lost attempts of ${r.max_attempts}` }, repaired);
    }

    const endedPlaced = await sql<{ id: string; status: string; agent: string }>`
      SELECT id, status, agent FROM runs WHERE agent IS NOT NULL AND status IN ${TERMINAL}`.execute(db);
    for (const r of endedPlaced.rows) add({ kind: ViolationKind.EndedButPlaced, runId: r.id, agent: r.agent, detail: `${r.status} but still placed on ${r.agent}` });

    found.push(...await this.#stranded(o.repair));

    for (const g of await partialGangs(db)) add({ kind: ViolationKind.PartialGang, runId: g.id, agent: g.agent ?? '', detail: g.detail });

    const noAgent = await sql<{ id: string; status: string }>`
      SELECT id, status FROM runs WHERE agent IS NULL AND status IN ${states([RunStatus.Packaging, RunStatus.Running])}`.execute(db);
    for (const r of noAgent.rows) add({ kind: ViolationKind.RunningWithoutAgent, runId: r.id, agent: '', detail: `${r.status} without an agent` });

    return found;
  }

  /** Attempts left behind at a handshake (the kinds above DispatchUnacknowledged), repaired when asked. */
  async #stranded(repair: boolean): Promise<Violation[]> {
    const { db, runs, dispatchAckTimeoutMs: ackMs = 0, attemptLeaseBeats: beats = 0, packagingDeadlineMs: packMs = 0 } = this.deps;
    const out: Violation[] = [];
    const ago = (ms: number) => sql`now() - make_interval(secs => ${ms / 1000})`;
    const rows = await sql<{ id: string; agent: string; lease: string; kind: ViolationKind; detail: string }>`
      SELECT id, agent, lease, ${ViolationKind.DispatchUnacknowledged}::text AS kind, 'dispatched to ' || agent || ' at ' || to_char(dispatched_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ', never acknowledged' AS detail
        FROM runs WHERE ${ackMs > 0} AND agent IS NOT NULL AND acked_at IS NULL AND status = ${sql.lit(RunStatus.Scheduled)}::run_status AND dispatched_at < ${ago(2 * ackMs)}
      UNION ALL
      SELECT id, agent, lease, ${ViolationKind.AttemptNotHeld}::text, status || ' on ' || agent || ', left out of its last ' || missed_beats || ' heartbeats'
        FROM runs WHERE ${beats > 0} AND agent IS NOT NULL AND acked_at IS NOT NULL AND status IN ${PLACED} AND missed_beats >= ${beats}
      UNION ALL
      SELECT id, agent, lease, ${ViolationKind.PackagingPastDeadline}::text, 'Packaging on ' || agent || ' since ' || to_char(packaging_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        FROM runs WHERE ${packMs > 0} AND agent IS NOT NULL AND status = ${sql.lit(RunStatus.Packaging)}::run_status AND packaging_at < ${ago(packMs)}`.execute(db);
    for (const r of rows.rows) {
      const lease = Number(r.lease);
      let repaired = false;
      if (repair) {
        const done = r.kind === ViolationKind.DispatchUnacknowledged ? runs.requeue(r.id, lease, 'dispatch never acknowledged (doctor)', false, null, { unacked: true })
          : r.kind === ViolationKind.AttemptNotHeld ? runs.requeue(r.id, lease, `agent ${r.agent} no longer holds the attempt (doctor)`, true)
          : runs.endAttempt(r.id, lease, r.agent, RunStatus.Failed, `packaging did not finish within ${packMs / 1000} s (doctor)`);
        repaired = (await done) !== null;
      }
      out.push({ kind: r.kind, runId: r.id, agent: r.agent, detail: r.detail, repaired });
    }
    return out;
  }

  /** check(), then log and record each finding. Returns what it found. */
  async sweep(o: { repair: boolean; judgeSilence: boolean }): Promise<Violation[]> {
    const found = await this.check(o);
    await this.record(found);
    return found;
  }

  async recordFailedPlacements(failed: { id: string; error: unknown }[]): Promise<void> {
    await this.record(failed.map((f) => ({ kind: ViolationKind.PlacementFailed, runId: f.id, agent: '', detail: String(f.error), repaired: false })));
  }

  async record(found: Violation[]): Promise<void> {
    if (found.length === 0) return;
    for (const v of found) {
      schedulerMetrics.invariantViolations.inc({ kind: v.kind });
      this.deps.log.error({ invariant: v.kind, run: v.runId || undefined, agent: v.agent || undefined, detail: v.detail, repaired: v.repaired }, 'invariant violated');
    }
    await this.deps.db.insertInto('invariant_violations')
      .values(found.map((v) => ({ kind: v.kind, run_id: v.runId, agent: v.agent, detail: v.detail, repaired: v.repaired }))).execute();
  }
}

/** A gang run found holding GPUs as only part of a gang; `detail` says what it holds against what it should. */
export interface PartialGang { id: string; agent: string | null; detail: string }

/**
 * Gang runs holding GPUs as a partial gang, in one read (so one instant of the database): a gang run holds
 * either every member's GPUs (placed, its N members current, N x gpus leases on N agents) or none. The
 * invariant sweep looks for them, and the soak samples this between sweeps (bench/soak.ts).
 */
export async function partialGangs(db: Db): Promise<PartialGang[]> {
  // Driven by the leases (few) rather than the runs (many). A placed run's leases of another attempt are
  // orphans (reported as such above); a run not placed holds none at all.
  const { rows } = await sql<PartialGang>`
    WITH h AS (
      SELECT l.run_id, count(DISTINCT l.agent)::int AS agents, count(*)::int AS gpus
      FROM gpu_leases l JOIN runs r ON r.id = l.run_id AND r.agents > 1
      WHERE r.agent IS NULL OR r.status NOT IN ${PLACED} OR l.lease = r.lease
      GROUP BY l.run_id)
    SELECT r.id, r.agent,
      r.status || CASE WHEN r.agent IS NULL THEN ' and placed nowhere' ELSE ' on ' || r.agent END
        || ': GPU leases on ' || h.agents || ' agents for its ' || r.agents || ' members (' || h.gpus || ' GPUs of '
        || r.agents * r.gpus || '), ' || 1 + m.members || ' members current' AS detail
    FROM h JOIN runs r ON r.id = h.run_id
    CROSS JOIN LATERAL (SELECT count(*)::int AS members FROM run_members m WHERE m.run_id = r.id AND m.lease = r.lease) m
    WHERE r.agent IS NULL OR r.status NOT IN ${PLACED} OR h.agents <> r.agents OR h.gpus <> r.agents * r.gpus OR 1 + m.members <> r.agents`.execute(db);
  return rows;
}

/** `trainyard doctor`: a check now (repairing when asked) and what the sweep has recorded so far. */
export async function doctor(deps: InvariantDeps, repair: boolean): Promise<{
  current: Violation[]; recordedTotal: number; recordedByKind: { kind: string; count: number }[];
  recent: (Violation & { foundAt: Date })[];
}> {
  const inv = new Invariants(deps);
  const current = repair ? await inv.sweep({ repair: true, judgeSilence: true }) : await inv.check({ repair: false, judgeSilence: true });
  const byKind = await deps.db.selectFrom('invariant_violations').select(['kind', sql<number>`count(*)::int`.as('count')])
    .groupBy('kind').orderBy('kind').execute();
  const recent = await deps.db.selectFrom('invariant_violations').selectAll().orderBy('id', 'desc').limit(50).execute();
  return {
    current,
    recordedTotal: byKind.reduce((n, k) => n + Number(k.count), 0),
    recordedByKind: byKind.map((k) => ({ kind: k.kind, count: Number(k.count) })),
    recent: recent.map((r) => ({ kind: r.kind as ViolationKind, runId: r.run_id, agent: r.agent, detail: r.detail, repaired: r.repaired, foundAt: r.found_at })),
  };
}
