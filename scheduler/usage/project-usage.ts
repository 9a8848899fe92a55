// Usage per project (`trainyard projects usage`, the console's Usage page): GPU-hours by model and
// CPU-hours from attempt_usage (migration 025: each attempt's start and end on its agent, so a requeued
// attempt counts what it held), each attempt's time clipped to the window [since, now]; runs submitted in
// the window by their status now; the storage the project holds now (as its quota counts it).
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { ProjectUsage, ProjectUsageRequest__Output, ProjectUsageResponse } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorize, visibleProject } from '../auth/policy.js';
import { usedBytes } from '../storage/quota.js';

const DEFAULT_DAYS = 30;
/** The series has at most this many points, whatever the window and step. */
const MAX_POINTS = 2000;

interface Row { project: string; gpu_hours: number; cpu_hours: number; attempts: string; by_model: { model: string; hours: number }[] | null; outcomes: { status: string; runs: number }[] | null; storage_bytes: string }
interface Point { project: string; at: Date; gpu_hours: number; cpu_hours: number }

export async function projectUsage(ctx: SchedulerContext, caller: Principal, req: ProjectUsageRequest__Output): Promise<ProjectUsageResponse> {
  const now = new Date();
  let since = new Date(now.getTime() - DEFAULT_DAYS * 86_400_000);
  if (req.since) {
    since = new Date(req.since);
    if (!/^\d{4}-\d\d-\d\dT/.test(req.since) || Number.isNaN(since.getTime())) throw invalid(`since "${req.since}" is not an RFC 3339 time (2025-01-31T12:00:00Z)`);
    if (since >= now) throw invalid(`since ${req.since} is not in the past`);
  }
  let only = visibleProject(caller);
  if (req.project) {
    authorize(caller, Actions.ReadProject, req.project);
    only = req.project;
  }
  if (!Number.isInteger(req.bucket_hours) || req.bucket_hours < 0 || req.bucket_hours > 8760) throw invalid(`bucket_hours must be 0 (a day) to 8760 (a year), got ${req.bucket_hours}`);
  const stepHours = req.bucket_hours || 24;
  if ((now.getTime() - since.getTime()) / 3_600_000 / stepHours > MAX_POINTS) throw invalid(`the window holds more than ${MAX_POINTS} buckets of ${stepHours} h: take a later --since or larger buckets`);

  // An attempt's time within [lo, hi): from the later of its start and lo to the earlier of its end (now while it runs) and hi.
  const hours = (lo: unknown, hi: unknown) => sql`greatest(0, extract(epoch FROM least(coalesce(u.ended_at, ${now}), ${hi}) - greatest(u.started_at, ${lo})) / 3600)`;
  const inWindow = sql`u.started_at < ${now} AND coalesce(u.ended_at, ${now}) > ${since}`;
  const { rows } = await sql<Row>`
    WITH names AS (SELECT project FROM runs UNION SELECT project FROM project_limits UNION SELECT project FROM packages UNION SELECT project FROM datasets),
    shown AS (SELECT project FROM names WHERE ${only}::text IS NULL OR project = ${only})
    SELECT n.project,
      (SELECT coalesce(sum(${hours(since, now)} * cardinality(u.gpu_models)), 0)::float8 FROM attempt_usage u WHERE u.project = n.project AND ${inWindow}) AS gpu_hours,
      (SELECT coalesce(sum(${hours(since, now)} * u.cpus), 0)::float8 FROM attempt_usage u WHERE u.project = n.project AND ${inWindow}) AS cpu_hours,
      (SELECT count(*) FROM attempt_usage u WHERE u.project = n.project AND ${inWindow}) AS attempts,
      (SELECT jsonb_agg(jsonb_build_object('model', m.model, 'hours', m.hours) ORDER BY m.hours DESC, m.model) FROM (
         SELECT g.model, sum(${hours(since, now)})::float8 AS hours
         FROM attempt_usage u, unnest(u.gpu_models) AS g(model) WHERE u.project = n.project AND ${inWindow} GROUP BY g.model) m) AS by_model,
      (SELECT jsonb_agg(jsonb_build_object('status', o.status, 'runs', o.runs) ORDER BY o.status) FROM (
         SELECT r.status::text AS status, count(*) AS runs FROM runs r WHERE r.project = n.project AND r.created_at >= ${since} GROUP BY r.status) o) AS outcomes,
      ${usedBytes(sql`n.project`)} AS storage_bytes
    FROM shown n ORDER BY n.project`.execute(ctx.db);

  const { rows: points } = await sql<Point>`
    WITH b AS (SELECT generate_series(${since}::timestamptz, ${now}::timestamptz, make_interval(hours => ${stepHours})) AS lo)
    SELECT u.project, b.lo AS at,
      sum(${hours(sql`b.lo`, sql`b.lo + make_interval(hours => ${stepHours})`)} * cardinality(u.gpu_models))::float8 AS gpu_hours,
      sum(${hours(sql`b.lo`, sql`b.lo + make_interval(hours => ${stepHours})`)} * u.cpus)::float8 AS cpu_hours
    FROM b JOIN attempt_usage u ON u.started_at < b.lo + make_interval(hours => ${stepHours}) AND coalesce(u.ended_at, ${now}) > b.lo
    WHERE ${inWindow} AND (${only}::text IS NULL OR u.project = ${only})
    GROUP BY u.project, b.lo ORDER BY b.lo`.execute(ctx.db);

  const projects: ProjectUsage[] = rows.map((r) => ({
    project: r.project, gpu_hours: r.gpu_hours, cpu_hours: r.cpu_hours, attempts: Number(r.attempts),
    gpu_hours_by_model: r.by_model ?? [], runs_by_outcome: r.outcomes ?? [], storage_bytes: Number(r.storage_bytes),
    series: points.filter((p) => p.project === r.project).map((p) => ({ at: p.at.toISOString(), gpu_hours: p.gpu_hours, cpu_hours: p.cpu_hours })),
  }));
  return { since: since.toISOString(), until: now.toISOString(), projects };
}
