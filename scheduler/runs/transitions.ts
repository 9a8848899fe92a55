// The run state machine, in one place. One function per transition, each a single guarded statement:
// it names the state it expects (and, for an agent's attempt, the fencing token `lease`), so a transition
// that lost a race, or comes from a stale attempt, changes nothing and says so by returning null.
//
//   Scheduled ──place──▶ Scheduled(agent) ──▶ Packaging ──▶ Running ──▶ Successful
//       │  ▲                  │    │              │            │
//       ▼  │ requeue          │    └──────────────┴────────────┴──▶ Failed | Killed
//   Waiting for resources ◀───┘ (agent lost, dispatch not acked, handed back)
//
// Every change is recorded in run_events; the caller logs it and rings the doorbell.
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Database, RunsTable } from '../db/database.js';
import { RunStatus } from '../../shared/run-states.js';

type Q = Kysely<Database> | Transaction<Database>;

export interface Changed { id: string; status: RunStatus; attempt: number; agent: string | null; lease: number | null }

async function recordEvent(db: Q, rows: Changed[], detail: string): Promise<void> {
  if (rows.length === 0) return;
  await db.insertInto('run_events')
    .values(rows.map((r) => ({ run_id: r.id, attempt: r.attempt, status: r.status, detail })))
    .execute();
}

const returning = sql`RETURNING id, status, attempt, agent, lease`;

async function one(db: Q, query: ReturnType<typeof sql>, detail: string): Promise<Changed | null> {
  const { rows } = await query.execute(db);
  const changed = rows as Changed[];
  await recordEvent(db, changed, detail);
  return changed[0] ?? null;
}

/** Queued runs that no agent can take right now, with why (one statement for a whole pass). */
export async function markWaiting(db: Q, waits: { id: string; detail: string }[]): Promise<Changed[]> {
  if (waits.length === 0) return [];
  const { rows } = await sql<Changed & { detail: string }>`
    UPDATE runs SET status = 'Waiting for resources', status_detail = w.detail, waiting_at = coalesce(waiting_at, now())
    FROM unnest(${sql.val(waits.map((w) => w.id))}::text[], ${sql.val(waits.map((w) => w.detail))}::text[]) AS w(id, detail)
    WHERE runs.id = w.id AND runs.agent IS NULL AND runs.status = 'Scheduled'
    RETURNING runs.id, runs.status, runs.attempt, runs.agent, runs.lease, w.detail`.execute(db);
  if (rows.length) {
    await db.insertInto('run_events').values(rows.map((r) => ({ run_id: r.id, attempt: r.attempt, status: r.status, detail: r.detail }))).execute();
  }
  return rows;
}

/** Updates why runs wait, without a new event (the reason changes as the fleet changes). */
export async function setWaitingDetail(db: Q, waits: { id: string; detail: string }[]): Promise<void> {
  if (waits.length === 0) return;
  await sql`UPDATE runs SET status_detail = w.detail
    FROM unnest(${sql.val(waits.map((w) => w.id))}::text[], ${sql.val(waits.map((w) => w.detail))}::text[]) AS w(id, detail)
    WHERE runs.id = w.id AND runs.agent IS NULL AND runs.status_detail <> w.detail`.execute(db);
}

/**
 * Places queued runs on agents: for each, a new attempt with a new fencing token and its GPUs leased in
 * gpu_leases (whose primary key forbids giving one GPU to two runs). One statement per table for a whole
 * pass; a run that is no longer queued (killed meanwhile) is skipped by the guard. Returns the placed rows.
 */
export async function assign(trx: Transaction<Database>, placements: { id: string; agent: string; gpuIndices: number[] }[]): Promise<Selectable<RunsTable>[]> {
  if (placements.length === 0) return [];
  const { rows } = await sql<Selectable<RunsTable>>`
    UPDATE runs SET status = 'Scheduled', status_detail = '', agent = p.agent, last_agent = p.agent, lease = nextval('lease_seq'),
      attempt = runs.attempt + 1, gpu_indices = coalesce(string_to_array(nullif(p.gpus, ''), ',')::int[], '{}'), dispatched_at = now(), acked_at = NULL
    FROM unnest(${sql.val(placements.map((p) => p.id))}::text[], ${sql.val(placements.map((p) => p.agent))}::text[],
                ${sql.val(placements.map((p) => p.gpuIndices.join(',')))}::text[]) AS p(id, agent, gpus)
    WHERE runs.id = p.id AND runs.agent IS NULL AND runs.status IN ('Scheduled', 'Waiting for resources') AND NOT runs.kill_requested
    RETURNING runs.*`.execute(trx);
  if (rows.length === 0) return rows;
  await trx.insertInto('run_events').values(rows.map((r) => ({
    run_id: r.id, attempt: r.attempt, status: r.status,
    detail: `placed on ${r.agent}${r.gpu_indices.length ? ` (GPUs ${r.gpu_indices.join(',')})` : ''}`,
  }))).execute();
  const leases = rows.flatMap((r) => r.gpu_indices.map((g) => ({ agent: r.agent!, gpu_index: g, run_id: r.id, lease: r.lease! })));
  if (leases.length) await trx.insertInto('gpu_leases').values(leases).execute();
  return rows;
}

/** The agent has the dispatch (first report about the attempt). */
export async function acknowledge(db: Q, runId: string, lease: number): Promise<boolean> {
  const r = await sql`UPDATE runs SET acked_at = coalesce(acked_at, now()) WHERE id = ${runId} AND lease = ${lease} AND agent IS NOT NULL
    AND status IN ('Scheduled', 'Packaging', 'Running') RETURNING id`.execute(db);
  return r.rows.length > 0;
}

export function startPackaging(db: Q, runId: string, lease: number) {
  return one(db, sql`
    UPDATE runs SET status = 'Packaging', packaging_at = now(), acked_at = coalesce(acked_at, now())
    WHERE id = ${runId} AND lease = ${lease} AND agent IS NOT NULL AND status = 'Scheduled' ${returning}`, 'building the environment');
}

export function startRunning(db: Q, runId: string, lease: number) {
  return one(db, sql`
    UPDATE runs SET status = 'Running', running_at = now()
    WHERE id = ${runId} AND lease = ${lease} AND agent IS NOT NULL AND status = 'Packaging' ${returning}`, 'train.py started');
}

async function releaseGpus(db: Q, runId: string): Promise<void> {
  await db.deleteFrom('gpu_leases').where('run_id', '=', runId).execute();
}

/** Running → Successful; the caller registers the version in the same transaction. */
export async function succeed(trx: Transaction<Database>, runId: string, lease: number, out: { major: number; minor: number; results: unknown }) {
  const changed = await one(trx, sql`
    UPDATE runs SET status = 'Successful', ended_at = now(), output_major = ${out.major}, output_minor = ${out.minor},
      results = ${JSON.stringify(out.results)}::json, agent = NULL, status_detail = ''
    WHERE id = ${runId} AND lease = ${lease} AND agent IS NOT NULL AND status = 'Running' ${returning}`, `registered version ${out.major}.${out.minor}`);
  if (changed) await releaseGpus(trx, runId);
  return changed;
}

/** An attempt ends badly: Failed (or Killed), whatever placed state it was in. */
export async function endAttempt(db: Q, runId: string, lease: number, status: typeof RunStatus.Failed | typeof RunStatus.Killed, reason: string) {
  const changed = await one(db, sql`
    UPDATE runs SET status = ${status}, ended_at = now(), failure_reason = ${reason}, agent = NULL, status_detail = ''
    WHERE id = ${runId} AND lease = ${lease} AND agent IS NOT NULL AND status IN ('Scheduled', 'Packaging', 'Running') ${returning}`, reason);
  if (changed) await releaseGpus(db, runId);
  return changed;
}

/** A run not yet placed ends without ever starting (killed, or it can never be placed). */
export function endUnplaced(db: Q, runId: string, status: typeof RunStatus.Failed | typeof RunStatus.Killed, reason: string) {
  return one(db, sql`
    UPDATE runs SET status = ${status}, ended_at = now(), failure_reason = ${reason}, status_detail = ''
    WHERE id = ${runId} AND agent IS NULL AND status IN ('Scheduled', 'Waiting for resources') ${returning}`, reason);
}

/** Marks a kill; the caller tells the agent. Returns the run's placement if it is placed. */
export async function requestKill(db: Q, runId: string): Promise<{ agent: string | null; lease: number | null } | null> {
  const r = await sql<{ agent: string | null; lease: number | null }>`
    UPDATE runs SET kill_requested = true WHERE id = ${runId} AND status IN ('Scheduled', 'Waiting for resources', 'Packaging', 'Running')
    RETURNING agent, lease`.execute(db);
  return r.rows[0] ?? null;
}

/**
 * An attempt is taken back from its agent: the agent was lost, never acknowledged the dispatch, or handed
 * the run back while draining. The run queues again for a new attempt, unless a kill was asked (Killed) or
 * the agent-loss budget is spent (Failed). `countsAsLoss` is false for a dispatch the agent never took.
 */
export async function requeue(db: Q, runId: string, lease: number, reason: string, countsAsLoss: boolean) {
  const loss = countsAsLoss ? 1 : 0;
  const changed = await one(db, sql`
    UPDATE runs SET
      lost_attempts = lost_attempts + ${loss},
      status = CASE WHEN kill_requested THEN 'Killed'::run_status
                    WHEN lost_attempts + ${loss} >= max_attempts THEN 'Failed'::run_status
                    ELSE 'Waiting for resources'::run_status END,
      failure_reason = CASE WHEN kill_requested THEN 'killed'
                            WHEN lost_attempts + ${loss} >= max_attempts THEN ${reason}
                            ELSE NULL END,
      ended_at = CASE WHEN kill_requested OR lost_attempts + ${loss} >= max_attempts THEN now() END,
      waiting_at = now(),
      status_detail = CASE WHEN kill_requested OR lost_attempts + ${loss} >= max_attempts
                           THEN 'attempts spent: ' || (lost_attempts + ${loss}) || ' of ' || max_attempts ELSE ${reason} END,
      agent = NULL, gpu_indices = '{}', acked_at = NULL
    WHERE id = ${runId} AND lease = ${lease} AND agent IS NOT NULL AND status IN ('Scheduled', 'Packaging', 'Running') ${returning}`, reason);
  if (changed) await releaseGpus(db, runId);
  return changed;
}
