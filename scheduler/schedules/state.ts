// A schedule's state changes (shared/schedule-states.ts): pause, resume, delete. Each is one guarded
// statement that also writes its event; asking for the state a schedule is already in changes nothing.
import { sql, type RawBuilder, type Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { SchedulesTable } from '../db/database.js';
import type { Schedule } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, notFound } from '../../shared/errors.js';
import { EventKind } from '../../shared/event-kinds.js';
import { ScheduleState } from '../../shared/schedule-states.js';
import { changeWithEvent } from '../events/record.js';
import { scheduleToProto } from './read.js';
import { nextFiring } from './timing.js';
import { databaseNow } from '../db/clock.js';

type Row = Selectable<SchedulesTable>;

async function change(ctx: SchedulerContext, s: Row, kind: EventKind, update: RawBuilder<unknown>, detail: string): Promise<Row | undefined> {
  const [row] = await changeWithEvent<Row>(ctx.db, update, { kind, project: sql`c.project`, subject: sql`c.name`, detail: sql`${detail}::text` });
  if (row) ctx.log.info({ schedule: s.name, event: kind }, 'schedule changed');
  return row;
}

const done = (s: Row) => new TrainyardError(ErrorCodes.FailedPrecondition, `schedule "${s.name}" has fired (a one-shot, --at); create another`);

export async function pauseSchedule(ctx: SchedulerContext, s: Row): Promise<Schedule> {
  if (s.state === ScheduleState.Done) throw done(s);
  const row = await change(ctx, s, EventKind.SchedulePaused, sql`
    UPDATE schedules SET state = ${ScheduleState.Paused} WHERE id = ${s.id} AND state = ${ScheduleState.Active} RETURNING *`, 'paused');
  return reread(ctx, row ?? s);
}

/** A paused cron schedule resumes from now on: what it skipped while paused is not missed, and not fired. */
export async function resumeSchedule(ctx: SchedulerContext, s: Row): Promise<Schedule> {
  if (s.state === ScheduleState.Done) throw done(s);
  const next = s.cron ? nextFiring(s, await databaseNow(ctx.db)) : s.at;
  const row = await change(ctx, s, EventKind.ScheduleResumed, sql`
    UPDATE schedules SET state = ${ScheduleState.Active}, next_fire_at = ${next}
    WHERE id = ${s.id} AND state = ${ScheduleState.Paused} RETURNING *`, `resumed; next firing ${next?.toISOString() ?? 'none'}`);
  return reread(ctx, row ?? s);
}

export async function deleteSchedule(ctx: SchedulerContext, s: Row): Promise<Schedule> {
  const row = await change(ctx, s, EventKind.ScheduleDeleted, sql`DELETE FROM schedules WHERE id = ${s.id} RETURNING *`,
    `deleted after ${s.fired_count} run(s); its runs keep its name`);
  if (!row) throw notFound(`schedule "${s.name}" not found`);
  return scheduleToProto(row);
}

async function reread(ctx: SchedulerContext, s: Row): Promise<Schedule> {
  const now = await ctx.db.selectFrom('schedules').selectAll().where('id', '=', s.id).executeTakeFirst();
  if (!now) throw notFound(`schedule "${s.name}" not found`);
  return scheduleToProto(now);
}
