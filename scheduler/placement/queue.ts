// The queue's order, in SQL: priority first; then fair share between projects, so a project with 10,000
// queued runs does not starve one with 3: each project's k-th queued run ranks as if the project had k
// runs more than it already runs, and lower ranks go first (at equal priority, projects take turns,
// and a project already holding many agents waits behind one holding few); then age.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { RunStatus } from '../../shared/run-states.js';
import type { PlacedRun } from './load-fleet.js';

export interface QueuedRun {
  id: string; project: string; status: string; status_detail: string;
  gpus: number; gpu_model: string; gpu_memory_mb: number; cpus: number; memory_mb: number; selector: Record<string, string>;
}

export async function queueHead(db: Db, limit: number): Promise<QueuedRun[]> {
  const { rows } = await sql<QueuedRun>`
    WITH running AS (
      SELECT project, count(*)::int AS n FROM runs WHERE agent IS NOT NULL GROUP BY project
    ), queued AS (
      SELECT id, project, status, status_detail, gpus, gpu_model, gpu_memory_mb, cpus, memory_mb, selector, priority, created_at,
             row_number() OVER (PARTITION BY project, priority ORDER BY created_at, id) AS k
      FROM runs
      WHERE agent IS NULL AND status IN (${RunStatus.Scheduled}, ${RunStatus.Waiting}) AND NOT kill_requested
    )
    SELECT q.id, q.project, q.status, q.status_detail, q.gpus, q.gpu_model, q.gpu_memory_mb, q.cpus, q.memory_mb, q.selector
    FROM queued q LEFT JOIN running r USING (project)
    ORDER BY q.priority DESC, q.k + coalesce(r.n, 0), q.created_at, q.id
    LIMIT ${limit}`.execute(db);
  return rows;
}

export interface ProjectUsage { runs: number; gpus: number; maxRuns: number | null; maxGpus: number | null }

/** What each project runs now (from the pass's placed runs), and its caps. */
export async function projectUsage(db: Db, placed: readonly PlacedRun[]): Promise<Map<string, ProjectUsage>> {
  const out = new Map<string, ProjectUsage>();
  for (const l of await db.selectFrom('project_limits').selectAll().execute()) {
    out.set(l.project, { runs: 0, gpus: 0, maxRuns: l.max_runs, maxGpus: l.max_gpus });
  }
  for (const r of placed) {
    let u = out.get(r.project);
    if (!u) out.set(r.project, (u = { runs: 0, gpus: 0, maxRuns: null, maxGpus: null }));
    u.runs++;
    u.gpus += r.gpus;
  }
  return out;
}

/** Why a project may not start one more run of `gpus` GPUs, or null if it may. */
export function overLimit(project: string, u: ProjectUsage | undefined, gpus: number): string | null {
  if (!u) return null;
  if (u.maxRuns !== null && u.runs + 1 > u.maxRuns) return `project ${project} is at its limit of ${u.maxRuns} concurrent runs`;
  if (u.maxGpus !== null && gpus > 0 && u.gpus + gpus > u.maxGpus) return `project ${project} is at its limit of ${u.maxGpus} GPUs`;
  return null;
}
