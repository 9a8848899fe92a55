// The queue's order, in SQL: priority first; then fair share between projects, so a project with 10,000
// queued runs does not starve one with 3: each project's k-th queued run ranks as if the project had k
// runs more than it already runs, and lower ranks go first (at equal priority, projects take turns,
// and a project already holding many agents waits behind one holding few); then age.
//
// Only the head is read: for each (priority, project) with queued runs (found by skipping through the
// runs_queue_heads index, one probe per group), its oldest `limit` runs, which are all it could place in
// one pass. A pass costs the same with 100 queued runs or 100,000 (it grows with the number of projects
// that have runs queued, not with how many they queued).
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { queuedStatuses } from '../../shared/run-states.js';
import { states } from '../runs/transitions.js';
import type { ProjectRunning } from './fleet-cache.js';
import type { Request } from './fleet.js';

export interface QueuedRun {
  id: string; project: string; status: string; status_detail: string; priority: number;
  gpus: number; gpu_model: string; gpu_memory_mb: number; cpus: number; memory_mb: number;
  /** The selector as jsonb's text, which is the same for the same labels (jsonb orders its keys). */
  selector: string;
  /** Members of a gang run (1: an ordinary run; placement/gang.ts). */
  agents: number;
  /** A gang's --prefer-same label ('' = none). */
  prefer_same: string;
  /** A gang's submission, for --gang-reserve-after (null for an ordinary run: no timestamp parsed per run). */
  created_at: Date | null;
}

/** The predicate of the runs_queue_heads index (migrations/013): a killed run never waits in the queue. */
const QUEUED = sql`agent IS NULL AND status IN ${states(queuedStatuses)} AND NOT kill_requested`;

/**
 * The first `limit` queued runs in the queue's order, given what each project runs now. The order is
 * computed on the index alone (ids and ages of each group's oldest runs); only the runs it keeps are read.
 */
export async function queueHead(db: Db, limit: number, running: ReadonlyMap<string, ProjectRunning>): Promise<QueuedRun[]> {
  // A lookup per row: no join with a list that may hold thousands of projects.
  const counts: Record<string, number> = {};
  for (const [project, r] of running) counts[project] = r.runs;
  const { rows } = await sql<QueuedRun>`
    WITH RECURSIVE g AS (
      (SELECT priority, project FROM runs WHERE ${QUEUED} ORDER BY priority, project LIMIT 1)
      UNION ALL
      SELECT n.priority, n.project FROM g CROSS JOIN LATERAL (
        SELECT priority, project FROM runs WHERE ${QUEUED} AND (priority, project) > (g.priority, g.project)
        ORDER BY priority, project LIMIT 1) n
    ), head AS (
      SELECT h.id, g.priority, h.created_at, h.k + coalesce((${JSON.stringify(counts)}::jsonb ->> g.project)::int, 0) AS rank
      FROM g CROSS JOIN LATERAL (
        SELECT id, created_at, row_number() OVER (ORDER BY created_at, id) AS k
        FROM runs WHERE ${QUEUED} AND priority = g.priority AND project = g.project
        ORDER BY created_at, id LIMIT ${limit}) h
      ORDER BY g.priority DESC, rank, h.created_at, h.id
      LIMIT ${limit}
    )
    -- One primary-key probe per run kept, never a scan of the queue whatever the statistics say (the same
    -- fence as the transitions' probe(), scheduler/runs/transitions.ts).
    SELECT r.id, r.project, r.status, r.status_detail, r.priority, r.gpus, r.gpu_model, r.gpu_memory_mb, r.cpus, r.memory_mb, r.selector::text AS selector, r.agents, r.prefer_same,
      CASE WHEN r.agents > 1 THEN r.created_at END AS created_at
    FROM head CROSS JOIN LATERAL (SELECT *, ${QUEUED} AS queued FROM runs WHERE runs.id = head.id OFFSET 0) r
    WHERE r.queued
    ORDER BY head.priority DESC, head.rank, head.created_at, head.id`.execute(db);
  return rows;
}

export interface ProjectCaps {
  maxRuns: number | null; maxGpus: number | null;
  /** The labels every agent that takes the project's runs must have (`--agents`), or null: any agent. */
  agents: Readonly<Record<string, string>> | null;
  /** The project's runs never share an agent with another project's (`--exclusive`). */
  exclusive: boolean;
  /** Higher-priority runs may preempt the project's runs (`--preemptible`). */
  preemptible: boolean;
}

/** The projects' caps and rules (`trainyard projects set`): a small table; the placer keeps it a few seconds (placer.ts #projectCaps). */
export async function projectCaps(db: Db): Promise<Map<string, ProjectCaps>> {
  const rows = await db.selectFrom('project_limits').select(['project', 'max_runs', 'max_gpus', 'agent_labels', 'exclusive', 'preemptible']).execute();
  return new Map(rows.map((l) => [l.project, { maxRuns: l.max_runs, maxGpus: l.max_gpus, agents: l.agent_labels, exclusive: l.exclusive, preemptible: l.preemptible }]));
}

/**
 * The selector a run is placed with: its own, within its project's agents. A label the run asks for that
 * the binding sets otherwise can never be met inside the project's agents: null (submit refuses such a
 * selector; this catches a run queued before the binding changed).
 */
export function boundSelector(selector: Readonly<Record<string, string>>, agents: Readonly<Record<string, string>> | null): Readonly<Record<string, string>> | null {
  if (!agents) return selector;
  for (const k in agents) if (Object.hasOwn(selector, k) && selector[k] !== agents[k]) return null;
  return { ...selector, ...agents };
}

/** Why a selector leaves its project's agents, for the run's waiting detail and submit's refusal. */
export function outsideBinding(project: string, selector: Readonly<Record<string, string>>, agents: Readonly<Record<string, string>>): string {
  const clash = Object.keys(agents).filter((k) => Object.hasOwn(selector, k) && selector[k] !== agents[k]).map((k) => `${k}=${selector[k]}`);
  const bound = Object.entries(agents).map(([k, v]) => `${k}=${v}`).join(',');
  return `selector ${clash.join(',')} is outside project "${project}"'s agents (${bound}, set by an admin with trainyard projects set ${project} --agents); a selector may only narrow within them`;
}

/** Why a project may not start one more run of `gpus` GPUs, or null if it may. */
export function overLimit(project: string, running: ProjectRunning | undefined, caps: ProjectCaps | undefined, gpus: number): string | null {
  if (!caps) return null;
  const runs = running?.runs ?? 0;
  const used = running?.gpus ?? 0;
  if (caps.maxRuns !== null && runs + 1 > caps.maxRuns) return `project ${project} is at its limit of ${caps.maxRuns} concurrent runs`;
  if (caps.maxGpus !== null && gpus > 0 && used + gpus > caps.maxGpus) return `project ${project} is at its limit of ${caps.maxGpus} GPUs`;
  return null;
}

/**
 * One request per shape in a pass: the index keys its answers by the request. The selector is the run's
 * within its project's agents (`agents`, the admin's binding); null when the run's own selector leaves them.
 * `perProject`: the request carries its project (see #place).
 */
export function requestOf(run: QueuedRun, requests: Map<string, Request | null>, agents: Readonly<Record<string, string>> | null, perProject: boolean): Request | null {
  const bound = agents || perProject ? run.project : '';
  const key = `${run.gpus}|${run.gpu_model}|${run.gpu_memory_mb}|${run.cpus}|${run.memory_mb}|${run.selector}|${bound}`;
  let r = requests.get(key);
  if (r === undefined) {
    const selector = boundSelector(JSON.parse(run.selector) as Record<string, string>, agents);
    r = selector === null ? null : {
      gpus: run.gpus, gpuModel: run.gpu_model, gpuMemoryMb: run.gpu_memory_mb, cpus: run.cpus, memoryMb: run.memory_mb, selector,
      ...(perProject ? { project: run.project } : {}),
    };
    requests.set(key, r);
  }
  return r;
}
