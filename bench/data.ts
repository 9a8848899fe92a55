// Data at the machine's speed (issue 21), against `mc mirror` (MinIO's own client) on the same MinIO, in
// the same run, alternating so both see the same contention:
//   push: `trainyard dataset push DIR` (the CLI's start included) vs `mc mirror DIR` into the same bucket;
//   pull: `mc mirror` of the dataset to an empty folder, the reference for the agent's pull; for the
//   large set also the floor of any pull in Node here (the objects read by this process and dropped);
//   submit → train() entered on that dataset, with an empty agent cache (a dataset the agent never saw)
//   and with a warm one (the same dataset again), and on a one-file dataset (the empty-dataset latency).
// Two datasets: --big-mb MiB in 4 files, and --small-files files of 4 KiB. Each measurement --runs times,
// a fresh dataset name per run (so the cache is empty for it); medians printed.
//
//   npm run bench:data -- [--runs 1] [--big-mb 1024] [--small-files 20000] [--shared-uid] [--json]
//
// The agent runs as a root agent does by default, a uid per run (so a warm run's files are hard links to
// the cache's entries); --shared-uid measures runs that share the agent's uid (copies), as before.
//
// The default is one run of each (a few minutes on a quiet machine: 20,000 files pushed twice and pulled
// three times dominate); --runs 3 for medians. The load average is printed at the start and the end.
//
// mc: TRAINYARD_MC_BIN, else ~/.cache/trainyard/bin/mc (scripts/services.sh builds it beside MinIO).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../shared/proto.js';
import { rawGet } from '../shared/raw-get.js';
import { createMinioClient, listObjects, removePrefix } from '../shared/storage.js';
import { benchMinio, enteredAt, median, startNoopTrainyard, waitEnded } from './lib.js';
import { streamOf } from '../cli/client.js';

const USAGE = `usage: npm run bench:data -- [--runs N] [--big-mb MIB] [--small-files N] [--shared-uid] [--json]
  push and pull of --big-mb MiB in 4 files and of --small-files files of 4 KiB, against mc mirror on the
  same MinIO; each measurement --runs times (medians). Needs the services (npm run services) running.`;
const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '1' }, 'big-mb': { type: 'string', default: '1024' }, 'small-files': { type: 'string', default: '20000' }, 'shared-uid': { type: 'boolean' }, json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} });
if (values.help) { console.log(USAGE); process.exit(0); }
for (const k of ['runs', 'big-mb', 'small-files'] as const) {
  if (!/^[1-9][0-9]*$/.test(values[k])) { console.error(`--${k} must be a whole number of at least 1, not ${JSON.stringify(values[k])}\n${USAGE}`); process.exit(2); }
}
const runs = Number(values.runs);
const mc = process.env.TRAINYARD_MC_BIN ?? path.join(os.homedir(), '.cache', 'trainyard', 'bin', 'mc');
const MIB = 1024 * 1024;

const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
const loadAtStart = load();
console.error(`load average at start: ${loadAtStart} (${os.cpus().length} cores)`);
// A uid per run needs a root agent; otherwise (or with --shared-uid) runs share the agent's uid.
const runUids = !values['shared-uid'] && process.getuid?.() === 0;
const s = await startNoopTrainyard({ agent: {}, runUids });
const keys = benchMinio();
const endpoint = new URL(process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000');
const bucket = s.bench.env.TRAINYARD_BUCKET!;
const minio = createMinioClient({ minioEndpoint: endpoint.href, minioAccessKey: keys.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: keys.TRAINYARD_MINIO_SECRET_KEY ?? '' });
// mc reads the server and its credentials from MC_HOST_<alias>; its config goes to a folder of its own.
const work = mkdtempSync(path.join(os.tmpdir(), 'tybench-data-'));
const mcEnv = { ...process.env, MC_HOST_bench: `${endpoint.protocol}//${encodeURIComponent(keys.TRAINYARD_MINIO_ACCESS_KEY ?? '')}:${encodeURIComponent(keys.TRAINYARD_MINIO_SECRET_KEY ?? '')}@${endpoint.host}`, MC_CONFIG_DIR: path.join(work, 'mc') };

/**
 * Each measured step starts with the disk's dirty pages written out: otherwise a step pays for the writes
 * of the one before it (the kernel makes a writer wait once dirty pages pile up), and whichever of mc and
 * Trainyard went second would look slower for the other's gigabyte.
 */
function settle(): void {
  spawnSync('sync');
}

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  settle();
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', maxBuffer: 64 * MIB });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return ms;
}
const trainyard = (args: string[]) => timed(process.execPath, [path.join(projectRoot(), 'bin', 'trainyard.js'), ...args, '--scheduler', s.address], s.bench.env);

/** The last run toTrain measured. */
let lastRun = '';
/** submit → train() entered, in ms (train()'s own timestamp, read from its log after the run). */
async function toTrain(dataset: string): Promise<number> {
  settle();
  const t0 = Date.now();
  const run = await s.api.submitRun({ package: 'noop', dataset });
  lastRun = run.id;
  const end = await waitEnded(s.api, run.id);
  if (end.status !== 'Successful') throw new Error(`run ${run.id} ${end.status}: ${end.failure_reason}`);
  return (await enteredAt(s.api, run.id)) - t0;
}

/** How the run's data was made local, from the agent's line in its log: "spare", "staged", "cache" (some files) or "downloaded". */
async function madeLocalHow(id: string): Promise<string> {
  for await (const l of streamOf(s.api.client.StreamLogs({ run_id: id, follow: false }))) {
    if (!/^\[trainyard\] dataset .* made local/.test(l.text)) continue;
    return l.text.includes('linked ahead') ? 'spare' : l.text.includes('prepared while') ? 'staged' : l.text.includes('from this agent\'s cache') ? 'cache' : 'downloaded';
  }
  return 'unknown';
}

/**
 * The floor of a pull on this machine: the large set's objects fetched by this process with the agent's
 * reader (`shared/raw-get.ts`: one whole-object GET each, all at once, each read into one reused buffer;
 * the agent asks for ranges and reads into slabs), their bytes counted and dropped: nothing written,
 * nothing hashed. What the agent adds to it is the writes, the hash and the run.
 */
async function nodeReadOnly(name: string, files: number): Promise<number> {
  const prefix = `datasets/${name}/`;
  const keys = (await listObjects(minio, bucket, prefix, { retries: 2 })).map((o) => o.key);
  if (keys.length !== files) throw new Error(`${prefix}: listed ${keys.length} objects, pushed ${files}`);
  const urls = await Promise.all(keys.map((key) => minio.presignedUrl('GET', bucket, key, 600)));
  settle();
  const t0 = performance.now();
  await Promise.all(urls.map((url) => {
    const mem = Buffer.allocUnsafe(256 * 1024);
    return rawGet(url, {}, [200], { next: () => mem, body: () => {} });
  }));
  return performance.now() - t0;
}

function makeDataset(dir: string, files: number, bytes: number): void {
  mkdirSync(dir, { recursive: true });
  const block = randomBytes(Math.min(bytes, 16 * MIB));
  for (let i = 0; i < files; i++) {
    const sub = files > 1000 ? path.join(dir, `d${String(Math.floor(i / 1000)).padStart(2, '0')}`) : dir;
    if (i % 1000 === 0) mkdirSync(sub, { recursive: true });
    // Incompressible and different in every file (no dedup anywhere helps either side).
    const parts: Buffer[] = [];
    for (let n = 0; n < bytes; n += block.length) parts.push(n === 0 ? Buffer.concat([randomBytes(64), block.subarray(64)]) : block);
    writeFileSync(path.join(sub, `f${String(i).padStart(5, '0')}.bin`), Buffer.concat(parts).subarray(0, bytes));
  }
}

const sets = [
  { name: 'big', label: `${values['big-mb']} MiB in 4 files`, files: 4, bytes: Number(values['big-mb']) * MIB / 4 },
  { name: 'small', label: `${values['small-files']} files of 4 KiB`, files: Number(values['small-files']), bytes: 4096 },
];
const results: Record<string, Record<string, number[]>> = {};
/** Per set, how each warm run's data was made local (a spare folder, staged, linked from the cache). */
const warmHow: Record<string, string[]> = {};
try {
  // The empty-dataset latency (the one-file `tiny`), warm: the reference for a warm cache.
  await toTrain('tiny');
  const empty: number[] = [];
  for (let i = 0; i < Math.max(5, runs); i++) empty.push(await toTrain('tiny'));
  results.empty = { toTrainWarm: empty };
  for (const set of sets) {
    const src = path.join(work, set.name);
    makeDataset(src, set.files, set.bytes);
    const r: Record<string, number[]> = { push: [], mcPush: [], mcPull: [], toTrainEmpty: [], toTrainWarm: [], ...(set.name === 'big' ? { nodeRead: [] } : {}) };
    results[set.name] = r;
    for (let i = 0; i < runs; i++) {
      const name = `${set.name}-${i}`;
      r.push!.push(trainyard(['dataset', 'push', src, '--name', name]));
      r.mcPush!.push(timed(mc, ['mirror', '--quiet', src, `bench/${bucket}/mc/${name}`], mcEnv));
      const into = path.join(work, `pull-${name}`);
      r.mcPull!.push(timed(mc, ['mirror', '--quiet', `bench/${bucket}/datasets/${name}`, into], mcEnv));
      rmSync(into, { recursive: true, force: true });
      r.nodeRead?.push(await nodeReadOnly(name, set.files));
      r.toTrainEmpty!.push(await toTrain(name));
      r.toTrainWarm!.push(await toTrain(name));
      warmHow[set.name] = [...(warmHow[set.name] ?? []), await madeLocalHow(lastRun)];
      // What this run stored goes, so the disk holds one run's worth (the agent's cache keeps its entries).
      await removePrefix(minio, bucket, `mc/${name}/`, { retries: 2 });
    }
    rmSync(src, { recursive: true, force: true });
    // Each set's figures as soon as they are in (a long run cut short still leaves them).
    console.error(JSON.stringify({ set: set.name, ...r, warmHow: warmHow[set.name] }));
  }
  const med = (xs: number[] | undefined) => Math.round(median(xs ?? [NaN]));
  const summary = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Object.fromEntries(Object.entries(v).map(([m, xs]) => [m, med(xs)]))]));
  const loadavg = { start: loadAtStart, end: load(), cores: os.cpus().length };
  if (values.json) console.log(JSON.stringify({ runs, loadavg, summary, results, warmHow }));
  else {
    console.log(`median of ${runs} runs (ms); load average (1, 5, 15 min) ${loadavg.start} at the start, ${loadavg.end} at the end, ${loadavg.cores} cores; runs ${runUids ? 'have uids of their own (links to the cache)' : 'share the agent\'s uid (copies from the cache)'}`);
    console.log(`empty-dataset submit → train(): ${summary.empty!.toTrainWarm} ms`);
    for (const set of sets) {
      const m = summary[set.name]!;
      const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
      console.log(`${set.label}:`);
      console.log(`  dataset push ${m.push} ms vs mc mirror ${m.mcPush} ms (${x(m.push!, m.mcPush!)})`);
      console.log(`  submit → train(), empty agent cache ${m.toTrainEmpty} ms vs mc mirror pull ${m.mcPull} ms (${x(m.toTrainEmpty!, m.mcPull!)})`);
      if (m.nodeRead !== undefined) console.log(`  (the floor: the same objects read by this process with the agent's reader, one reused buffer each, and dropped, nothing written or hashed, ${m.nodeRead} ms: ${x(m.nodeRead, m.mcPull!)} mc mirror pull)`);
      console.log(`  submit → train(), warm agent cache ${m.toTrainWarm} ms (${x(m.toTrainWarm!, summary.empty!.toTrainWarm!)} the empty-dataset latency; ${x(m.toTrainWarm!, m.mcPull!)} mc mirror pull; data: ${(warmHow[set.name] ?? []).join(', ')})`);
    }
  }
} catch (err) {
  console.error(s.agent?.lines.slice(-30).join('\n'));
  throw err;
} finally {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
}
process.exit(0);
