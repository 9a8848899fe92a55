// The schedule read model: one schedule (by name, as the policy allows), a list, and the wire form.
import type { Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { SchedulesTable } from '../db/database.js';
import type { Schedule } from '../../shared/proto.js';
import { notFound } from '../../shared/errors.js';
import type { Principal } from '../auth/principal.js';
import { authorize, visibleProject, type Action } from '../auth/policy.js';
import { normalizeRequest } from './request.js';

const iso = (d: Date | null) => (d ? d.toISOString() : '');

export function scheduleToProto(s: Selectable<SchedulesTable>): Schedule {
  return {
    id: s.id, name: s.name, project: s.project, state: s.state, cron: s.cron ?? '', timezone: s.cron ? s.timezone : '', at: iso(s.at),
    run: normalizeRequest(s.request), next_fire_at: iso(s.next_fire_at), last_fired_at: iso(s.last_fired_at), last_run_id: s.last_run_id ?? '',
    last_error: s.last_error, fired: s.fired_count, failed: s.failed_count, missed_total: s.missed_total, last_missed: s.last_missed,
    last_missed_at: iso(s.last_missed_at), created_at: iso(s.created_at), created_by: s.created_by,
  };
}

/** The schedule named `name`, if the caller may do `action` on its project (NOT_FOUND when there is none). */
export async function authorizedSchedule(ctx: SchedulerContext, caller: Principal, name: string, action: Action): Promise<Selectable<SchedulesTable>> {
  const s = await ctx.db.selectFrom('schedules').selectAll().where('name', '=', name).executeTakeFirst();
  if (!s) throw notFound(`schedule "${name}" not found`);
  authorize(caller, action, s.project);
  return s;
}

/** By name; the caller's projects only (every project for an admin). */
export async function listSchedules(ctx: SchedulerContext, caller: Principal): Promise<Schedule[]> {
  const only = visibleProject(caller);
  let q = ctx.db.selectFrom('schedules').selectAll().orderBy('name');
  if (only !== null) q = q.where('project', '=', only);
  return (await q.execute()).map(scheduleToProto);
}
