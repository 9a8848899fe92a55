// GetRunMetrics: a run's series and summary. A series with more points than asked for is downsampled here,
// per name, so a client never receives (or draws) a million points: its steps are cut into max_points / 4
// equal buckets and each bucket keeps its first, last, lowest and highest point, which keeps the curve's
// shape, its spikes included (what min/max-per-pixel plotting keeps).
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { GetRunMetricsRequest__Output, MetricSeries, RunMetrics } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';
import { isTerminal } from '../../shared/run-states.js';
import { runState } from './read.js';

/** The most points one series answers with, downsampled or not. */
export const MAX_POINTS_PER_SERIES = 1_000_000;

type Row = [step: number, value: number, attempt: number, t: number];

export async function getRunMetrics(ctx: SchedulerContext, req: GetRunMetricsRequest__Output): Promise<RunMetrics> {
  const max = req.max_points ?? 0;
  if (!Number.isInteger(max) || max < 0) throw invalid(`max_points must be a non-negative integer, got ${max}`);
  if (max > 0 && max < 8) throw invalid('max_points must be 0 (every point) or at least 8');
  const limit = max === 0 ? MAX_POINTS_PER_SERIES : Math.min(max, MAX_POINTS_PER_SERIES);
  const run = await runState(ctx, req.run_id);
  const names = req.names ?? [];
  const after = new Map((req.after ?? []).map((c) => [c.name, Number(c.after_step)]));
  const { rows: list } = await sql<{ id: string; name: string; points: string; last_step: string }>`
    SELECT id, name, points, last_step FROM run_metric_series WHERE run_id = ${req.run_id}
      ${names.length ? sql`AND name = ANY(${names}::text[])` : sql``} ORDER BY name`.execute(ctx.db);
  const series: MetricSeries[] = [];
  for (const s of list) {
    const from = after.get(s.name) ?? -1;
    const rows = await readSeries(ctx, s.id, from, Number(s.last_step), Number(s.points), limit);
    series.push({
      name: s.name, steps: rows.points.map((r) => r[0]), values: rows.points.map((r) => r[1]), attempts: rows.points.map((r) => r[2]),
      times: rows.points.map((r) => r[3]), total_points: Number(s.points), downsampled: rows.downsampled,
    });
  }
  const { rows: summary } = await sql<{ name: string; value: number; attempt: number }>`
    SELECT name, value, attempt FROM run_metric_summary WHERE run_id = ${req.run_id} ORDER BY name`.execute(ctx.db);
  const { rows: [dropped] } = await sql<{ n: string }>`SELECT coalesce(sum(dropped), 0) AS n FROM run_metric_cursors WHERE run_id = ${req.run_id}`.execute(ctx.db);
  return { run_id: req.run_id, series, summary, dropped_points: Number(dropped!.n), live: !isTerminal(run.status ?? '') };
}

/** A series' points after `from`: all of them when they fit `limit`, else its downsample. */
async function readSeries(ctx: SchedulerContext, id: string, from: number, last: number, total: number, limit: number): Promise<{ points: Row[]; downsampled: boolean }> {
  const { rows: [span] } = await sql<{ first: string | null; n: string }>`
    SELECT min(step) AS first, ${from < 0 ? sql`${total}::bigint` : sql`count(*)`} AS n FROM run_metric_points WHERE series_id = ${id} AND step > ${from}`.execute(ctx.db);
  if (span?.first === null || span?.first === undefined) return { points: [], downsampled: false };
  if (Number(span.n) <= limit) {
    const { rows } = await sql<{ r: Row }>`
      SELECT ARRAY[step::float8, value, attempt::float8, t] AS r FROM run_metric_points WHERE series_id = ${id} AND step > ${from} ORDER BY step`.execute(ctx.db);
    return { points: rows.map((x) => x.r.map(Number) as Row), downsampled: false };
  }
  const first = Number(span.first);
  const buckets = Math.max(1, Math.floor(limit / 4));
  const width = Math.max(1, Math.ceil((last - first + 1) / buckets));
  // One pass: arrays compare element by element, so min(ARRAY[step, ...]) is the bucket's first point and
  // min(ARRAY[value, step, ...]) its lowest, with the rest of the point beside it.
  const { rows } = await sql<{ f: number[]; l: number[]; lo: number[]; hi: number[] }>`
    SELECT min(ARRAY[step::float8, value, attempt, t]) AS f, max(ARRAY[step::float8, value, attempt, t]) AS l,
           min(ARRAY[value, step::float8, attempt, t]) AS lo, max(ARRAY[value, step::float8, attempt, t]) AS hi
    FROM (SELECT step, value, attempt, t, (step - ${first}) / ${width} AS b FROM run_metric_points WHERE series_id = ${id} AND step > ${from}) p
    GROUP BY b ORDER BY b`.execute(ctx.db);
  const out: Row[] = [];
  for (const b of rows) {
    const f = b.f.map(Number), l = b.l.map(Number), lo = b.lo.map(Number), hi = b.hi.map(Number);
    const pts: Row[] = [[f[0]!, f[1]!, f[2]!, f[3]!], [l[0]!, l[1]!, l[2]!, l[3]!], [lo[1]!, lo[0]!, lo[2]!, lo[3]!], [hi[1]!, hi[0]!, hi[2]!, hi[3]!]];
    pts.sort((a, b) => a[0] - b[0]);
    for (const p of pts) if (out.at(-1)?.[0] !== p[0]) out.push(p);
  }
  return { points: out, downsampled: true };
}
