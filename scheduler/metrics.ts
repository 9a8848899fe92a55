// The scheduler's Prometheus metrics (GET /metrics on its HTTP port). Two kinds:
// - what happens in this process (placements, pass durations, submit→start and queue waits, log lines
//   ingested, invariant violations found, process metrics): counters and histograms, counted where it
//   happens (the placer, the transitions hook in scheduler.ts, runs/logs.ts, invariants.ts);
// - what Postgres holds (runs by status and project, the queue, agents by status, GPUs by model): read
//   at scrape time with two queries, never kept in memory, so every scheduler reports the same numbers
//   (aggregate them with max(), the counters with sum()).
import client from 'prom-client';
import { sql } from 'kysely';
import type { Db } from './db/database.js';
import { states } from './runs/transitions.js';
import { queuedStatuses, RunStatus } from '../shared/run-states.js';
import { agentStatuses, liveAgentStatuses, agentStates } from './agents/status.js';
import { sendJson, type Routes } from './http/server.js';
import { httpError } from './http/errors.js';
import { authenticateBearer } from './auth/authenticate.js';
import type { TokenVerifier } from './auth/tokens.js';
import type { Principal } from './auth/principal.js';
import { visibleProject } from './auth/policy.js';

/** The counters and histograms live as long as the process (one scheduler per process). */
const source = new client.Registry();
client.collectDefaultMetrics({ register: source });

/** Seconds, from a millisecond pass to a run that waited a day. */
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400];

export const schedulerMetrics = {
  placementPass: new client.Histogram({
    name: 'trainyard_placement_pass_seconds', help: 'duration of one placement pass of the placing scheduler (a pass over an empty queue is not counted)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [source],
  }),
  placements: new client.Counter({ name: 'trainyard_placements_total', help: 'runs placed on an agent by this scheduler (rate() gives placements per second)', registers: [source] }),
  queueWait: new client.Histogram({
    name: 'trainyard_queue_wait_seconds', help: 'from submit to placement on an agent, observed at each placement (a requeued run counts from its submit)',
    buckets: LATENCY_BUCKETS, registers: [source],
  }),
  submitToStart: new client.Histogram({
    name: 'trainyard_submit_to_start_seconds', help: 'from submit to Running (train.py started), observed once per started attempt',
    buckets: LATENCY_BUCKETS, registers: [source],
  }),
  logLines: new client.Counter({ name: 'trainyard_log_lines_ingested_total', help: 'run log lines stored by this scheduler (duplicates resent by an agent are not counted)', registers: [source] }),
  metricPoints: new client.Counter({ name: 'trainyard_metric_points_ingested_total', help: 'run metric points stored by this scheduler (resent and already-stored steps are not counted)', registers: [source] }),
  invariantViolations: new client.Counter({
    name: 'trainyard_invariant_violations_total', help: 'impossible states found by this scheduler\'s sweep (and doctor --repair), by kind', labelNames: ['kind'], registers: [source],
  }),
};

/** The gauges read from Postgres, on a registry of their own per scheduler (they close over its db). */
function databaseGauges(db: Db): { registry: client.Registry; refresh(): Promise<void> } {
  const registry = new client.Registry();
  const g = (name: string, help: string, labelNames: string[] = []) => new client.Gauge({ name, help, labelNames, registers: [registry] });
  const runs = g('trainyard_runs', 'runs by status and project (every run in the database, ended ones included)', ['status', 'project']);
  const queueDepth = g('trainyard_queue_depth', 'runs waiting to be placed (Scheduled without an agent, or Waiting for resources), by project', ['project']);
  const oldest = g('trainyard_queue_oldest_wait_seconds', 'how long the oldest run waiting to be placed has waited since its submit (0 when none waits)');
  const agents = g('trainyard_agents', 'agents by status', ['status']);
  const gpusTotal = g('trainyard_gpus', 'GPUs of live (online or draining) agents, by model', ['model']);
  const gpusInUse = g('trainyard_gpus_in_use', 'GPUs of live agents leased to a run, by model', ['model']);
  const QUEUED = states(queuedStatuses);
  const LIVE = agentStates(liveAgentStatuses);

  async function refresh(): Promise<void> {
    const [byStatus, fleet] = await Promise.all([
      sql<{ status: string; project: string; n: number; queued: number; oldest_s: number | null }>`
        SELECT status::text AS status, project, count(*)::int AS n,
          count(*) FILTER (WHERE agent IS NULL AND status IN ${QUEUED})::int AS queued,
          extract(epoch FROM now() - min(created_at) FILTER (WHERE agent IS NULL AND status IN ${QUEUED}))::float8 AS oldest_s
        FROM runs GROUP BY status, project`.execute(db),
      sql<{ kind: 'agent' | 'gpu'; key: string; n: number; used: number }>`
        SELECT 'agent' AS kind, status AS key, count(*)::int AS n, 0 AS used FROM agents GROUP BY status
        UNION ALL
        SELECT 'gpu', g.name, count(*)::int, count(l.run_id)::int
        FROM agent_gpus g JOIN agents a ON a.name = g.agent AND a.status IN ${LIVE}
        LEFT JOIN gpu_leases l ON l.agent = g.agent AND l.gpu_index = g.index
        GROUP BY g.name`.execute(db),
    ]);
    for (const m of [runs, queueDepth, agents, gpusTotal, gpusInUse]) m.reset();
    // Every status has a series (0 when empty), so a query by status never finds nothing.
    for (const s of Object.values(RunStatus)) runs.set({ status: s, project: 'default' }, 0);
    for (const s of agentStatuses) agents.set({ status: s }, 0);
    let oldestS = 0;
    const queuedBy = new Map<string, number>();
    for (const r of byStatus.rows) {
      runs.set({ status: r.status, project: r.project }, r.n);
      queuedBy.set(r.project, (queuedBy.get(r.project) ?? 0) + r.queued);
      if (r.oldest_s !== null) oldestS = Math.max(oldestS, r.oldest_s);
    }
    for (const [project, n] of queuedBy) queueDepth.set({ project }, n);
    oldest.set(oldestS);
    for (const r of fleet.rows) {
      if (r.kind === 'agent') agents.set({ status: r.key }, r.n);
      else { gpusTotal.set({ model: r.key }, r.n); gpusInUse.set({ model: r.key }, r.used); }
    }
  }
  return { registry, refresh };
}

/**
 * The samples a non-admin token may see: every series without a `project` label (the fleet's, the
 * process's) and those of its own project. Project names are label values, which prom-client writes
 * quoted and escaped, so a sample line names a project only as `project="..."`.
 */
export function projectView(text: string, project: string): string {
  const own = `project=${JSON.stringify(project)}`;
  return text.split('\n').filter((line) => line.startsWith('#') || !/[{,]project="/.test(line) || line.includes(`{${own}`) || line.includes(`,${own}`)).join('\n');
}

/**
 * GET /metrics: the Prometheus text format, the database gauges read now. It takes a token like the
 * console's API (issue 19: it listed every project with its counts to anyone): an admin token sees every
 * series; a member's or reader's sees the fleet's and its own project's, never another project's name.
 * No token, or a dead one: 401. Prometheus sends one with `authorization: { credentials_file: ... }`.
 */
export function metricsRoutes(db: Db, tokens: TokenVerifier): Routes {
  const gauges = databaseGauges(db);
  const all = client.Registry.merge([source, gauges.registry]);
  return {
    'GET /metrics': async (req, res) => {
      let caller: Principal;
      try {
        caller = await authenticateBearer(tokens, req.headers.authorization);
      } catch (err) {
        const e = httpError(err);
        if (!e) throw err;
        res.setHeader('www-authenticate', 'Bearer');
        return sendJson(res, e.status, e.body);
      }
      await gauges.refresh();
      const only = visibleProject(caller);
      const text = only === null ? await all.metrics() : projectView(await all.metrics(), only);
      res.writeHead(200, { 'content-type': all.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
    },
  };
}
