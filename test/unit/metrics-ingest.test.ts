// AppendMetrics (scheduler/runs/metrics-ingest.ts) on a real database, called as the agent calls it: values
// stored exactly as sent (the number-literal arrays of db/number-array.ts: any double, NaN and infinities),
// a batch sent again stores nothing twice, the cap is applied in the same transaction, and a deleted run
// takes its points with it (migration 034 replaced the per-point foreign key with a statement trigger).
import t from 'tap';
import { sql } from 'kysely';
import { testDatabase } from '../helpers/stack.js';
import { appendMetrics, MAX_SUMMARY_NAMES } from '../../scheduler/runs/metrics-ingest.js';
import type { SchedulerContext } from '../../scheduler/context.js';

const TRICKY = [0.1, 1 / 3, -2.5e-308, 5e-324, 1.7976931348623157e308, 123456789.123456789, -42, 2 ** 53 + 2, NaN, Infinity, -Infinity];
const enc = (v: number) => (Number.isFinite(v) ? v : String(v));

t.test('AppendMetrics stores what the agent sent, once, within the cap; a deleted run takes its points', async (t) => {
  const { db } = await testDatabase(t);
  const ctx = { db, settings: { maxMetricPointsPerRun: 30 }, runChanged: () => {} } as unknown as SchedulerContext;
  await sql`INSERT INTO runs (id, package, package_major, package_minor, package_object_key, dataset, max_attempts, status, attempt, lease, agent)
    VALUES ('run_ingest', 'p', 1, 0, 'k', 'd', 1, 'Running', 1, 7, 'agent1')`.execute(db);
  const send = (records: { seq: number; points: unknown[][] }[]) => appendMetrics(ctx,
    { run_id: 'run_ingest', lease: 7, records: records.map((r) => ({ seq: r.seq, points_json: JSON.stringify(r.points) })) } as never, 'agent1');
  const t0 = 1733440000.125;
  const first = [
    { seq: 1, points: TRICKY.map((v, i) => ['x', i, enc(v), t0 + i]) },
    { seq: 2, points: [['loss', 0, 1.5, t0], ['loss', 1, 1.25, t0]] },
  ];
  t.equal((await send(first)).acked_seq, 2);
  t.equal((await send(first)).acked_seq, 2, 'the same batch again (a lost answer) is acknowledged');
  const stored = async (name: string) => (await sql<{ step: string; value: number; t: number }>`
    SELECT p.step, p.value, p.t FROM run_metric_points p JOIN run_metric_series s ON s.id = p.series_id
    WHERE s.run_id = 'run_ingest' AND s.name = ${name} ORDER BY p.step`.execute(db)).rows;
  const x = await stored('x');
  t.same(x.map((r) => Number(r.step)), TRICKY.map((_, i) => i), 'each point once, in step order');
  t.ok(x.every((r, i) => Object.is(r.value, TRICKY[i])), 'every value exactly as sent, NaN and infinities included');
  t.ok(x.every((r, i) => r.t === t0 + i), 'and its time');

  // 13 points held; the cap is 30: of 20 more, 17 are stored and 3 dropped.
  t.equal((await send([{ seq: 3, points: Array.from({ length: 20 }, (_, i) => ['acc', i, i / 20, t0]) }])).acked_seq, 3);
  t.equal((await stored('acc')).length, 17, 'stored up to the cap');
  const { rows: [cur] } = await sql<{ last_seq: string; dropped: string }>`SELECT last_seq, dropped FROM run_metric_cursors WHERE run_id = 'run_ingest'`.execute(db);
  t.same([Number(cur!.last_seq), Number(cur!.dropped)], [3, 3], 'the cursor moved and the dropped points are counted with it');

  // Summary values (trainyard.summary, "=name") are bounded too: new names past MAX_SUMMARY_NAMES are
  // dropped and counted; a name already held is still updated.
  await send([{ seq: 4, points: Array.from({ length: MAX_SUMMARY_NAMES + 5 }, (_, i) => [`=s${i}`, null, i, t0]) }]);
  const summaries = async () => (await sql<{ name: string; value: number }>`SELECT name, value FROM run_metric_summary WHERE run_id = 'run_ingest'`.execute(db)).rows;
  t.equal((await summaries()).length, MAX_SUMMARY_NAMES, `${MAX_SUMMARY_NAMES} summary names kept of ${MAX_SUMMARY_NAMES + 5}`);
  await send([{ seq: 5, points: [['=s0', null, 99, t0], ['=late', null, 1, t0]] }]);
  const after = await summaries();
  t.equal(after.find((r) => r.name === 's0')?.value, 99, 'a name already held is updated');
  t.notOk(after.some((r) => r.name === 'late'), 'a new one past the bound is not stored');
  const { rows: [cur2] } = await sql<{ dropped: string }>`SELECT dropped FROM run_metric_cursors WHERE run_id = 'run_ingest'`.execute(db);
  t.equal(Number(cur2!.dropped), 3 + 5 + 1, 'and each one left out is counted as dropped');

  await sql`DELETE FROM runs WHERE id = 'run_ingest'`.execute(db);
  const { rows: [left] } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM run_metric_points`.execute(db);
  t.equal(left!.n, 0, 'deleting the run deleted its points');
});
