// Firing a schedule, exactly once however many schedulers run. Every scheduler looks for due schedules
// (ticker.ts); a firing is claimed by ONE guarded statement that moves next_fire_at forward only if it
// still holds the due time (`... AND next_fire_at = $due`, the row taken FOR UPDATE SKIP LOCKED), and
// that claim commits in the same transaction as the run it submits and its events. Two schedulers that
// see the same due firing both try; one claim matches, the other finds the row locked or moved and
// changes nothing. runs_schedule_firing (unique project + schedule + firing time) backs this in the schema.
//
// A firing refused by submit (its package or dataset is gone, a cap was lowered) makes no run: the
// transaction is rolled back and a second one claims the same firing with the reason (last_error, a
// schedule.failed event); the schedule goes on. A firing that fails for a reason worth retrying (the
// database or storage is away) claims nothing and is tried again on the next tick.
import { sql, type Selectable, type Transaction } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { Database, SchedulesTable } from '../db/database.js';
import { TrainyardError, errorCodeRetryability, errorMessage, notFound } from '../../shared/errors.js';
import { EventKind } from '../../shared/event-kinds.js';
import { ScheduleState } from '../../shared/schedule-states.js';
import { recordEvents, type NewEvent } from '../events/record.js';
import { catchUp } from './timing.js';
import { databaseNow } from '../db/clock.js';
import { firingPrincipal, normalizeRequest, submitIn } from './request.js';

type Row = Selectable<SchedulesTable>;

/** One firing: a due one (claimed by its due time) or a run-now (by the caller, whenever). */
type Firing =
  | { kind: 'due'; due: Date; fireAt: Date; missed: number; next: Date | null }
  | { kind: 'now'; fireAt: Date };

export type FireOutcome = { run: string } | { refused: TrainyardError } | 'taken';

/**
 * The claim: one statement, guarded. A due firing moves next_fire_at on (a one-shot is done); run-now
 * leaves it. Returns false when another scheduler claimed this firing (or the schedule changed meanwhile).
 */
async function claim(trx: Transaction<Database>, s: Row, f: Firing, error: string): Promise<boolean> {
  const ok = error === '' ? 1 : 0;
  const missed = f.kind === 'due' ? f.missed : 0;
  const guard = f.kind === 'due'
    ? sql`SELECT id FROM schedules WHERE id = ${s.id} AND state = ${ScheduleState.Active} AND next_fire_at = ${f.due} FOR UPDATE SKIP LOCKED`
    : sql`SELECT id FROM schedules WHERE id = ${s.id} FOR UPDATE`;
  const { rows } = await sql`
    UPDATE schedules SET
      ${f.kind === 'due' ? sql`next_fire_at = ${f.next}, state = ${f.next === null ? ScheduleState.Done : ScheduleState.Active},` : sql``}
      last_fired_at = now(), last_error = ${error},
      fired_count = fired_count + ${ok}, failed_count = failed_count + ${1 - ok},
      missed_total = missed_total + ${missed},
      last_missed = CASE WHEN ${missed} > 0 THEN ${missed} ELSE last_missed END,
      last_missed_at = CASE WHEN ${missed} > 0 THEN now() ELSE last_missed_at END
    WHERE id = (${guard})
    RETURNING id`.execute(trx);
  return rows.length > 0;
}

function firingEvents(s: Row, f: Firing): NewEvent[] {
  if (f.kind !== 'due' || f.missed === 0) return [];
  return [{
    kind: EventKind.ScheduleMissed, project: s.project, subject: s.name,
    detail: `${f.missed}${f.missed >= 10_000 ? ' or more' : ''} firing(s) from ${f.due.toISOString()} passed while no scheduler could fire them; fired once for them at ${f.fireAt.toISOString()}`,
    data: { missed: f.missed, from: f.due.toISOString(), fire_at: f.fireAt.toISOString() },
  }];
}

export async function fire(ctx: SchedulerContext, s: Row, f: Firing): Promise<FireOutcome> {
  const how = f.kind === 'now' ? ' (run-now)' : '';
  try {
    const runId = await ctx.db.transaction().execute(async (trx) => {
      if (!(await claim(trx, s, f, ''))) return null;
      const id = await submitIn(ctx, trx, normalizeRequest(s.request), firingPrincipal(s.project, s.name));
      await trx.updateTable('runs').set({ schedule: s.name, schedule_fire_at: f.fireAt }).where('id', '=', id).execute();
      await trx.updateTable('schedules').set({ last_run_id: id }).where('id', '=', s.id).execute();
      await recordEvents(trx, [...firingEvents(s, f), {
        kind: EventKind.ScheduleFired, project: s.project, subject: s.name, detail: `fired ${id}${how}`,
        data: { run_id: id, fire_at: f.fireAt.toISOString(), manual: f.kind === 'now' },
      }]);
      return id;
    });
    if (runId === null) return 'taken';
    ctx.kick();
    ctx.log.info({ schedule: s.name, run: runId, fireAt: f.fireAt, missed: f.kind === 'due' ? f.missed : 0, manual: f.kind === 'now' }, 'schedule fired');
    return { run: runId };
  } catch (err) {
    // Worth another try (database, storage): claim nothing, the next tick fires it.
    if (!(err instanceof TrainyardError) || errorCodeRetryability[err.code] === 'retryable') throw err;
    const claimed = await ctx.db.transaction().execute(async (trx) => {
      if (!(await claim(trx, s, f, err.message))) return false;
      await recordEvents(trx, [...firingEvents(s, f), {
        kind: EventKind.ScheduleFailed, project: s.project, subject: s.name, detail: `${err.message}${how}`,
        data: { code: err.code, reason: err.message, fire_at: f.fireAt.toISOString(), manual: f.kind === 'now' },
      }]);
      return true;
    });
    if (!claimed) return 'taken';
    ctx.log.warn({ schedule: s.name, fireAt: f.fireAt, code: err.code, reason: err.message }, 'schedule firing refused; the schedule goes on');
    return { refused: err };
  }
}

/**
 * Fires every schedule that is due now, once each (a catch-up fires once for all it missed). "Now" is the
 * database's clock, the one next_fire_at was computed against, not this scheduler's. A firing that
 * throws (a retryable error: it claimed nothing and is tried on the next tick) is logged and the others
 * still fire: one schedule whose firing keeps failing never starves the rest.
 */
export async function fireDue(ctx: SchedulerContext): Promise<void> {
  const due = await ctx.db.selectFrom('schedules').selectAll().select(sql<Date>`now()`.as('db_now'))
    .where('state', '=', ScheduleState.Active).where('next_fire_at', '<=', sql<Date>`now()`)
    .orderBy('next_fire_at').limit(100).execute();
  for (const { db_now: now, ...s } of due) {
    try {
      const c = catchUp(s, s.next_fire_at!, now);
      const outcome = await fire(ctx, s, { kind: 'due', due: s.next_fire_at!, ...c });
      if (outcome === 'taken') ctx.log.debug({ schedule: s.name, due: s.next_fire_at }, 'schedule firing taken by another scheduler');
    } catch (err) {
      ctx.log.warn({ schedule: s.name, due: s.next_fire_at, err: errorMessage(err) }, 'schedule firing failed; tried again on the next tick');
    }
  }
}

/** run-now: fires once at once; the refusal of a firing is the caller's error. */
export async function fireNow(ctx: SchedulerContext, s: Row): Promise<string> {
  const outcome = await fire(ctx, s, { kind: 'now', fireAt: await databaseNow(ctx.db) });
  if (outcome === 'taken') throw notFound(`schedule "${s.name}" was deleted meanwhile`);
  if ('refused' in outcome) throw new TrainyardError(outcome.refused.code, `schedule "${s.name}" did not fire: ${outcome.refused.message}`);
  return outcome.run;
}
