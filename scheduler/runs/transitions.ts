// The run state machine, in one place. One method per transition, each ONE SQL statement: the guarded
// UPDATE of the run, its run_events row and its gpu_leases change are data-modifying CTEs of the same
// statement (as graphile-worker's completeJobs/failJobs do), so they commit together or not at all — a
// scheduler killed at any instant can never leave a lease whose run no longer holds the GPU.
//
// Each guard names the state it expects (and, for an agent's attempt, the fencing token `lease` and the
// authenticated agent that reports: `agent = $caller`, so a lease alone is worth nothing to another agent),
// so a transition that lost a race, comes from a stale attempt or from the wrong agent, changes nothing and
// says so by returning null. The states in SQL come from the one RunStatus list (shared/run-states.ts), never from literals.
// Every change goes through one hook (the scheduler logs it and rings the doorbells), after it committed.
//
//   Scheduled ──place──▶ Scheduled(agent) ──▶ Packaging ──▶ Running ──▶ Successful
//       │  ▲                  │    │              │            │
//       ▼  │ requeue          │    └──────────────┴────────────┴──▶ Failed | Killed
//   Waiting for resources ◀───┘ (agent lost, dispatch not acked, handed back)
//   (preempt: a Running attempt is stopped for a higher-priority run and goes back to Waiting, not counted)
//   (kill, from any state that is not terminal: unplaced → Killed at once; placed → kill_requested, and
//    the attempt's end — reported, or a requeue — makes it Killed)
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { PhaseRow, Database, Db, RecordedOutput } from '../db/database.js';
import { RunStatus, placedStatuses, queuedStatuses, terminalStatuses } from '../../shared/run-states.js';
import { AgentStatus } from '../agents/status.js';
import { EventKind } from '../../shared/event-kinds.js';

type Q = Db | Transaction<Database>;

/** What a transition changed, as the hook and the callers see it. */
export interface Changed {
  id: string;
  status: RunStatus;
  attempt: number;
  /** The agent that holds (or last held) the run. */
  agent: string | null;
  lease: number | null;
  /** The run_events detail. */
  detail: string;
  /** True when the change gave back an agent's capacity (the placer may have work). */
  freed: boolean;
  /** Seconds since the run was submitted, by the database's clock (the submit→start metric). */
  ageSeconds?: number;
  /**
   * A kill or a preemption was asked of the run, as the changed row says (the statement's own RETURNING):
   * the agent's report is answered "stop" without reading the run again.
   */
  stopAsked?: boolean;
}
export type RunHook = (c: Changed) => void;

/** A SQL list of states, from the one list: `status IN ${states(...)}`. */
export function states(list: readonly RunStatus[]): RawBuilder<unknown> {
  return sql`(${sql.join(list.map((s) => sql`${sql.lit(s)}::run_status`))})`;
}
const st = (s: RunStatus) => sql`${sql.lit(s)}::run_status`;
const PLACED = states(placedStatuses);
const QUEUED = states(queuedStatuses);
const LIVE = states([...queuedStatuses, ...placedStatuses]);
const TERMINAL = states([...terminalStatuses]);
/** A run's secrets go in the statement that ends it: nothing after the end may read them. */
const FORGET_SECRETS = sql`s AS (DELETE FROM run_secrets WHERE run_id IN (SELECT id FROM r WHERE status IN ${TERMINAL}))`;

type Row = { id: string; status: RunStatus; attempt: number; agent: string | null; lease: string | number | null; detail: string; age_s: number; stop_asked?: boolean };
const changed = ({ age_s: ageSeconds, stop_asked: stopAsked, ...r }: Row, freed: boolean): Changed =>
  ({ ...r, lease: r.lease === null ? null : Number(r.lease), freed, ageSeconds, ...(stopAsked !== undefined ? { stopAsked } : {}) });

/**
 * One statement: `update` must be an UPDATE of runs returning `id, status, attempt, agent, lease, detail`
 * (agent as coalesce(agent, last_agent)). Its event row is written by the same statement, with
 * `releaseGpus` its GPU leases are deleted by it too, and with `canEnd` (it may leave the run in a terminal
 * state) its secrets; a transition that never ends a run (a whole pass's markWaiting) does not pay for that.
 */
async function apply(q: Q, update: RawBuilder<unknown>, o: { releaseGpus: boolean; freed: boolean; canEnd: boolean }): Promise<Changed[]> {
  const { rows } = await sql<Row>`
    WITH r AS (${update}),
    e AS (INSERT INTO run_events (run_id, attempt, status, detail) SELECT id, attempt, status, detail FROM r)
    ${o.canEnd ? sql`, ${FORGET_SECRETS}` : sql``}
    ${o.releaseGpus ? sql`, g AS (DELETE FROM gpu_leases WHERE run_id IN (SELECT id FROM r))` : sql``}
    SELECT * FROM r`.execute(q);
  return rows.map((r) => changed(r, o.freed));
}
const NEVER_ENDS = { releaseGpus: false, freed: false, canEnd: false };

const RETURNING = sql`RETURNING runs.id, runs.status, runs.attempt, coalesce(runs.agent, runs.last_agent) AS agent, runs.lease,
  extract(epoch FROM now() - runs.created_at)::float8 AS age_s, runs.kill_requested OR runs.preempted_by IS NOT NULL AS stop_asked`;

/**
 * The runs a batch names (`b`, with an `id` column), each found by one primary-key probe and kept if it
 * passes `guard` (a condition on `runs`), with its row's address: `FROM ${probe(...)} w WHERE runs.ctid = w.at
 * AND runs.id = w.id`. However stale the planner's statistics (a burst of submits not analyzed yet makes
 * it believe the queue empty), this stays a thousand probes and never becomes a scan of the queue per
 * batch: the fence (OFFSET 0) keeps the probes apart, and the guard is tested on the row found rather than
 * in the probe's WHERE, where it would let the planner pick a queue index over the primary key. A run
 * changed since the statement began is at another address when the UPDATE reaches it, so the UPDATE skips
 * it: it lost a race, and its guard was not checked against what won.
 */
function probe(batch: RawBuilder<unknown>, guard: RawBuilder<unknown>, project = false): RawBuilder<unknown> {
  return sql`(SELECT b.*, x.at${project ? sql`, x.project` : sql``} FROM ${batch}
    CROSS JOIN LATERAL (SELECT runs.ctid AS at, ${guard} AS ok${project ? sql`, runs.project` : sql``} FROM runs WHERE runs.id = b.id OFFSET 0) x WHERE x.ok)`;
}

/**
 * A placement's exclusivity (`projects set P --exclusive true`), checked by the place statement itself: no
 * run of another project is on the agent now, nor placed on it by the same statement, when either project
 * is exclusive. Placements are made by the one leader, one statement at a time on the session that holds
 * its lock, so each statement sees every placement before it: two projects cannot land on one agent at
 * once. Without an exclusive project (the common case) the first test settles it, once per statement.
 */
const EXCLUSIVE_OK = sql`(NOT EXISTS (SELECT 1 FROM project_limits WHERE exclusive) OR (
  NOT EXISTS (SELECT 1 FROM runs o LEFT JOIN project_limits ol ON ol.project = o.project
              WHERE o.agent = p.agent AND o.project <> p.project AND (coalesce(pl.exclusive, false) OR coalesce(ol.exclusive, false)))
  AND NOT EXISTS (SELECT 1 FROM p p2 LEFT JOIN project_limits ol ON ol.project = p2.project
              WHERE p2.agent = p.agent AND p2.project <> p.project AND (coalesce(pl.exclusive, false) OR coalesce(ol.exclusive, false)))))`;

/**
 * An agent held for a preempting run (runs.reserved_agent, set by `preempt`) takes no other run until that
 * one is placed, killed or lets the hold go: what its victims free is its alone.
 */
const NOT_HELD_FOR_ANOTHER = sql`NOT EXISTS (SELECT 1 FROM runs h WHERE h.reserved_agent = p.agent AND h.id <> p.id
  AND h.agent IS NULL AND h.status IN ${QUEUED} AND NOT h.kill_requested)`;

export type KillResult = 'not_found' | 'already_ended' | 'ended' | { agent: string; lease: number };
/** `session`: the agent's registration the placer chose from (agents.session). */
export type Placement = { id: string; agent: string; gpuIndices: readonly number[]; session: number };
/** What a placement returns: enough to send the doorbell and to count the wait. */
export type Placed = {
  id: string; status: RunStatus; attempt: number; agent: string; lease: number; created_at: Date; package_sha256: string | null;
  /** What the attempt may touch in storage (its credentials are issued from these: storage/credential-cache.ts). */
  package_object_key: string; dataset: string; dataset_sub: string; eval_dataset: string | null; eval_dataset_sub: string;
};

export class RunTransitions {
  constructor(private readonly db: Db, private readonly hook: RunHook) {}

  /** The same transitions, through another connection (the placer's: the one that holds its lock). */
  on(db: Db): RunTransitions {
    return new RunTransitions(db, this.hook);
  }

  /**
   * The same transitions inside a caller's transaction (Db or Transaction): their changes are collected
   * rather than told, for the caller to announce() once the transaction committed.
   */
  collecting(db: Db | Transaction<Database>): { runs: RunTransitions; changes: Changed[] } {
    const changes: Changed[] = [];
    return { runs: new RunTransitions(db as Db, (c) => changes.push(c)), changes };
  }

  /** Tells the hook about changes committed by a caller's transaction (the success commit). */
  announce(changes: Changed[]): void {
    for (const c of changes) this.hook(c);
  }

  #one(changes: Changed[]): Changed | null {
    this.announce(changes);
    return changes[0] ?? null;
  }

  /** Queued runs that no agent can take right now, with why (one statement for a whole pass). */
  async markWaiting(waits: { id: string; detail: string }[]): Promise<Changed[]> {
    if (waits.length === 0) return [];
    const changes = await apply(this.db, sql`
      UPDATE runs SET status = ${st(RunStatus.Waiting)}, status_detail = w.detail, waiting_at = coalesce(waiting_at, now())
      FROM ${probe(sql`unnest(${sql.val(waits.map((w) => w.id))}::text[], ${sql.val(waits.map((w) => w.detail))}::text[]) AS b(id, detail)`,
        sql`runs.agent IS NULL AND runs.status = ${st(RunStatus.Scheduled)} AND NOT runs.kill_requested`)} w
      WHERE runs.ctid = w.at AND runs.id = w.id
      ${RETURNING}, w.detail`, NEVER_ENDS);
    this.announce(changes);
    return changes;
  }

  /** Updates why runs wait, without a new event (the reason changes as the fleet changes). */
  async setWaitingDetail(waits: { id: string; detail: string }[]): Promise<void> {
    if (waits.length === 0) return;
    await sql`UPDATE runs SET status_detail = w.detail
      FROM ${probe(sql`unnest(${sql.val(waits.map((w) => w.id))}::text[], ${sql.val(waits.map((w) => w.detail))}::text[]) AS b(id, detail)`,
        sql`runs.agent IS NULL AND runs.status IN ${QUEUED} AND runs.status_detail <> b.detail`)} w
      WHERE runs.ctid = w.at AND runs.id = w.id`.execute(this.db);
  }

  /**
   * Places queued runs on agents: for each, a new attempt with a new fencing token and its GPUs leased in
   * gpu_leases (whose primary key forbids giving one GPU to two runs). The whole batch is one statement;
   * if it fails (a GPU is still leased by a row the fleet model did not know of), each placement is tried
   * on its own, so one bad placement is reported and the others still go out. The guard skips a run that
   * is no longer queued (killed meanwhile) and an agent that is no longer online and responsive in the
   * registration (`session`) the placer read: what the placer believes never outranks the database. The
   * project's rules are the database's too: the agent has every label of the project's binding, accepts
   * the project (--accept-projects), and exclusivity holds (EXCLUSIVE_OK).
   */
  async assign(placements: Placement[]): Promise<{ placed: Placed[]; failed: { id: string; error: unknown }[] }> {
    if (placements.length === 0) return { placed: [], failed: [] };
    try {
      const placed = await this.#assign(placements);
      return { placed, failed: [] };
    } catch (batchError) {
      if (placements.length === 1) return { placed: [], failed: [{ id: placements[0]!.id, error: batchError }] };
      const placed: Placed[] = [];
      const failed: { id: string; error: unknown }[] = [];
      for (const p of placements) {
        try { placed.push(...(await this.#assign([p]))); } catch (error) { failed.push({ id: p.id, error }); }
      }
      return { placed, failed };
    }
  }

  async #assign(placements: Placement[]): Promise<Placed[]> {
    const { rows } = await sql<Placed & { detail: string }>`
      WITH p AS ${probe(sql`unnest(${sql.val(placements.map((p) => p.id))}::text[], ${sql.val(placements.map((p) => p.agent))}::text[],
                             ${sql.val(placements.map((p) => p.gpuIndices.join(',')))}::text[],
                             ${sql.val(placements.map((p) => p.session))}::bigint[]) AS b(id, agent, gpus, session)`,
        sql`runs.agent IS NULL AND runs.status IN ${QUEUED} AND NOT runs.kill_requested`, true)},
      -- The agent, one probe each as well: online, responsive, in the registration the placer read, and one
      -- the run's project may use.
      q AS (SELECT p.* FROM p LEFT JOIN project_limits pl ON pl.project = p.project CROSS JOIN LATERAL (
        SELECT a.status = ${sql.lit(AgentStatus.Online)} AND a.unresponsive_since IS NULL AND a.session = p.session
          AND (a.accept_projects IS NULL OR p.project = ANY(a.accept_projects))
          AND (pl.agent_labels IS NULL OR a.labels @> pl.agent_labels) AS ok
        FROM agents a WHERE a.name = p.agent OFFSET 0) y WHERE y.ok AND ${EXCLUSIVE_OK} AND ${NOT_HELD_FOR_ANOTHER}),
      r AS (
        UPDATE runs SET status = ${st(RunStatus.Scheduled)}, status_detail = '', agent = q.agent, last_agent = q.agent,
          lease = nextval('lease_seq'), attempt = runs.attempt + 1,
          gpu_indices = coalesce(string_to_array(nullif(q.gpus, ''), ',')::int[], '{}'), dispatched_at = now(), acked_at = NULL, missed_beats = 0,
          reserved_agent = NULL, released_at = NULL
        FROM q
        WHERE runs.ctid = q.at AND runs.id = q.id
        RETURNING runs.id, runs.status, runs.attempt, runs.agent, runs.lease, runs.gpu_indices, runs.created_at, runs.package_sha256,
          runs.package_object_key, runs.dataset, runs.dataset_sub, runs.eval_dataset, runs.eval_dataset_sub),
      e AS (
        INSERT INTO run_events (run_id, attempt, status, detail)
        SELECT id, attempt, status, 'placed on ' || agent || CASE WHEN cardinality(gpu_indices) > 0
          THEN ' (GPUs ' || array_to_string(gpu_indices, ',') || ')' ELSE '' END FROM r),
      l AS (
        INSERT INTO gpu_leases (agent, gpu_index, run_id, lease)
        SELECT r.agent, g, r.id, r.lease FROM r, unnest(r.gpu_indices) AS g)
      SELECT r.id, r.status, r.attempt, r.agent, r.lease, r.created_at, r.package_sha256,
        r.package_object_key, r.dataset, r.dataset_sub, r.eval_dataset, r.eval_dataset_sub, 'placed on ' || r.agent AS detail FROM r`.execute(this.db);
    this.announce(rows.map((r) => ({ id: r.id, status: r.status, attempt: r.attempt, agent: r.agent, lease: r.lease, detail: r.detail, freed: false })));
    return rows;
  }

  /**
   * Places a gang run (scheduler/placement/gang.ts) on all its members at once, or not at all: ONE
   * statement. Member 0 becomes the run's agent and GPUs (as `assign` does), members 1.. run_members rows,
   * every member's GPUs gpu_leases rows of the run, and MASTER_PORT the lowest port of member 0's agent's
   * --rendezvous-ports no other placed run there uses (after the one its last attempt used). Guarded like `assign` for every member's agent; the
   * run is changed only when all N passed (and a port was free), so a refused member leaves nothing held.
   */
  async assignGang(runId: string, members: readonly Omit<Placement, 'id'>[]): Promise<Placed | null> {
    const n = members.length;
    const { rows } = await sql<Placed & { detail: string }>`
      WITH run AS (SELECT id, project FROM runs WHERE id = ${runId} AND agent IS NULL AND status IN ${QUEUED} AND NOT kill_requested AND agents = ${n}),
      p AS (SELECT m.*, run.project FROM run, unnest(${sql.val(members.map((m) => m.agent))}::text[], ${sql.val(members.map((m) => m.gpuIndices.join(',')))}::text[],
              ${sql.val(members.map((m) => m.session))}::bigint[]) WITH ORDINALITY AS m(agent, gpus, session, rank)),
      q AS (SELECT p.* FROM p LEFT JOIN project_limits pl ON pl.project = p.project JOIN agents a ON a.name = p.agent
            WHERE a.status = ${sql.lit(AgentStatus.Online)} AND a.unresponsive_since IS NULL AND a.session = p.session
              AND (a.accept_projects IS NULL OR p.project = ANY(a.accept_projects))
              AND (pl.agent_labels IS NULL OR a.labels @> pl.agent_labels)
              AND ${EXCLUSIVE_OK} AND NOT EXISTS (SELECT 1 FROM runs h WHERE h.reserved_agent = p.agent AND h.id <> ${runId}
                AND h.agent IS NULL AND h.status IN ${QUEUED} AND NOT h.kill_requested)),
      -- The first free port after the one the run's last attempt used (wrapping): a requeued gang's ranks
      -- never meet the last attempt's rank 0 while it is still being stopped, when the range has another.
      port AS (SELECT g AS port FROM agents a0 CROSS JOIN generate_series(a0.rendezvous_lo, a0.rendezvous_hi) AS g
               WHERE a0.name = ${members[0]!.agent}
                 AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.agent = a0.name AND o.master_port = g)
               ORDER BY g <= coalesce((SELECT master_port FROM runs WHERE id = ${runId}), 0), g LIMIT 1),
      ok AS (SELECT (SELECT count(DISTINCT agent) FROM q) = ${n} AND (SELECT port FROM port) IS NOT NULL AS ok),
      r AS (
        UPDATE runs SET status = ${st(RunStatus.Scheduled)}, status_detail = '', agent = q.agent, last_agent = q.agent,
          lease = nextval('lease_seq'), attempt = runs.attempt + 1, master_port = (SELECT port FROM port),
          gpu_indices = coalesce(string_to_array(nullif(q.gpus, ''), ',')::int[], '{}'), dispatched_at = now(), acked_at = NULL, missed_beats = 0,
          reserved_agent = NULL
        FROM q, ok WHERE ok.ok AND q.rank = 1 AND runs.id = ${runId}
        RETURNING runs.id, runs.status, runs.attempt, runs.agent, runs.lease, runs.gpu_indices, runs.created_at, runs.package_sha256,
          runs.package_object_key, runs.dataset, runs.dataset_sub, runs.eval_dataset, runs.eval_dataset_sub),
      m AS (
        INSERT INTO run_members (run_id, node_rank, lease, agent, gpu_indices)
        SELECT r.id, q.rank - 1, r.lease, q.agent, coalesce(string_to_array(nullif(q.gpus, ''), ',')::int[], '{}') FROM r, q WHERE q.rank > 1
        ON CONFLICT (run_id, node_rank) DO UPDATE SET lease = excluded.lease, agent = excluded.agent, gpu_indices = excluded.gpu_indices,
          acked_at = NULL, ended_at = NULL, outcome = NULL),
      e AS (
        INSERT INTO run_events (run_id, attempt, status, detail)
        SELECT r.id, r.attempt, r.status, 'placed on ' || (SELECT string_agg(q.agent || CASE WHEN q.gpus <> '' THEN ' (GPUs ' || q.gpus || ')' ELSE '' END, ', ' ORDER BY q.rank) FROM q)
        FROM r),
      l AS (
        INSERT INTO gpu_leases (agent, gpu_index, run_id, lease)
        SELECT q.agent, g::int, r.id, r.lease FROM r, q, unnest(string_to_array(nullif(q.gpus, ''), ',')) AS g)
      SELECT r.id, r.status, r.attempt, r.agent, r.lease, r.created_at, r.package_sha256,
        r.package_object_key, r.dataset, r.dataset_sub, r.eval_dataset, r.eval_dataset_sub, 'placed on ' || ${members.map((m) => m.agent).join(', ')}::text AS detail FROM r`.execute(this.db);
    this.announce(rows.map((r) => ({ id: r.id, status: r.status, attempt: r.attempt, agent: r.agent, lease: r.lease, detail: r.detail, freed: false })));
    return rows[0] ?? null;
  }

  /** The agent has the dispatch (first report about the attempt). Not a status change: no event. */
  async acknowledge(runId: string, lease: number, agent: string): Promise<boolean> {
    const r = await sql`UPDATE runs SET acked_at = coalesce(acked_at, now())
      WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status IN ${PLACED} RETURNING id`.execute(this.db);
    return r.rows.length > 0;
  }

  async startPackaging(runId: string, lease: number, agent: string): Promise<Changed | null> {
    return this.#one(await apply(this.db, sql`
      UPDATE runs SET status = ${st(RunStatus.Packaging)}, packaging_at = now(), acked_at = coalesce(acked_at, now())
      WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status = ${st(RunStatus.Scheduled)}
      ${RETURNING}, 'building the environment' AS detail`, NEVER_ENDS));
  }

  /**
   * The claim of an agent that holds the run's package version and its venv ready: Scheduled → Running in
   * one step (the Packaging it skips took no time; its moment is the same).
   */
  async startReady(runId: string, lease: number, agent: string): Promise<Changed | null> {
    return this.#one(await apply(this.db, sql`
      UPDATE runs SET status = ${st(RunStatus.Running)}, packaging_at = now(), running_at = now(), acked_at = coalesce(acked_at, now())
      WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status = ${st(RunStatus.Scheduled)}
      ${RETURNING}, 'train.py started (package and environment ready on the agent)' AS detail`, NEVER_ENDS));
  }

  async startRunning(runId: string, lease: number, agent: string): Promise<Changed | null> {
    return this.#one(await apply(this.db, sql`
      UPDATE runs SET status = ${st(RunStatus.Running)}, running_at = now()
      WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status = ${st(RunStatus.Packaging)}
      ${RETURNING}, 'train.py started' AS detail`, NEVER_ENDS));
  }

  /**
   * Every process of a Running attempt has exited (its cgroup is empty) and its agent gives back what it
   * held: its GPU leases go, and released_at makes the placer stop counting its GPUs, CPUs, memory and slot
   * (load-fleet.ts), while the run stays Running (uploading) until its end report. Guarded like every
   * report of the attempt (lease, agent, Running, not released already); the end (succeed, endAttempt,
   * requeue) is unchanged, so an upload that fails, or an agent lost while uploading, ends or requeues the
   * run as before, and nothing is freed twice (the lease rows are gone; the placer frees a holding once).
   */
  async releaseCapacity(runId: string, lease: number, agent: string): Promise<Changed | null> {
    // Not a transition (the run stays Running): no run_events row, so no second run.started in the ML
    // log and no Running → Running in the run's history; the GPU leases go in the same statement.
    const { rows } = await sql<Row>`
      WITH r AS (UPDATE runs SET released_at = now(), status_detail = 'uploading the outputs (GPUs and slot released)'
        WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status = ${st(RunStatus.Running)} AND released_at IS NULL
          -- A gang's leases are every member's: its rank 0 leaving first must not free the others' GPUs.
          AND agents = 1
        ${RETURNING}),
      g AS (DELETE FROM gpu_leases WHERE run_id IN (SELECT id FROM r))
      SELECT * FROM r`.execute(this.db);
    // No age: the run did not start now (the submit→start histogram counts each start once).
    return this.#one(rows.map((r) => ({ ...changed(r, true), detail: 'train.py exited; its GPUs and slot released while its outputs upload', ageSeconds: undefined })));
  }


  /**
   * Running → Successful, in one statement: the run (with its results, score and phases), its new version
   * when the pipeline makes one, its event and its GPU leases. The version number is the caller's choice
   * (the next minor it read); if another run registered that number meanwhile, the insert violates the
   * primary key and the whole statement rolls back (the caller reads again and retries). The caller writes
   * _results.json first, holding the run's row (scheduler/runs/complete.ts). A run whose kill was accepted never succeeds: the guard
   * refuses, and the caller ends it Killed. A version made by a run inherits whether Main has evaluate()
   * from the version it trained, and carries the run's score (a full pipeline's).
   */
  async succeed(runId: string, lease: number, agent: string, o: {
    results: unknown; lineage: unknown; score: number | null; phases: PhaseRow[];
    /** What the attempt left in the bucket, counted against its project's storage quota. */
    outputBytes?: number;
    /** What the attempt left under its prefix (complete.ts lists it): run outputs serves these only. */
    outputs: RecordedOutput[];
    version: null | {
      package: string; major: number; minor: number; trainedMajor: number; trainedMinor: number;
      objectKey: string; sizeBytes: number; sha256: string;
    };
  }): Promise<Changed | null> {
    const v = o.version;
    const detail = v ? `registered version ${v.major}.${v.minor}${o.score !== null ? ` (score ${o.score})` : ''}` : `score ${o.score}`;
    const { rows } = await sql<Row>`
      WITH r AS (
        UPDATE runs SET status = ${st(RunStatus.Successful)}, ended_at = now(), output_major = ${v?.major ?? null}, output_minor = ${v?.minor ?? null},
          results = ${JSON.stringify(o.results)}::json, lineage = ${JSON.stringify(o.lineage)}::jsonb, score = ${o.score}, phases = ${JSON.stringify(o.phases)}::jsonb, agent = NULL, status_detail = '',
          output_bytes = ${o.outputBytes ?? 0},
          outputs = ${JSON.stringify(o.outputs)}::jsonb
        WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status = ${st(RunStatus.Running)} AND NOT kill_requested
        ${RETURNING}, ${detail}::text AS detail),
      ${v ? sql`v AS (
        INSERT INTO package_versions (package, major, minor, source, run_id, trained_major, trained_minor, object_key, size_bytes, sha256, score, has_evaluate)
        SELECT ${v.package}, ${v.major}, ${v.minor}, 'run', r.id, ${v.trainedMajor}, ${v.trainedMinor}, ${v.objectKey}, ${v.sizeBytes}, ${v.sha256}, ${o.score},
          (SELECT has_evaluate FROM package_versions WHERE package = ${v.package} AND major = ${v.trainedMajor} AND minor = ${v.trainedMinor})
        FROM r),` : sql``}
      e AS (INSERT INTO run_events (run_id, attempt, status, detail) SELECT id, attempt, status, detail FROM r),
      g AS (DELETE FROM gpu_leases WHERE run_id IN (SELECT id FROM r)),
      ${FORGET_SECRETS}
      SELECT * FROM r`.execute(this.db);
    return this.#one(rows.map((r) => changed(r, true)));
  }

  /**
   * An attempt ends badly: Failed (or Killed), whatever placed state it was in. `left`: what the attempt
   * left under its prefix (complete.ts), recorded only when its attempt number is the run's.
   */
  async endAttempt(runId: string, lease: number, agent: string, status: typeof RunStatus.Failed | typeof RunStatus.Killed, reason: string, phases?: PhaseRow[],
    left?: { attempt: number; outputs: RecordedOutput[] } | null): Promise<Changed | null> {
    return this.#one(await apply(this.db, sql`
      UPDATE runs SET status = ${st(status)}, ended_at = now(), failure_reason = ${reason}, agent = NULL, status_detail = '',
        phases = ${phases?.length ? sql`${JSON.stringify(phases)}::jsonb` : sql`phases`},
        outputs = ${left ? sql`CASE WHEN attempt = ${left.attempt} THEN ${JSON.stringify(left.outputs)}::jsonb ELSE outputs END` : sql`outputs`}
      WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status IN ${PLACED}
      ${RETURNING}, ${reason}::text AS detail`, { releaseGpus: true, freed: true, canEnd: true }));
  }

  /** A run not yet placed ends without ever starting (it can never be placed). */
  async endUnplaced(runId: string, status: typeof RunStatus.Failed | typeof RunStatus.Killed, reason: string): Promise<Changed | null> {
    return this.#one(await apply(this.db, sql`
      UPDATE runs SET status = ${st(status)}, ended_at = now(), failure_reason = ${reason}, status_detail = ''
      WHERE id = ${runId} AND agent IS NULL AND status IN ${QUEUED}
      ${RETURNING}, ${reason}::text AS detail`, { releaseGpus: false, freed: false, canEnd: true }));
  }

  /**
   * Kill, one transition whatever state the run is in. Unplaced: Killed now. Placed: kill_requested is
   * set and the caller tells the agent; the attempt's end (reported Killed, or a requeue if the agent is
   * lost) then makes it Killed, because requeue checks kill_requested in the same statement. There is no
   * moment at which a run can be queued with kill_requested set.
   */
  async kill(runId: string): Promise<KillResult> {
    const changes = await apply(this.db, sql`
      UPDATE runs SET kill_requested = true,
        status = CASE WHEN agent IS NULL THEN ${st(RunStatus.Killed)} ELSE status END,
        ended_at = CASE WHEN agent IS NULL THEN now() ELSE ended_at END,
        failure_reason = CASE WHEN agent IS NULL THEN 'killed before it started' ELSE failure_reason END,
        status_detail = CASE WHEN agent IS NULL THEN '' ELSE 'kill requested' END
      WHERE id = ${runId} AND status IN ${LIVE} AND NOT (agent IS NOT NULL AND kill_requested)
      ${RETURNING}, CASE WHEN runs.agent IS NULL THEN 'killed before it started' ELSE 'kill requested' END AS detail`, { releaseGpus: false, freed: false, canEnd: true });
    const c = changes[0];
    if (c) {
      this.announce(changes);
      if (c.status === RunStatus.Killed) return 'ended';
      return { agent: c.agent!, lease: c.lease! };
    }
    // Nothing changed: ended already, a kill already asked of its agent (asked again), or no such run.
    const row = await this.db.selectFrom('runs').select(['status', 'agent', 'lease']).where('id', '=', runId).executeTakeFirst();
    if (!row) return 'not_found';
    if (terminalStatuses.has(row.status) || row.agent === null || row.lease === null) return 'already_ended';
    return { agent: row.agent, lease: Number(row.lease) };
  }

  /**
   * An attempt is taken back from its agent: the agent was lost, never acknowledged the dispatch, or handed
   * the run back while draining. The run queues again for a new attempt, unless a kill was asked (Killed) or
   * the agent-loss budget is spent (Failed). `countsAsLoss` is false for a dispatch the agent never took.
   * `byAgent`: the agent handing it back (guarded like its other reports); null when the scheduler decides.
   * `unacked`: only if the dispatch is still unacknowledged (the ack deadline: a claim that landed after the
   * sweep read the run wins).
   */
  async requeue(runId: string, lease: number, reason: string, countsAsLoss: boolean, byAgent: string | null = null, o: { unacked?: boolean } = {}): Promise<Changed | null> {
    const loss = countsAsLoss ? 1 : 0;
    const spent = sql`lost_attempts + ${loss} >= max_attempts`;
    return this.#one(await apply(this.db, sql`
      UPDATE runs SET
        lost_attempts = lost_attempts + ${loss},
        status = CASE WHEN kill_requested THEN ${st(RunStatus.Killed)} WHEN ${spent} THEN ${st(RunStatus.Failed)} ELSE ${st(RunStatus.Waiting)} END,
        failure_reason = CASE WHEN kill_requested THEN 'killed' WHEN ${spent} THEN ${reason} ELSE NULL END,
        ended_at = CASE WHEN kill_requested OR ${spent} THEN now() END,
        waiting_at = now(),
        -- The budget is worth saying only where it decided the outcome (never for a killed run).
        status_detail = CASE WHEN kill_requested THEN ''
                             WHEN ${spent} THEN 'attempts spent: ' || (lost_attempts + ${loss}) || ' of ' || max_attempts
                             ELSE ${reason} END,
        agent = NULL, gpu_indices = '{}', acked_at = NULL, preempted_by = NULL
      WHERE id = ${runId} AND lease = ${lease} AND agent IS NOT NULL AND status IN ${PLACED}
        ${byAgent === null ? sql`` : sql`AND agent = ${byAgent}`}
        ${o.unacked ? sql`AND acked_at IS NULL` : sql``}
      ${RETURNING}, CASE WHEN runs.status = ${st(RunStatus.Failed)} THEN ${reason} || ' (' || runs.status_detail || ')'
                         WHEN runs.status = ${st(RunStatus.Killed)} THEN 'killed' ELSE ${reason}::text END AS detail`, { releaseGpus: true, freed: true, canEnd: true }));
  }

  /**
   * Preemption (scheduler/placement/preemption.ts): the Running `victims` on `agent` make room for the queued
   * run `by`. One statement, all or nothing: each victim must still be Running there on the attempt (lease)
   * the placer saw, of a preemptible project, of a lower priority than `by`, neither killed nor preempted
   * already, and started at least `minRuntimeS` ago; `by` must still be queued, not killed, and hold no agent.
   * Each victim gets preempted_by (its agent is then told to stop it, as a kill is told), a run_preemptions
   * row and a run.preempted event; `by` gets the agent held for it (reserved_agent: see NOT_HELD_FOR_ANOTHER).
   * Returns the victims marked (none when any guard failed).
   */
  async preempt(by: string, agent: string, victims: readonly { id: string; lease: number }[], minRuntimeS: number): Promise<{ id: string; lease: number; attempt: number }[]> {
    if (victims.length === 0) return [];
    const { rows } = await sql<{ id: string; lease: string; attempt: number }>`
      WITH me AS (SELECT id, priority FROM runs WHERE id = ${by} AND agent IS NULL AND status IN ${QUEUED} AND NOT kill_requested
                    AND reserved_agent IS NULL FOR UPDATE),
      v AS (SELECT runs.id FROM runs
              JOIN unnest(${victims.map((v) => v.id)}::text[], ${victims.map((v) => String(v.lease))}::bigint[]) AS b(id, lease) ON runs.id = b.id AND runs.lease = b.lease
              JOIN project_limits pl ON pl.project = runs.project CROSS JOIN me
            WHERE runs.agent = ${agent} AND runs.status = ${st(RunStatus.Running)} AND NOT runs.kill_requested AND runs.preempted_by IS NULL
              AND runs.released_at IS NULL
              AND pl.preemptible AND runs.priority < me.priority AND runs.running_at <= now() - make_interval(secs => ${minRuntimeS})
            FOR UPDATE OF runs),
      ok AS (SELECT (SELECT count(*) FROM v) = ${victims.length} AS ok),
      r AS (UPDATE runs SET preempted_by = ${by}, status_detail = ${`preempted by ${by}`}
            FROM v, ok WHERE ok.ok AND runs.id = v.id RETURNING runs.id, runs.lease, runs.attempt, runs.project),
      h AS (UPDATE runs SET reserved_agent = ${agent}, status_detail = ${`preempting ${victims.length} run${victims.length > 1 ? 's' : ''} on agent ${agent}`}
            FROM me, ok WHERE ok.ok AND runs.id = me.id),
      p AS (INSERT INTO run_preemptions (run_id, attempt, by_run, agent) SELECT id, attempt, ${by}, ${agent} FROM r),
      e AS (INSERT INTO events (kind, project, subject, detail, data)
            SELECT ${EventKind.RunPreempted}, project, id, ${`preempted by ${by} on agent ${agent}`},
              jsonb_build_object('attempt', attempt, 'by', ${by}::text, 'agent', ${agent}::text) FROM r)
      SELECT id, lease, attempt FROM r`.execute(this.db);
    return rows.map((r) => ({ id: r.id, lease: Number(r.lease), attempt: r.attempt }));
  }

  /**
   * A preempted attempt has stopped (its agent reported it Killed): the run queues again, with the reason
   * "preempted by RUN", and the attempt is not a lost one (lost_attempts is left alone: preemption never
   * spends a run's --max-attempts). Null when the run was not being preempted (or a kill was asked: the
   * caller then ends it Killed).
   */
  async requeuePreempted(runId: string, lease: number, agent: string): Promise<Changed | null> {
    return this.#one(await apply(this.db, sql`
      UPDATE runs SET status = ${st(RunStatus.Waiting)}, waiting_at = now(), status_detail = 'preempted by ' || preempted_by,
        agent = NULL, gpu_indices = '{}', acked_at = NULL, preempted_by = NULL
      WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status IN ${PLACED} AND preempted_by IS NOT NULL AND NOT kill_requested
      ${RETURNING}, runs.status_detail AS detail`, { releaseGpus: true, freed: true, canEnd: false }));
  }

  /** A preempting run lets its held agent go (its victims left and it still does not fit there). Not a status change. */
  async releaseHold(runId: string, agent: string): Promise<boolean> {
    const r = await sql`UPDATE runs SET reserved_agent = NULL WHERE id = ${runId} AND reserved_agent = ${agent} AND agent IS NULL RETURNING id`.execute(this.db);
    return r.rows.length > 0;
  }
}
