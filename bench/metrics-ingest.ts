// The scheduler's own metric ingest (issue 23): AppendMetrics (scheduler/runs/metrics-ingest.ts) called in
// this process against a real Postgres with batches shaped as an agent sends them (records of about 16 KiB,
// up to 500 a call, two names with rising steps), so the figure is one scheduler's parse, step rule, cursor,
// cap and INSERTs, without Python or the agent in front of it (bench/metrics.ts measures the whole path).
//
//   node dist/bench/metrics-ingest.js [--points 1000000] [--per-call 100000] [--rounds 3] [--json]
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { benchEnv, median } from './lib.js';
import { createDb } from '../scheduler/db/database.js';
import { migrate } from '../scheduler/db/migrate.js';
import { appendMetrics } from '../scheduler/runs/metrics-ingest.js';
import type { SchedulerContext } from '../scheduler/context.js';
import { MAX_LOG_LINE_CHARS } from '../shared/log-lines.js';

const { values } = parseArgs({ options: {
  points: { type: 'string', default: '1000000' }, 'per-call': { type: 'string', default: '100000' }, rounds: { type: 'string', default: '3' }, json: { type: 'boolean' },
} });
const points = Number(values.points);
const perCall = Number(values['per-call']);
const rounds = Number(values.rounds);

/** The agent's records for points [from, to): two names logged together, as trainyard.log(step=i, loss=…, acc=…). */
function records(from: number, to: number, seq0: number): { seq: number; points_json: string }[] {
  const out: { seq: number; points_json: string }[] = [];
  let cur: string[] = []; let chars = 2;
  const t = Date.now() / 1000;
  for (let i = from; i < to; i++) {
    const p = JSON.stringify([i % 2 ? 'acc' : 'loss', i >> 1, 1 / (i + 1), t]);
    if (chars + p.length + 1 > MAX_LOG_LINE_CHARS) { out.push({ seq: seq0 + out.length, points_json: `[${cur.join(',')}]` }); cur = []; chars = 2; }
    cur.push(p); chars += p.length + 1;
  }
  if (cur.length) out.push({ seq: seq0 + out.length, points_json: `[${cur.join(',')}]` });
  return out;
}

const b = await benchEnv();
const { db, pool } = createDb(b.databaseUrl, 4);
try {
  await migrate(pool);
  const ctx = { db, settings: { maxMetricPointsPerRun: points * rounds + 1 }, runChanged: () => {} } as unknown as SchedulerContext;
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const id = `run_bench${r}`;
    await sql`INSERT INTO runs (id, package, package_major, package_minor, package_object_key, dataset, max_attempts, status, attempt, lease, agent)
      VALUES (${id}, 'p', 1, 0, 'k', 'd', 1, 'Running', 1, 1, 'agent1')`.execute(db);
    // Built before the clock starts: the agent's work, not the scheduler's.
    const calls: ReturnType<typeof records>[] = [];
    let seq = 1;
    for (let i = 0; i < points; i += perCall) { const recs = records(i, Math.min(points, i + perCall), seq); seq += recs.length; calls.push(recs); }
    const t0 = performance.now();
    for (const recs of calls) {
      const out = await appendMetrics(ctx, { run_id: id, lease: 1, records: recs } as never, 'agent1');
      if (out.acked_seq !== recs.at(-1)!.seq) throw new Error(`acked ${out.acked_seq}`);
    }
    const s = (performance.now() - t0) / 1000;
    const { rows: [n] } = await sql<{ n: string }>`SELECT count(*) AS n FROM run_metric_points p JOIN run_metric_series s ON s.id = p.series_id WHERE s.run_id = ${id}`.execute(db);
    if (Number(n!.n) !== points) throw new Error(`stored ${n!.n} of ${points}`);
    rates.push(Math.round(points / s));
  }
  const out = { points, perCall, rounds, medianPointsPerSecond: median(rates), all: rates };
  if (values.json) console.log(JSON.stringify(out));
  else console.log(`ingest (AppendMetrics in process): ${points} points in calls of ${perCall}: median ${out.medianPointsPerSecond} points/s (${rounds} rounds: ${rates.join(', ')})`);
} finally {
  await db.destroy();
  await b.drop();
}
process.exit(0);
