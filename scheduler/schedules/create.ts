// Creating a schedule: every check before the row exists (a bad request leaves nothing behind), then one
// statement writes the schedule and its schedule.created event.
import { customAlphabet } from 'nanoid';
import { sql, type Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { SchedulesTable } from '../db/database.js';
import type { CreateScheduleRequest__Output, Schedule } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import { checkName } from '../../shared/names.js';
import { EventKind } from '../../shared/event-kinds.js';
import { ScheduleState } from '../../shared/schedule-states.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorize } from '../auth/policy.js';
import { changeWithEvent } from '../events/record.js';
import { compileTiming, nextFiring } from './timing.js';
import { databaseNow } from '../db/clock.js';
import { checkSubmittable, firingPrincipal, storedRequest } from './request.js';
import { scheduleToProto } from './read.js';

const newId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 14);

export async function createSchedule(ctx: SchedulerContext, req: CreateScheduleRequest__Output, caller: Principal): Promise<Schedule> {
  const name = checkName('schedule', req.name);
  if (!req.run) throw invalid('run: give the request each firing submits (trainyard schedules create NAME --cron ... -- run train ...)');
  const project = req.run.project ? checkName('project', req.run.project) : caller.kind === 'user' ? caller.project : 'default';
  authorize(caller, Actions.ManageSchedule, project);
  const now = await databaseNow(ctx.db);
  const timing = compileTiming({ cron: req.cron, timezone: req.timezone, at: req.at }, now);
  const request = storedRequest(req.run, project);
  await checkSubmittable(ctx, request, firingPrincipal(project, name));

  const who = caller.kind === 'user' ? caller.tokenId : '';
  const when = timing.cron ? `cron "${timing.cron}" (${timing.timezone})` : `once at ${timing.at!.toISOString()}`;
  const [row] = await changeWithEvent<Selectable<SchedulesTable>>(ctx.db, sql`
    INSERT INTO schedules (id, name, project, state, cron, timezone, at, request, next_fire_at, created_by)
    VALUES (${`sch_${newId()}`}, ${name}, ${project}, ${ScheduleState.Active}, ${timing.cron}, ${timing.timezone}, ${timing.at},
            ${JSON.stringify(request)}::jsonb, ${nextFiring(timing, now)}, ${who})
    ON CONFLICT (project, name) DO NOTHING RETURNING *`,
  { kind: EventKind.ScheduleCreated, project: sql`c.project`, subject: sql`c.name`, detail: sql`${`${when}: run ${request.package} on ${request.dataset}`}::text` });
  // Names are per project (migrations/016): the clash is with this project's own schedule.
  if (!row) throw new TrainyardError(ErrorCodes.AlreadyExists, `schedule "${name}" already exists in project "${project}"; pick another name or delete it first`);
  ctx.log.info({ schedule: name, project, cron: timing.cron, timezone: timing.timezone, at: timing.at, by: who }, 'schedule created');
  return scheduleToProto(row);
}
