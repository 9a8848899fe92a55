// AppendMetrics: an attempt's metric records (what train.py logged with trainyard.log and trainyard.summary,
// and the agent's samples of its GPUs, CPU and memory), stored in one transaction guarded by the attempt's
// lease, as AppendLogs guards log lines.
//
// Once each: records are numbered per attempt and the attempt's cursor (run_metric_cursors) holds the last
// one stored, so a batch the agent sends again after a lost answer stores nothing twice.
//
// One step axis per name across attempts: a point is stored only when its step is above the highest step
// stored for that name (any attempt); a point without a step gets that highest step + 1. So a resumed attempt
// that logs again from its last checkpoint does not store the steps already there (no duplicate), and its
// curve continues where the stored one ends (no gap, no offset).
//
// Bounded: a run keeps at most maxMetricPointsPerRun points (all names together) and MAX_SUMMARY_NAMES summary
// values; later ones are counted as dropped, not stored.
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { AppendLogsResponse, AppendMetricsRequest__Output } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';
import { terminalStatuses } from '../../shared/run-states.js';
import { states } from './transitions.js';
import { schedulerMetrics } from '../metrics.js';
import { parseMetricRecord, type MetricPoint } from '../../shared/metric-points.js';
import { numberArray } from '../db/number-array.js';

interface Series { id: number | null; name: string; lastStep: number; points: number; added: number }

/** The most summary values (trainyard.summary names) a run keeps; later new names are counted as dropped. */
export const MAX_SUMMARY_NAMES = 1000;

export async function appendMetrics(ctx: SchedulerContext, req: AppendMetricsRequest__Output, agent: string): Promise<AppendLogsResponse> {
  const records = [...(req.records ?? [])].sort((a, b) => Number(a.seq) - Number(b.seq));
  let acked = 0;
  for (const r of records) {
    if (!Number.isSafeInteger(Number(r.seq)) || Number(r.seq) < 1) throw invalid(`metric record seq must be a positive integer, got ${r.seq}`);
    acked = Math.max(acked, Number(r.seq));
  }
  // Parsed before the transaction: a malformed record refuses the call and changes nothing.
  const parsed = records.map((r) => ({ seq: Number(r.seq), points: parseMetricRecord(r.points_json) }));
  const cap = ctx.settings.maxMetricPointsPerRun;
  const out = await ctx.db.transaction().execute(async (trx) => {
    // The run's row is locked while the points go in: an end report either committed before (nothing is
    // stored) or waits; two batches of one run never interleave.
    const { rows: [run] } = await sql<{ attempt: number; kill_requested: boolean }>`
      SELECT attempt, kill_requested FROM runs WHERE id = ${req.run_id} AND lease = ${Number(req.lease)} AND agent = ${agent}
        AND status NOT IN ${states([...terminalStatuses])} FOR NO KEY UPDATE`.execute(trx);
    if (!run) return null;
    const { rows: [cursor] } = await sql<{ last_seq: string }>`
      INSERT INTO run_metric_cursors (run_id, attempt, last_seq) VALUES (${req.run_id}, ${run.attempt}, 0)
      ON CONFLICT (run_id, attempt) DO UPDATE SET last_seq = run_metric_cursors.last_seq RETURNING last_seq`.execute(trx);
    const fresh = parsed.filter((r) => r.seq > Number(cursor!.last_seq));
    if (!fresh.length) return { run, stored: 0 };
    const points = fresh.flatMap((r) => r.points);
    const summaries = points.filter((p) => p.summary);
    const scalars = points.filter((p) => !p.summary);
    const names = [...new Set(scalars.map((p) => p.name))];
    const series = new Map<string, Series>();
    if (names.length) {
      const { rows } = await sql<{ id: string; name: string; last_step: string; points: string }>`
        SELECT id, name, last_step, points FROM run_metric_series WHERE run_id = ${req.run_id} AND name = ANY(${names}::text[])`.execute(trx);
      for (const r of rows) series.set(r.name, { id: Number(r.id), name: r.name, lastStep: Number(r.last_step), points: Number(r.points), added: 0 });
    }
    const { rows: [held] } = await sql<{ n: string }>`SELECT coalesce(sum(points), 0) AS n FROM run_metric_series WHERE run_id = ${req.run_id}`.execute(trx);
    let room = Math.max(0, cap - Number(held!.n));
    let dropped = 0;
    const kept: { s: Series; step: number; p: MetricPoint }[] = [];
    for (const p of scalars) {
      let s = series.get(p.name);
      if (!s) series.set(p.name, s = { id: null, name: p.name, lastStep: -1, points: 0, added: 0 });
      const step = p.step ?? s.lastStep + 1;
      if (step <= s.lastStep) continue; // already stored (a resumed attempt), or out of order: the rule above
      if (room === 0) { dropped++; continue; }
      room--;
      s.lastStep = step;
      s.added++;
      kept.push({ s, step, p });
    }
    const touched = [...series.values()].filter((s) => s.added > 0);
    const created = touched.filter((s) => s.id === null);
    if (created.length) {
      const { rows } = await sql<{ id: string; name: string }>`
        INSERT INTO run_metric_series (run_id, name, last_step)
        SELECT ${req.run_id}, n, -1 FROM unnest(${created.map((s) => s.name)}::text[]) AS n RETURNING id, name`.execute(trx);
      for (const r of rows) series.get(r.name)!.id = Number(r.id);
    }
    if (kept.length) {
      // One multi-row insert (unnest of arrays: one statement and one round trip for any number of points),
      // the arrays sent as number literals (db/number-array.ts: pg's own array encoding was the bottleneck).
      await sql`
        INSERT INTO run_metric_points (series_id, step, value, attempt, t)
        SELECT s, st, v, ${run.attempt}, t FROM unnest(${numberArray(kept.map((k) => k.s.id!))}::bigint[], ${numberArray(kept.map((k) => k.step))}::bigint[],
          ${numberArray(kept.map((k) => k.p.value))}::float8[], ${numberArray(kept.map((k) => k.p.t))}::float8[]) AS x(s, st, v, t)`.execute(trx);
      await sql`
        UPDATE run_metric_series SET last_step = x.last, points = run_metric_series.points + x.added
        FROM unnest(${touched.map((s) => s.id)}::bigint[], ${touched.map((s) => s.lastStep)}::bigint[], ${touched.map((s) => s.added)}::bigint[]) AS x(id, last, added)
        WHERE run_metric_series.id = x.id`.execute(trx);
    }
    if (summaries.length) {
      // The last value per key wins (a later call in the same batch too).
      const last = new Map(summaries.map((p) => [p.name, p.value]));
      // Bounded as the points are: a name the run holds is updated, a new one only while it holds fewer
      // than MAX_SUMMARY_NAMES (train.py is the run's code: millions of names would otherwise grow the
      // database, and every read of the run's metrics, without a bound). The rest are counted as dropped.
      const { rows: [had] } = await sql<{ n: string; held: string[] }>`
        SELECT count(*) AS n, coalesce(array_agg(name) FILTER (WHERE name = ANY(${[...last.keys()]}::text[])), '{}') AS held
        FROM run_metric_summary WHERE run_id = ${req.run_id}`.execute(trx);
      const held = new Set(had!.held);
      let newRoom = Math.max(0, MAX_SUMMARY_NAMES - Number(had!.n));
      for (const name of [...last.keys()]) {
        if (held.has(name)) continue;
        if (newRoom > 0) newRoom--;
        else { last.delete(name); dropped++; }
      }
      if (last.size) {
        await sql`
          INSERT INTO run_metric_summary (run_id, name, value, attempt)
          SELECT ${req.run_id}, n, v, ${run.attempt} FROM unnest(${[...last.keys()]}::text[], ${[...last.values()]}::float8[]) AS x(n, v)
          ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value, attempt = excluded.attempt`.execute(trx);
      }
    }
    await sql`UPDATE run_metric_cursors SET last_seq = ${fresh.at(-1)!.seq}, dropped = dropped + ${dropped}
      WHERE run_id = ${req.run_id} AND attempt = ${run.attempt}`.execute(trx);
    return { run, stored: kept.length };
  });
  if (!out) return { acked_seq: 0, stop: true };
  schedulerMetrics.metricPoints.inc(out.stored);
  if (out.stored) ctx.runChanged(req.run_id);
  return { acked_seq: acked, stop: out.run.kill_requested === true };
}
