// Projects: the fair-share unit. Usage is read from the runs; caps are rows of project_limits.
import { sql } from 'kysely';
import type { SchedulerContext } from './context.js';
import type { Project, ProjectLimits__Output } from '../shared/proto.js';
import { checkName } from '../shared/names.js';
import { invalid } from '../shared/errors.js';
import { queuedStatuses } from '../shared/run-states.js';
import { states } from './runs/transitions.js';

/** Every project that has runs or caps: what it runs now, the GPUs it holds, what it has queued. */
export async function listProjects(ctx: SchedulerContext): Promise<Project[]> {
  const { rows } = await sql<{ name: string; max_runs: number | null; max_gpus: number | null; max_priority: number | null; running: number; gpus: number; queued: number }>`
    WITH names AS (SELECT project FROM runs UNION SELECT project FROM project_limits)
    SELECT n.project AS name, l.max_runs, l.max_gpus, l.max_priority,
      (SELECT count(*)::int FROM runs r WHERE r.project = n.project AND r.agent IS NOT NULL) AS running,
      (SELECT coalesce(sum(gpus), 0)::int FROM runs r WHERE r.project = n.project AND r.agent IS NOT NULL) AS gpus,
      (SELECT count(*)::int FROM runs r WHERE r.project = n.project AND r.agent IS NULL AND r.status IN ${states(queuedStatuses)}) AS queued
    FROM names n LEFT JOIN project_limits l USING (project) ORDER BY n.project`.execute(ctx.db);
  return rows.map((r) => ({ ...r, max_runs: r.max_runs ?? -1, max_gpus: r.max_gpus ?? -1, max_priority: r.max_priority ?? -1 }));
}

/** Sets a project's caps (-1: none) and wakes the placer, since a raised cap may let queued runs start. */
export async function setProjectLimits(ctx: SchedulerContext, req: ProjectLimits__Output): Promise<Project> {
  const project = checkName('project', req.project);
  const cap = (n: number, what: string) => {
    if (!Number.isInteger(n) || n < -1) throw invalid(`${what} must be -1 (no cap) or a non-negative integer, got ${n}`);
    return n < 0 ? null : n;
  };
  const values = { project, max_runs: cap(req.max_runs, 'max_runs'), max_gpus: cap(req.max_gpus, 'max_gpus') };
  // The priority cap changes only when asked (set_max_priority), so a client that knows nothing of it keeps it.
  const priority = req.set_max_priority ? { max_priority: cap(req.max_priority, 'max_priority') } : {};
  await ctx.db.insertInto('project_limits').values({ ...values, ...priority })
    .onConflict((oc) => oc.column('project').doUpdateSet({ max_runs: values.max_runs, max_gpus: values.max_gpus, ...priority })).execute();
  ctx.log.info({ ...values, ...priority }, 'project limits set');
  ctx.kick();
  return (await listProjects(ctx)).find((p) => p.name === project)!;
}
