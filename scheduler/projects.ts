// Projects: the fair-share unit, and a tenant. Usage is read from the runs; caps, the agents a project's runs
// may use (`--agents`), whether they share agents (`--exclusive`), whether they may be preempted (`--preemptible`) and the storage quota are rows of
// project_limits (migrations/002, 006, 018, 028).
import { sql } from 'kysely';
import type { SchedulerContext } from './context.js';
import type { Project, ProjectLimits__Output, WaitingGang } from '../shared/proto.js';
import { checkName } from '../shared/names.js';
import { invalid } from '../shared/errors.js';
import { queuedStatuses } from '../shared/run-states.js';
import { states } from './runs/transitions.js';
import { usedBytes } from './storage/quota.js';
import { KEEP_RUNS_MAX_S } from '../shared/retention.js';

type Row = {
  name: string; max_runs: number | null; max_gpus: number | null; max_priority: number | null; running: number; gpus: number; queued: number;
  agent_labels: Record<string, string> | null; exclusive: boolean | null; preemptible: boolean | null; max_storage_bytes: string | null; storage_bytes: string;
  keep_runs_seconds: number | null; keep_versions: number | null;
};

/** Every project that has runs, caps, packages or datasets: what it runs now, holds, has queued, and its rules. */
export async function listProjects(ctx: SchedulerContext): Promise<Project[]> {
  const { rows } = await sql<Row>`
    WITH names AS (SELECT project FROM runs UNION SELECT project FROM project_limits UNION SELECT project FROM packages UNION SELECT project FROM datasets)
    SELECT n.project AS name, l.max_runs, l.max_gpus, l.max_priority, l.agent_labels, l.exclusive, l.preemptible, l.max_storage_bytes, l.keep_runs_seconds, l.keep_versions,
      (SELECT count(*)::int FROM runs r WHERE r.project = n.project AND r.agent IS NOT NULL) AS running,
      (SELECT coalesce(sum(gpus), 0)::int FROM runs r WHERE r.project = n.project AND r.agent IS NOT NULL) AS gpus,
      (SELECT count(*)::int FROM runs r WHERE r.project = n.project AND r.agent IS NULL AND r.status IN ${states(queuedStatuses)}) AS queued,
      ${usedBytes(sql`n.project`)} AS storage_bytes
    FROM names n LEFT JOIN project_limits l USING (project) ORDER BY n.project`.execute(ctx.db);
  const gangs = await waitingGangs(ctx);
  return rows.map((r) => ({
    name: r.name, running: r.running, gpus: r.gpus, queued: r.queued,
    max_runs: r.max_runs ?? -1, max_gpus: r.max_gpus ?? -1, max_priority: r.max_priority ?? -1,
    agents: r.agent_labels ?? {}, exclusive: r.exclusive ?? false, preemptible: r.preemptible ?? false,
    max_storage_bytes: r.max_storage_bytes === null ? -1 : Number(r.max_storage_bytes), storage_bytes: Number(r.storage_bytes),
    keep_runs_seconds: r.keep_runs_seconds ?? -1, keep_versions: r.keep_versions ?? -1,
    waiting_gangs: gangs.get(r.name) ?? [],
  }));
}

/**
 * Each project's queued multi-agent runs (README, "Multi-agent runs"): how long each has waited and what
 * for, in the placer's words (its status_detail names the agents reserved for it, --gang-reserve-after).
 * The predicate is the queue index's (migrations/013), so this reads the queued runs only.
 */
async function waitingGangs(ctx: SchedulerContext): Promise<Map<string, WaitingGang[]>> {
  const { rows } = await sql<{ project: string; run_id: string; agents: number; priority: number; waited_seconds: number; waiting_for: string }>`
    SELECT project, id AS run_id, agents, priority, extract(epoch FROM now() - created_at)::float8 AS waited_seconds, status_detail AS waiting_for
    FROM runs WHERE agent IS NULL AND status IN ${states(queuedStatuses)} AND NOT kill_requested AND agents > 1
    ORDER BY project, priority DESC, created_at, id`.execute(ctx.db);
  const out = new Map<string, WaitingGang[]>();
  for (const { project, ...g } of rows) {
    let list = out.get(project);
    if (!list) out.set(project, (list = []));
    list.push(g);
  }
  return out;
}

/** Labels as agents' --labels take them (shared/settings.ts parseLabels): a key, no separators in either. */
function checkBinding(agents: Record<string, string>): Record<string, string> {
  for (const [k, v] of Object.entries(agents)) {
    if (k === '' || /[\0,=]/.test(k) || /[\0,]/.test(v)) throw invalid(`agents: ${JSON.stringify(`${k}=${v}`)} is not a label KEY=VALUE (no NUL or ",", a key without "=")`);
  }
  return agents;
}

/** At most KEEP_RUNS_MAX_S (100 years). */
function keepRunsSeconds(n: number | null): number | null {
  if (n !== null && n > KEEP_RUNS_MAX_S) throw invalid(`keep_runs_seconds must be at most ${KEEP_RUNS_MAX_S} (100 years), got ${n}; -1 keeps everything`);
  return n;
}

/**
 * Sets a project's caps and rules (each only when asked: a client that knows nothing of one keeps it) and
 * wakes the placer, since a raised cap or a new binding may let queued runs start.
 */
export async function setProjectLimits(ctx: SchedulerContext, req: ProjectLimits__Output): Promise<Project> {
  const project = checkName('project', req.project);
  const cap = (n: number, what: string) => {
    if (!Number.isInteger(n) || n < -1) throw invalid(`${what} must be -1 (no cap) or a non-negative integer, got ${n}`);
    return n < 0 ? null : n;
  };
  const retention = (n: number, what: string) => {
    if (n === -1) return null;
    if (!Number.isSafeInteger(n) || n < 1) throw invalid(`${what} must be -1 (keep everything) or at least 1, got ${n}`);
    return n;
  };
  const values = { project, max_runs: cap(req.max_runs, 'max_runs'), max_gpus: cap(req.max_gpus, 'max_gpus') };
  const binding = req.set_agents ? checkBinding(req.agents ?? {}) : null;
  const rest = {
    ...(req.set_max_priority ? { max_priority: cap(req.max_priority, 'max_priority') } : {}),
    // An empty binding is none: the project may use any agent again.
    ...(binding ? { agent_labels: Object.keys(binding).length ? JSON.stringify(binding) : null } : {}),
    ...(req.set_exclusive ? { exclusive: req.exclusive } : {}),
    // Whether higher-priority runs may preempt this project's runs (scheduler/placement/preemption.ts).
    ...(req.set_preemptible ? { preemptible: req.preemptible } : {}),
    ...(req.set_max_storage ? { max_storage_bytes: cap(req.max_storage_bytes, 'max_storage_bytes') } : {}),
    // Retention (storage/retention.ts): applied by the leader; -1 keeps everything.
    ...(req.set_keep_runs ? { keep_runs_seconds: keepRunsSeconds(retention(Number(req.keep_runs_seconds), 'keep_runs_seconds')) } : {}),
    ...(req.set_keep_versions ? { keep_versions: retention(req.keep_versions, 'keep_versions') } : {}),
  };
  await ctx.db.insertInto('project_limits').values({ ...values, ...rest })
    .onConflict((oc) => oc.column('project').doUpdateSet({ max_runs: values.max_runs, max_gpus: values.max_gpus, ...rest })).execute();
  ctx.log.info({ ...values, ...rest }, 'project limits set');
  ctx.limitsChanged();
  return (await listProjects(ctx)).find((p) => p.name === project)!;
}
