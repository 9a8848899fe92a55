// The schedule read model: one schedule (by name, as the policy allows), a list, and the wire form.
import type { Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { SchedulesTable } from '../db/database.js';
import type { Schedule } from '../../shared/proto.js';
import { invalid, notFound } from '../../shared/errors.js';
import type { Principal } from '../auth/principal.js';
import { authorizeObject, visibleProject, type Action } from '../auth/policy.js';
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

/**
 * The schedule named `name`, if the caller may do `action` on its project (NOT_FOUND when there is none).
 * Names are per project (migrations/016): a token's schedule is its project's; an admin, who sees every
 * project, names one as `PROJECT/NAME` when several projects have a schedule of that name.
 */
export async function authorizedSchedule(ctx: SchedulerContext, caller: Principal, name: string, action: Action): Promise<Selectable<SchedulesTable>> {
  const missing = () => notFound(`schedule "${name}" not found`);
  const slash = name.indexOf('/');
  const [project, bare] = slash >= 0 ? [name.slice(0, slash), name.slice(slash + 1)] : [visibleProject(caller), name];
  let q = ctx.db.selectFrom('schedules').selectAll().where('name', '=', bare).orderBy('project').limit(2);
  if (project !== null) q = q.where('project', '=', project);
  const rows = await q.execute();
  if (rows.length > 1) {
    throw invalid(`schedule "${bare}" exists in several projects (${rows.map((r) => r.project).join(', ')}, ...): name it as PROJECT/${bare}`);
  }
  const s = rows[0];
  if (!s) throw missing();
  authorizeObject(caller, action, s.project, missing);
  return s;
}

/** By name; the caller's projects only (every project for an admin). */
export async function listSchedules(ctx: SchedulerContext, caller: Principal): Promise<Schedule[]> {
  const only = visibleProject(caller);
  let q = ctx.db.selectFrom('schedules').selectAll().orderBy('name');
  if (only !== null) q = q.where('project', '=', only);
  return (await q.execute()).map(scheduleToProto);
}
