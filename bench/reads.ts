// What a client's reads of runs cost once the runs have large lineages: ListRuns (50 runs, as the console
// and `trainyard runs` ask) and GetRun of one run, each run's _lineage.json carrying the data manifest of a
// dataset of --files files (20,000 by default: the manifest's own cap, about 2.3 MB of JSON per run).
// The runs are real noop runs on a one-file dataset; their lineages are then given such a manifest in
// Postgres (what a run of a 20,000-file dataset records), so no 20,000-file dataset need be pushed.
//
//   npm run bench:reads -- [--runs 50] [--files 20000] [--reads 15] [--json]
//
// Each figure is the median of --reads calls from this process (the gRPC reply decoded included).
import { parseArgs } from 'node:util';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import { median, startNoopTrainyard, waitEnded } from './lib.js';

const USAGE = `usage: npm run bench:reads -- [--runs 50] [--files 20000] [--reads 15] [--json]
  ListRuns and GetRun against runs whose lineage holds a data manifest of --files files.
  Needs the services (npm run services) running.`;
const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '50' }, files: { type: 'string', default: '20000' }, reads: { type: 'string', default: '15' },
  json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
} });
if (values.help) { console.log(USAGE); process.exit(0); }
for (const k of ['runs', 'files', 'reads'] as const) {
  if (!/^[1-9][0-9]*$/.test(values[k])) { console.error(`--${k} must be a whole number of at least 1, not ${JSON.stringify(values[k])}\n${USAGE}`); process.exit(2); }
}
const [runs, files, reads] = [Number(values.runs), Number(values.files), Number(values.reads)];

const s = await startNoopTrainyard({ agent: {}, runUids: false });
try {
  const ids: string[] = [];
  for (let i = 0; i < runs; i++) ids.push((await s.api.submitRun({ package: 'noop', dataset: 'tiny' })).id!);
  for (const id of ids) {
    const r = await waitEnded(s.api, id, 50);
    if (r.status !== 'Successful') throw new Error(`run ${id} ${r.status}: ${r.failure_reason}`);
  }
  const db = new pg.Client({ connectionString: s.bench.databaseUrl });
  await db.connect();
  try {
    // The data manifest as a run records it (agent/attempt.ts manifestJson), of --files entries.
    await db.query(`UPDATE runs SET lineage = jsonb_set(lineage, '{data}', jsonb_build_object('manifest_sha256', repeat('0', 64), 'files', $1::int,
      'bytes', 4096 * $1::bigint, 'truncated', false, 'manifest',
      (SELECT jsonb_agg(jsonb_build_object('path', 'd' || (i / 1000) || '/f' || i || '.bin', 'size', 4096, 'sha256', md5(i::text) || md5((i + 1)::text)))
       FROM generate_series(1, $1::int) i))) WHERE id = ANY($2)`, [files, ids]);
    const timed = async (f: () => Promise<unknown>) => { const t0 = performance.now(); await f(); return performance.now() - t0; };
    const list: number[] = [];
    const get: number[] = [];
    for (let i = 0; i < reads; i++) list.push(await timed(() => s.api.listRuns({ limit: runs })));
    for (let i = 0; i < reads; i++) get.push(await timed(() => s.api.getRun(ids[i % ids.length]!)));
    // The reads must still say what they said: GetRun's lineage is the stored one, a list has none, and each
    // run's output key is its version's object.
    const one = await s.api.getRun(ids[0]!);
    const stored = (await db.query<{ lineage: unknown }>('SELECT lineage FROM runs WHERE id = $1', [ids[0]])).rows[0]!.lineage;
    if (!isDeepStrictEqual(JSON.parse(one.lineage_json), stored)) throw new Error('GetRun\'s lineage is not the one stored');
    const keys = new Map((await db.query<{ run_id: string; object_key: string }>('SELECT run_id, object_key FROM package_versions WHERE run_id = ANY($1)', [ids])).rows.map((r) => [r.run_id, r.object_key]));
    const listed = await s.api.listRuns({ limit: runs });
    if (listed.runs.length !== runs) throw new Error(`ListRuns listed ${listed.runs.length} runs, not ${runs}`);
    const wrong = listed.runs.filter((r) => r.lineage_json !== '' || r.output_object_key !== keys.get(r.id));
    if (wrong.length > 0) throw new Error(`ListRuns: ${wrong.length} runs with a lineage, or an output key that is not their version's object`);
    const figures = { runs, files, lineageBytes: one.lineage_json.length, listRunsMs: Math.round(median(list)), getRunMs: Math.round(median(get)) };
    if (values.json) console.log(JSON.stringify({ ...figures, list, get }));
    else {
      console.log(`${runs} runs, each lineage with a manifest of ${files} files (${(figures.lineageBytes / 1e6).toFixed(2)} MB of JSON); medians of ${reads}:`);
      console.log(`  ListRuns (${runs} runs): ${figures.listRunsMs} ms [${list.map(Math.round).join(', ')}]`);
      console.log(`  GetRun (one run, its lineage whole): ${figures.getRunMs} ms [${get.map(Math.round).join(', ')}]`);
    }
  } finally {
    await db.end();
  }
} finally {
  await s.stop();
}
