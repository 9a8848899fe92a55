// The agent's dataset cache (agent/data-cache.ts) against the real MinIO: a second run of a dataset copies
// its files from the cache (no GET: the server's own counters are not read here, so the download is told
// apart by the ETag-keyed entry and by an object replaced under the same key being fetched anew), the
// manifest it returns is what walking the folder gives, a run's writes to its copy never reach the cache,
// the cache keeps within its size, and another key with the same bytes is no hit.
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createMinioClient, ensureBucket, removePrefix } from '../../shared/storage.js';
import { walkFiles } from '../../shared/local-files.js';
import { sha256File } from '../../shared/hash.js';
import { DataCache, DEFER_HASH_FROM_BYTES, READ_KEYS_FROM_FILES, SPARE_DELAY_MS, SPARE_FROM_FILES } from '../../agent/data-cache.js';
import { hashFile } from '../../shared/hash-thread.js';
import { createHash, randomBytes } from 'node:crypto';
import { mapBounded } from '../../shared/bounded.js';
import { manifestOf, type DataManifest } from '../../agent/lineage.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const endpoint = process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000';
const creds = { minioAccessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '' };
const bucket = `trainyard-data-cache-${process.pid}-${Date.now()}`;
const minio = createMinioClient({ minioEndpoint: endpoint, ...creds });
const retry = { retries: 2 };
/** Temporary folders, removed when the file's tests end. */
const made: string[] = [];
const tmp = (p: string) => { const d = mkdtempSync(path.join(os.tmpdir(), p)); made.push(d); return d; };
t.teardown(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

t.before(() => ensureBucket(minio, bucket, { retries: 3 }));
t.teardown(async () => {
  await removePrefix(minio, bucket, '', retry).catch(() => {});
  await minio.removeBucket(bucket).catch(() => {});
});

/** The reference: every regular file under dir, as a walk of the folder finds it, read back and hashed. */
async function dataManifest(dir: string): Promise<DataManifest> {
  const files = [];
  for (const f of await walkFiles(dir)) files.push({ path: f.rel, size: f.size, sha256: await sha256File(path.join(dir, ...f.rel.split('/'))) });
  return manifestOf(files);
}

/** Waits (up to 20 s) until a folder in `work`'s data-staged holds `files` files: a spare linked whole. */
async function spareLinked(work: string, files: number): Promise<boolean> {
  const stagedDir = path.join(work, 'data-staged');
  const linked = async () => (await Promise.all(readdirSync(stagedDir).map((d) => walkFiles(path.join(stagedDir, d))))).some((f) => f.length === files);
  for (const until = Date.now() + 20_000; !(await linked()) && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
  return linked();
}

/** A cache as a root agent with run uids has it (agent/agent.ts): runs get links to its entries, and spares. */
function sparingCache(workDir: string, capBytes: number): DataCache {
  const cache = new DataCache(workDir, capBytes);
  cache.linksForRuns = true;
  cache.spares = true;
  return cache;
}

async function put(key: string, body: string | Buffer): Promise<void> {
  await minio.putObject(bucket, key, Buffer.from(body));
}

t.test('a second run copies from the cache; a replaced object is fetched anew; the manifest is the folder\'s', async (t) => {
  await put('datasets/d/a.csv', '1,2\n');
  await put('datasets/d/sub/b.csv', 'x'.repeat(5000));
  await put('datasets/d/a.txt', 'dot sorts before slash');
  await put('datasets/d/empty/', ''); // a folder marker: not a file
  const work = tmp('ty-dc-');
  const cache = new DataCache(work, 1 << 20);

  const first = path.join(tmp('ty-run1-'), 'data');
  const r1 = await cache.makeLocal(minio, bucket, 'datasets/d/', first, retry);
  t.same([r1.files, r1.bytes, r1.hits], [3, 4 + 5000 + 22, 0], 'first run: every file downloaded');
  t.same(manifestOf(r1.entries), await dataManifest(first), 'the manifest from the hashes taken while writing is the one walking the folder gives');
  t.equal(readdirSync(path.join(work, 'data-cache')).length, 3, 'each file is kept');
  t.equal(statSync(path.join(work, 'data-cache')).mode & 0o777, 0o700, 'the cache is the agent\'s only');

  const second = path.join(tmp('ty-run2-'), 'data');
  const r2 = await cache.makeLocal(minio, bucket, 'datasets/d/', second, retry);
  t.same([r2.files, r2.hits, r2.hitBytes], [3, 3, r1.bytes], 'second run: every file from the cache');
  t.same(manifestOf(r2.entries), manifestOf(r1.entries), 'the same manifest');
  t.equal(readFileSync(path.join(second, 'sub', 'b.csv'), 'utf8'), 'x'.repeat(5000));

  // A run writes into its copy: the cache, and the next run, are unchanged.
  writeFileSync(path.join(second, 'a.csv'), 'tampered\n');
  const third = path.join(tmp('ty-run3-'), 'data');
  await cache.makeLocal(minio, bucket, 'datasets/d/', third, retry);
  t.equal(readFileSync(path.join(third, 'a.csv'), 'utf8'), '1,2\n', 'a run\'s write to its data never reaches a later run');

  // The object replaced under the same key (another ETag): downloaded, not served stale.
  await put('datasets/d/a.csv', '3,4\n');
  const fourth = path.join(tmp('ty-run4-'), 'data');
  const r4 = await cache.makeLocal(minio, bucket, 'datasets/d/', fourth, retry);
  t.equal(r4.hits, 2, 'the replaced file is a miss');
  t.equal(readFileSync(path.join(fourth, 'a.csv'), 'utf8'), '3,4\n', 'and the run gets the new content');
  t.same(manifestOf(r4.entries), await dataManifest(fourth));

  // The same bytes under another key (another dataset): not a hit, an entry of its own.
  await put('datasets/other/a.csv', '3,4\n');
  const r5 = await cache.makeLocal(minio, bucket, 'datasets/other/', path.join(tmp('ty-run5-'), 'data'), retry);
  t.equal(r5.hits, 0, 'an entry serves only its own key');

  // A new agent process on the same work dir reads the entries back.
  const again = new DataCache(work, 1 << 20);
  const r6 = await again.makeLocal(minio, bucket, 'datasets/d/', path.join(tmp('ty-run6-'), 'data'), retry);
  t.equal(r6.hits, 3, 'entries survive the agent');
});

t.test('the cache keeps within its size, least recently used first; 0 keeps nothing', async (t) => {
  for (const n of [1, 2, 3]) await put(`datasets/big${n}/f`, String(n).repeat(400_000));
  const work = tmp('ty-dc-');
  const cache = new DataCache(work, 1_000_000); // room for two of the three
  const run = async (n: number) => (await cache.makeLocal(minio, bucket, `datasets/big${n}/`, path.join(tmp('ty-big-'), 'data'), retry)).hits;
  t.same([await run(1), await run(2), await run(3)], [0, 0, 0]);
  t.ok(cache.size.bytes <= 1_000_000, `within its size (${cache.size.bytes} bytes)`);
  t.equal(cache.size.entries, 2, 'the oldest entry went');
  t.equal(await run(3), 1, 'the newest stayed');
  t.equal(await run(1), 0, 'the oldest was evicted');
  t.equal(await run(3), 1, 'used last but one: kept when big1 came back');
  t.equal(await run(2), 0, 'the least recently used went for it');
  t.equal(readdirSync(path.join(work, 'data-cache')).length, 2, 'on disk as in memory');

  const none = new DataCache(tmp('ty-dc0-'), 0);
  const n1 = await none.makeLocal(minio, bucket, 'datasets/big1/', path.join(tmp('ty-big-'), 'data'), retry);
  const n2 = await none.makeLocal(minio, bucket, 'datasets/big1/', path.join(tmp('ty-big-'), 'data'), retry);
  t.same([n1.hits, n2.hits, n2.files], [0, 0, 1], 'with 0 MiB every run downloads');
  t.same(none.size, { entries: 0, bytes: 0 });
});

// Issue 20 #5: two runs sharing a full cache, one copying an entry out while the other's download evicts
// it. Before entries were pinned while copied, the copy failed ENOENT ("agent error") in most rounds.
t.test('an entry being copied out is never evicted under the copy', async (t) => {
  // Many files per dataset: the copier is mid-way through its hits while the other run's downloads evict.
  for (const d of ['a', 'b']) for (let i = 0; i < 40; i++) await put(`datasets/evict-${d}/f${i}`, `${d}${i}`.repeat(10_000));
  for (let round = 0; round < 8; round++) {
    const cache = new DataCache(tmp('ty-dcr-'), 40 * 30_000); // room for one dataset only
    await cache.makeLocal(minio, bucket, 'datasets/evict-a/', path.join(tmp('ty-ev-'), 'data'), retry);
    const dirs = [path.join(tmp('ty-ev-'), 'data'), path.join(tmp('ty-ev-'), 'data')];
    const [a, b] = await Promise.all([
      cache.makeLocal(minio, bucket, 'datasets/evict-a/', dirs[0]!, retry),
      cache.makeLocal(minio, bucket, 'datasets/evict-b/', dirs[1]!, retry),
    ]);
    t.same([a.files, b.files], [40, 40], `round ${round}: both runs made every file local`);
    t.ok(['a', 'b'].every((d, k) => readFileSync(path.join(dirs[k]!, 'f7'), 'utf8') === `${d}7`.repeat(10_000)), `round ${round}: with the right bytes`);
  }
});

t.test('a staged folder is taken by the next make-local of its dataset, unless the dataset changed meanwhile', async (t) => {
  await put('datasets/s/a.csv', 'a'.repeat(3000));
  await put('datasets/s/sub/b.csv', 'b');
  await put('datasets/other/c.csv', 'c');
  const work = tmp('ty-stage-');
  const cache = new DataCache(work, 1 << 20);
  const staged = () => readdirSync(path.join(work, 'data-staged'));

  await cache.stage(minio, bucket, 'datasets/s/', retry);
  t.equal(staged().length, 1, 'one staged folder');
  const elsewhere = await cache.makeLocal(minio, bucket, 'datasets/other/', path.join(tmp('ty-o-'), 'data'), retry);
  t.notOk(elsewhere.staged, 'another dataset\'s make-local does not take it');
  t.equal(staged().length, 1, 'and leaves it');
  const dest = path.join(tmp('ty-s1-'), 'data');
  const r = await cache.makeLocal(minio, bucket, 'datasets/s/', dest, retry);
  t.equal(r.staged, true, 'the dataset\'s make-local takes the staged folder');
  t.same([r.files, r.bytes, r.hits, r.hitBytes], [2, 3001, 2, 3001], 'counted as the cache\'s: nothing downloaded by the run');
  t.same(manifestOf(r.entries), await dataManifest(dest), 'its manifest is the folder\'s');
  t.equal(statSync(dest).mode & 0o777, 0o755, 'the folder is readable by a run uid, as a made-local one');
  t.same(staged(), [], 'nothing is left staged');

  await cache.stage(minio, bucket, 'datasets/s/', retry);
  await put('datasets/s/sub/b.csv', 'changed');
  const dest2 = path.join(tmp('ty-s2-'), 'data');
  const r2 = await cache.makeLocal(minio, bucket, 'datasets/s/', dest2, retry);
  t.notOk(r2.staged, 'a dataset changed since it was staged is made local afresh');
  t.equal(readFileSync(path.join(dest2, 'sub', 'b.csv'), 'utf8'), 'changed', 'with the new bytes');
  // Removed off the run's path (a spare of 20,000 links takes a while): soon after, not before the run goes on.
  for (const until = Date.now() + 10_000; staged().length > 0 && Date.now() < until;) await new Promise((r) => setTimeout(r, 10));
  t.same(staged(), [], 'and the stale staged folder is removed');

  await cache.stage(minio, bucket, 'datasets/s/', retry);
  await cache.dropStaged();
  t.same(staged(), [], 'dropStaged removes a folder no run took');
});

t.test('runs with uids of their own get hard links to the entries, which such a uid can read but not change', async (t) => {
  await put('datasets/l/a.csv', 'a,b\n');
  await put('datasets/l/deep/er/b.bin', Buffer.alloc(70_000, 7));
  const work = tmp('ty-dcl-');
  const cache = new DataCache(work, 1 << 20);
  cache.linksForRuns = true;
  const runRoot = tmp('ty-runl-');
  const first = path.join(runRoot, 'one');
  await cache.makeLocal(minio, bucket, 'datasets/l/', first, retry);
  const second = path.join(runRoot, 'two');
  const r2 = await cache.makeLocal(minio, bucket, 'datasets/l/', second, retry);
  t.equal(r2.hits, 2, 'the second run is served by the cache');
  const entries = readdirSync(path.join(work, 'data-cache')).map((n) => statSync(path.join(work, 'data-cache', n)));
  for (const rel of ['a.csv', 'deep/er/b.bin']) {
    const s = statSync(path.join(second, rel));
    t.ok(entries.some((e) => e.ino === s.ino), `${rel} is the cache's entry itself (a link, not a copy)`);
    t.equal(s.mode & 0o777, 0o644, `${rel}: readable by all, written only by its owner`);
    t.equal(s.uid, process.getuid!(), `${rel}: the agent's`);
  }
  t.same(manifestOf(r2.entries), await dataManifest(second), 'the manifest is the folder\'s');

  // Without linksForRuns (runs share the agent's uid): a copy, which such a run may write.
  const copies = new DataCache(work, 1 << 20);
  const third = path.join(runRoot, 'three');
  await copies.makeLocal(minio, bucket, 'datasets/l/', third, retry);
  t.notOk(entries.some((e) => e.ino === statSync(path.join(third, 'a.csv')).ino), 'runs sharing the agent\'s uid get copies');

  if (process.getuid?.() !== 0) { void t.skip('a run uid\'s write needs root to switch to it'); return; }
  // As a run uid would (another uid, not the owner): reading works, writing, truncating and chmod do not.
  const { spawnSync } = await import('node:child_process');
  const { chmodSync } = await import('node:fs');
  chmodSync(runRoot, 0o755);
  const as = (script: string) => spawnSync('setpriv', ['--reuid=61999', '--regid=61999', '--clear-groups', 'sh', '-c', script], { encoding: 'utf8' });
  const file = path.join(second, 'a.csv');
  t.equal(as(`cat ${file}`).stdout, 'a,b\n', 'another uid reads its data');
  t.not(as(`echo tampered >> ${file}`).status, 0, 'another uid cannot append to it');
  t.not(as(`: > ${file}`).status, 0, 'nor truncate it');
  t.not(as(`chmod 666 ${file}`).status, 0, 'nor make it writable');
  const fresh = path.join(runRoot, 'four');
  await cache.makeLocal(minio, bucket, 'datasets/l/', fresh, retry);
  t.equal(readFileSync(path.join(fresh, 'a.csv'), 'utf8'), 'a,b\n', 'the next run reads what the dataset holds');
});

t.test('a warm run of many files is linked a batch per turn; an entry removed by hand is fetched again', async (t) => {
  const n = 600; // more than one turn's batch of links
  await mapBounded(Array.from({ length: n }, (_, i) => i), 32, (i) => put(`datasets/many/d${i % 4}/f${i}.txt`, `file ${i}\n`));
  const work = tmp('ty-dcm-');
  const cache = new DataCache(work, 1 << 20);
  cache.linksForRuns = true;
  const runRoot = tmp('ty-runm-');
  await cache.makeLocal(minio, bucket, 'datasets/many/', path.join(runRoot, 'one'), retry);
  const two = path.join(runRoot, 'two');
  const r2 = await cache.makeLocal(minio, bucket, 'datasets/many/', two, retry);
  t.equal(r2.hits, n, 'every file served by the cache');
  const entryInodes = new Set(readdirSync(path.join(work, 'data-cache')).map((e) => statSync(path.join(work, 'data-cache', e)).ino));
  t.ok(r2.entries.every((e) => entryInodes.has(statSync(path.join(two, e.path)).ino)), 'each one a link to its entry');
  t.same(manifestOf(r2.entries), await dataManifest(two), 'the manifest is the folder\'s');

  // An entry's file removed behind the cache's back: that file is downloaded again, the others linked.
  const victim = r2.entries.find((e) => e.path === 'd1/f5.txt')!;
  const entryFile = readdirSync(path.join(work, 'data-cache')).find((e) => e.endsWith(`-${victim.sha256}`))!;
  rmSync(path.join(work, 'data-cache', entryFile));
  const three = path.join(runRoot, 'three');
  const r3 = await cache.makeLocal(minio, bucket, 'datasets/many/', three, retry);
  t.equal(r3.hits, n - 1, 'all but the removed one from the cache');
  t.equal(readFileSync(path.join(three, 'd1', 'f5.txt'), 'utf8'), 'file 5\n', 'and that one fetched anew, right');
  t.same(manifestOf(r3.entries), await dataManifest(three));
});

t.test('an entry linked, then evicted by a download further down the same listing, is still this run\'s file', async (t) => {
  // The cached file sorts last, past the files in flight, and the cache holds three files: by the time its
  // turn comes, the downloads before it have evicted its entry (the least recently used).
  await put('datasets/ev/z-cached.txt', Buffer.alloc(10_000, 1));
  const work = tmp('ty-dce-');
  const cache = new DataCache(work, 30_000);
  cache.linksForRuns = true;
  const runRoot = tmp('ty-rune-');
  await cache.makeLocal(minio, bucket, 'datasets/ev/', path.join(runRoot, 'one'), retry);
  await mapBounded(Array.from({ length: 20 }, (_, i) => i), 20, (i) => put(`datasets/ev/a${String(i).padStart(2, '0')}.txt`, Buffer.alloc(10_000, 2 + i)));
  const two = path.join(runRoot, 'two');
  const r = await cache.makeLocal(minio, bucket, 'datasets/ev/', two, retry);
  t.equal(r.files, 21, 'every file made local');
  t.equal(r.hits, 1, 'the cached one linked');
  t.same(manifestOf(r.entries), await dataManifest(two), 'and the manifest is the folder\'s, its hash included');
  const zSha = r.entries.find((e) => e.path === 'z-cached.txt')!.sha256;
  t.notOk(readdirSync(path.join(work, 'data-cache')).some((n) => n.endsWith(`-${zSha}`)), 'its entry was evicted meanwhile (the case this is about)');
});

t.test('a cache folder removed by hand while the agent runs is made again by the next download', async (t) => {
  // The cache's folder is made once (a pull of thousands does not make it once per file), so a download
  // that finds it gone makes it again rather than failing the run.
  await put('datasets/gone/a.csv', 'first\n');
  await put('datasets/gone2/b.csv', 'second\n');
  const work = tmp('ty-dc-gone-');
  const cache = new DataCache(work, 1 << 20);
  await cache.makeLocal(minio, bucket, 'datasets/gone/', path.join(tmp('ty-run-'), 'data'), retry);
  rmSync(work, { recursive: true, force: true });
  const into = path.join(tmp('ty-run-'), 'data');
  const r = await cache.makeLocal(minio, bucket, 'datasets/gone2/', into, retry);
  t.equal(r.files, 1);
  t.equal(readFileSync(path.join(into, 'b.csv'), 'utf8'), 'second\n', 'made local all the same');
  // Made again as the agent's alone: the entries are 0644 and any run uid can reach the work dir.
  t.equal(statSync(path.join(work, 'data-cache')).mode & 0o777, 0o700, 'the cache folder made again is 0700, not the umask\'s 0755');
  // And one found open (left so by the above before this fix, or by hand) is closed at the agent's start.
  chmodSync(path.join(work, 'data-cache'), 0o755);
  await new DataCache(work, 1 << 20).makeLocal(minio, bucket, 'datasets/gone2/', path.join(tmp('ty-run-'), 'data'), retry);
  t.equal(statSync(path.join(work, 'data-cache')).mode & 0o777, 0o700, 'a cache folder found 0755 at the start is made 0700');
});

t.test('a pull of many files takes its GETs\' client from readClient, and one that cannot be had falls back', async (t) => {
  const n = READ_KEYS_FROM_FILES;
  await mapBounded(Array.from({ length: n }, (_, i) => i), 16, (i) => put(`datasets/readkeys/f${i}.txt`, `${i}\n`));
  // The read client goes through a proxy that counts its connections: the GETs are seen to use it.
  const u = new URL(endpoint);
  const proxy = await startTcpProxy({ host: u.hostname, port: Number(u.port) });
  t.teardown(() => proxy.close());
  const readOnly = createMinioClient({ minioEndpoint: proxy.endpoint, ...creds });
  let asked = 0;
  const withKeys = await new DataCache(tmp('ty-dc-rk-'), 1 << 24).makeLocal(minio, bucket, 'datasets/readkeys/', path.join(tmp('ty-run-'), 'data'), retry, {},
    { readClient: async () => { asked++; return readOnly; } });
  t.equal(withKeys.readKeys, true, `${n} files: read-only keys`);
  t.equal(asked, n + 1, 'asked once up front, then once per file (so they may be renewed)');
  t.ok(proxy.used > 0, `the GETs went through the read client (${proxy.used} connections)`);
  const refused = await new DataCache(tmp('ty-dc-rk-'), 1 << 24).makeLocal(minio, bucket, 'datasets/readkeys/', path.join(tmp('ty-run-'), 'data'), retry, {},
    { readClient: () => Promise.reject(new Error('no read-only keys today')) });
  t.equal(refused.files, n, 'keys refused: the pull goes on with the listing\'s client');
  t.notOk(refused.readKeys);
  let few = 0;
  const small = await new DataCache(tmp('ty-dc-rk-'), 1 << 24).makeLocal(minio, bucket, 'datasets/gone2/', path.join(tmp('ty-run-'), 'data'), retry, {},
    { readClient: async () => { few++; return minio; } });
  t.equal(few, 0, 'one file: not asked');
  t.notOk(small.readKeys);
});

t.test('a make-local of many files leaves a spare folder of links that the next run of its dataset takes', async (t) => {
  const n = SPARE_FROM_FILES + 20;
  await mapBounded(Array.from({ length: n }, (_, i) => i), 32, (i) => put(`datasets/spare/d${i % 3}/f${i}.txt`, `row ${i}\n`));
  await put('datasets/spare-few/a.txt', 'a');
  await put('datasets/spare-few/b.txt', 'b');
  const work = tmp('ty-dcs-');
  const cache = sparingCache(work, 1 << 20);
  const staged = () => readdirSync(path.join(work, 'data-staged'));
  const runRoot = tmp('ty-runs-');
  const one = await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'one'), retry);
  t.equal(one.hits, 0, 'the first run downloads');

  // The second run waits for the spare being linked (if it is not done yet) and takes it whole.
  const two = path.join(runRoot, 'two');
  const r2 = await cache.makeLocal(minio, bucket, 'datasets/spare/', two, retry);
  t.same([r2.staged, r2.spare, r2.files, r2.hits], [true, true, n, n], 'the next run takes the spare: every file from the cache');
  const entryInodes = new Set(readdirSync(path.join(work, 'data-cache')).map((e) => statSync(path.join(work, 'data-cache', e)).ino));
  t.ok(r2.entries.every((e) => entryInodes.has(statSync(path.join(two, e.path)).ino)), 'each file a link to its entry');
  t.same(manifestOf(r2.entries), await dataManifest(two), 'the manifest is the folder\'s, in the listing\'s order');
  t.same(r2.entries.map((e) => e.path), one.entries.map((e) => e.path), 'the same files as the run before');
  t.equal(statSync(two).mode & 0o777, 0o755, 'the folder is readable by a run uid, as a made-local one');

  // A changed object: the spare the second run left no longer matches the listing, and is not used.
  const r3pre = await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'three'), retry);
  t.equal(r3pre.spare, true, 'each run leaves a spare for the next');
  await put('datasets/spare/d1/f1.txt', 'changed\n');
  const four = path.join(runRoot, 'four');
  const r4 = await cache.makeLocal(minio, bucket, 'datasets/spare/', four, retry);
  t.notOk(r4.staged, 'a dataset changed since its spare was linked is made local afresh');
  t.equal(r4.hits, n - 1, 'every unchanged file still from the cache');
  t.equal(readFileSync(path.join(four, 'd1', 'f1.txt'), 'utf8'), 'changed\n', 'the changed file with its new bytes');

  // Few files: linked on the run's path, no spare.
  await cache.dropStaged();
  await cache.makeLocal(minio, bucket, 'datasets/spare-few/', path.join(runRoot, 'f1'), retry);
  const few = await cache.makeLocal(minio, bucket, 'datasets/spare-few/', path.join(runRoot, 'f2'), retry);
  t.same([few.staged, few.hits], [undefined, 2], `under ${SPARE_FROM_FILES} files no spare: linked by the run`);
  // r4's stale spare is removed off its path: wait for that (a few-file spare, wrongly made, would stay).
  await new Promise((r) => setTimeout(r, SPARE_DELAY_MS + 300));
  for (const until = Date.now() + 10_000; staged().length > 0 && Date.now() < until;) await new Promise((r) => setTimeout(r, 10));
  t.same(staged(), [], 'and no spare folder left');

  // A stage (the run prepare-next knows is next) is never replaced by a spare: the next run of the many-file
  // dataset starts the spare its last run left waiting, which finds the stage there and makes nothing.
  await cache.stage(minio, bucket, 'datasets/spare-few/', retry);
  await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'five'), retry);
  const six = await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'six'), retry);
  t.notOk(six.staged, 'no spare was made beside the stage');
  t.equal(staged().length, 1, 'the stage is still the one staged folder');
  const fromStage = await cache.makeLocal(minio, bucket, 'datasets/spare-few/', path.join(runRoot, 'f3'), retry);
  t.same([fromStage.staged, fromStage.spare], [true, undefined], 'the staged folder survived the many-file runs and was taken');

  // A drop once a spare has started (being linked or linked): it is not kept.
  await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'six-b'), retry);
  const until = Date.now() + 20_000;
  while (staged().length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  t.equal(staged().length, 1, 'the spare started (after its delay)');
  await cache.dropStaged();
  const seven = await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'seven'), retry);
  t.notOk(seven.staged, 'a dropped spare is not taken');
  t.equal(seven.hits, n, 'the run links its files itself');
  await cache.close();
  t.same(staged(), [], 'close removes what seven left and makes no more');

  // Without links (runs that share the agent's uid get copies): no spare, whatever `spares` says.
  const copies = new DataCache(tmp('ty-dcs-copies-'), 1 << 20);
  copies.spares = true;
  await copies.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'c1'), retry);
  const c2 = await copies.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'c2'), retry);
  t.notOk(c2.staged, 'copies: no spare');
});

t.test('an eviction drops the spare, whose links would keep the evicted entries\' blocks', async (t) => {
  const n = SPARE_FROM_FILES;
  await mapBounded(Array.from({ length: n }, (_, i) => i), 32, (i) => put(`datasets/spare-ev/f${i}.txt`, Buffer.alloc(100, i % 256)));
  await put('datasets/spare-big/big.bin', Buffer.alloc(40_000, 9));
  const work = tmp('ty-dcse-');
  const cache = sparingCache(work, n * 100 + 20_000);
  const runRoot = tmp('ty-runse-');
  await cache.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'one'), retry);
  const two = await cache.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'two'), retry);
  t.equal(two.spare, true, 'a spare was there');
  // two leaves a spare too: once it is linked whole (all n files), a download that evicts must drop it.
  t.ok(await spareLinked(work, n), 'two\'s spare was linked');
  await cache.makeLocal(minio, bucket, 'datasets/spare-big/', path.join(runRoot, 'big'), retry);
  t.same(readdirSync(path.join(work, 'data-staged')), [], 'a download that evicted entries dropped the spare');
  const three = await cache.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'three'), retry);
  t.notOk(three.staged, 'the next run makes its folder itself');
  t.same(manifestOf(three.entries), await dataManifest(path.join(runRoot, 'three')), 'right, evicted files fetched again');

  // A cache that cannot hold the whole dataset makes no spare (it could not be whole).
  const halfWork = tmp('ty-dcsh-');
  const half = sparingCache(halfWork, n * 100 / 2);
  await half.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'h1'), retry);
  await new Promise((r) => setTimeout(r, SPARE_DELAY_MS + 300)); // past the spare's delay
  const h2 = await half.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'h2'), retry);
  t.notOk(h2.staged, 'half the dataset cached: no spare');
  t.same(readdirSync(path.join(halfWork, 'data-staged'), { withFileTypes: true }).length, 0, 'and nothing is left staged');
});

t.test('a run\'s folder, once the run is over, becomes the next run\'s spare instead of being removed', async (t) => {
  // Datasets of the tests above: spare (more than SPARE_FROM_FILES files), spare-few (two), spare-ev.
  const work = tmp('ty-dcrc-');
  const cache = sparingCache(work, 1 << 22);
  const staged = () => readdirSync(path.join(work, 'data-staged'));
  const runRoot = tmp('ty-runsrc-');
  const one = path.join(runRoot, 'one');
  const r1 = await cache.makeLocal(minio, bucket, 'datasets/spare/', one, retry);
  const inode = statSync(one).ino;
  t.ok(await cache.recycle(r1, one), 'the ended run\'s folder is taken');
  t.notOk(existsSync(one), 'moved away from the run\'s folder');
  // The spare r1's make-local set waiting is called off: this folder is it (nothing linked after the delay).
  await new Promise((r) => setTimeout(r, SPARE_DELAY_MS + 300));
  t.equal(staged().length, 1, 'one spare, no other linked after the delay');
  const two = path.join(runRoot, 'two');
  const r2 = await cache.makeLocal(minio, bucket, 'datasets/spare/', two, retry);
  t.same([r2.staged, r2.spare, r2.files, r2.hits], [true, true, r1.files, r1.files], 'the next run takes it as its spare');
  t.equal(statSync(two).ino, inode, 'the very folder the run before had');
  t.same(manifestOf(r2.entries), await dataManifest(two), 'its manifest is the folder\'s');
  t.same(r2.manifest, manifestOf(r1.entries), 'and the one made for the run before, carried along');

  // A spare of the dataset already there (linked after the delay, while the run trained): that one stays.
  t.ok(await spareLinked(work, r1.files), 'two\'s run leaves a spare linked after the delay');
  const before = staged();
  t.notOk(await cache.recycle(r2, two), 'a spare of the dataset already there: not taken');
  t.ok(existsSync(two), 'the folder is left to the caller');
  t.same(staged(), before, 'and the spare there is the same');

  // A stage (the run prepare-next knows is next) is never replaced.
  const three = path.join(runRoot, 'three');
  const r3 = await cache.makeLocal(minio, bucket, 'datasets/spare/', three, retry);
  await cache.stage(minio, bucket, 'datasets/spare-few/', retry);
  t.notOk(await cache.recycle(r3, three), 'a stage there: not taken');
  t.ok(existsSync(three));
  await cache.close();
  t.notOk(await cache.recycle(r3, three), 'nor once the cache is closed (the agent stops)');

  // Few files: not worth a folder, as for a spare. Copies (runs that share the agent's uid): never.
  const few = sparingCache(tmp('ty-dcrf-'), 1 << 20);
  const f1 = path.join(runRoot, 'f1');
  t.notOk(await few.recycle(await few.makeLocal(minio, bucket, 'datasets/spare-few/', f1, retry), f1), `under ${SPARE_FROM_FILES} files: not taken`);
  const copies = new DataCache(tmp('ty-dcrcp-'), 1 << 20);
  copies.spares = true;
  const c1 = path.join(runRoot, 'c1');
  const rc = await copies.makeLocal(minio, bucket, 'datasets/spare/', c1, retry);
  t.notOk(await copies.recycle(rc, c1), 'copies the run could write: never taken');
  t.ok(existsSync(c1));

  // A run that ended after a push of its dataset: its folder is of the listing before, and the spare the
  // newer run left waiting (of the new listing) is not called off for it.
  const newer = sparingCache(tmp('ty-dcrn-'), 1 << 22);
  const o1 = path.join(runRoot, 'o1');
  const ro = await newer.makeLocal(minio, bucket, 'datasets/spare/', o1, retry);
  await put('datasets/spare/d2/f2.txt', 'pushed again\n');
  const o2 = path.join(runRoot, 'o2');
  await newer.makeLocal(minio, bucket, 'datasets/spare/', o2, retry);
  t.notOk(await newer.recycle(ro, o1), 'a folder of the listing before: not taken');
  const o3 = path.join(runRoot, 'o3');
  const r3n = await newer.makeLocal(minio, bucket, 'datasets/spare/', o3, retry);
  t.same([r3n.spare, readFileSync(path.join(o3, 'd2', 'f2.txt'), 'utf8')], [true, 'pushed again\n'], 'the next run gets the new listing\'s spare');
  await newer.close();

  // A run claimed under a newer generation of the dataset (pushed since) does not have the spare waiting
  // for the listing before linked, only to throw it away: no folder is staged while it is made local.
  const gensWork = tmp('ty-dcrg-');
  const gens = sparingCache(gensWork, 1 << 22);
  await gens.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'h1'), retry, {}, { generation: 7 });
  await put('datasets/spare/d2/f3.txt', 'pushed once more\n');
  const stagedDir = path.join(gensWork, 'data-staged');
  let seen = 0;
  let watching = true;
  const watch = (async () => { while (watching) { seen = Math.max(seen, existsSync(stagedDir) ? readdirSync(stagedDir).length : 0); await new Promise((r) => setImmediate(r)); } })();
  const h2 = await gens.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'h2'), retry, {}, { generation: 8 });
  watching = false;
  await watch;
  t.equal(readFileSync(path.join(runRoot, 'h2', 'd2', 'f3.txt'), 'utf8'), 'pushed once more\n', 'the run of the new generation has the push');
  t.equal(seen, 0, 'and no spare of the listing before was linked beside it');
  t.notOk(h2.spare, 'it made its folder itself');
  await gens.close();

  // An entry evicted while the run ran: the folder's link would keep its blocks past the cap; not taken.
  const n = SPARE_FROM_FILES;
  const capped = sparingCache(tmp('ty-dcre-'), n * 100 + 20_000);
  const e1 = path.join(runRoot, 'e1');
  const re = await capped.makeLocal(minio, bucket, 'datasets/spare-ev/', e1, retry);
  await capped.makeLocal(minio, bucket, 'datasets/spare-big/', path.join(runRoot, 'e-big'), retry);
  t.notOk(await capped.recycle(re, e1), 'an entry of it evicted: not taken');
  // Evicted, then fetched again by the next run of the dataset: the ids are the cache's again, but their
  // files are new ones; the folder still links the old ones, and is not taken either.
  const refetch = sparingCache(tmp('ty-dcrr-'), n * 100 + 20_000);
  const g1 = path.join(runRoot, 'g1');
  const rg = await refetch.makeLocal(minio, bucket, 'datasets/spare-ev/', g1, retry);
  await refetch.makeLocal(minio, bucket, 'datasets/spare-big/', path.join(runRoot, 'g-big'), retry);
  const again = await refetch.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'g2'), retry);
  t.ok(again.files - again.hits > 0, `the next run fetched evicted files again (${again.files - again.hits})`);
  t.notOk(await refetch.recycle(rg, g1), 'a folder linking entries evicted and fetched again: not taken');
  await refetch.close();
  await few.close();
  await copies.close();
  await capped.close();
});

t.test('a spare gives way to the spare of the dataset run after it', async (t) => {
  // Datasets of the tests above: spare-ev (SPARE_FROM_FILES files) and spare (more).
  const work = tmp('ty-dcsr-');
  const cache = sparingCache(work, 1 << 22);
  const runRoot = tmp('ty-runsr-');
  await cache.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'a1'), retry);
  const a2 = await cache.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'a2'), retry);
  t.equal(a2.spare, true, 'the first dataset\'s spare was taken');
  // a2 leaves a spare of its own: wait until it is linked whole, so it is there when the other dataset's run ends.
  t.ok(await spareLinked(work, SPARE_FROM_FILES), 'its next spare is linked');
  await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'b1'), retry);
  const b2 = await cache.makeLocal(minio, bucket, 'datasets/spare/', path.join(runRoot, 'b2'), retry);
  t.equal(b2.spare, true, 'the other dataset, run last, got the spare');
  const a3 = await cache.makeLocal(minio, bucket, 'datasets/spare-ev/', path.join(runRoot, 'a3'), retry);
  t.notOk(a3.staged, 'the first dataset\'s older spare was given up');
  t.same(manifestOf(a3.entries), await dataManifest(path.join(runRoot, 'a3')), 'and its run made its folder itself, right');
  await cache.close();
});

t.test('deferHashes: a large file is hashed after the make-local, from its entry, which is then named by its hash', async (t) => {
  const big = randomBytes(4 * DEFER_HASH_FROM_BYTES + 99);
  const big2 = randomBytes(DEFER_HASH_FROM_BYTES);
  await put('datasets/dh/big.bin', big);
  await put('datasets/dh/sub/big2.bin', big2);
  await put('datasets/dh/small.csv', 'a,b\n');
  const work = tmp('ty-dch-');
  const cache = new DataCache(work, 1 << 30);
  cache.linksForRuns = true;
  const runs = tmp('ty-runh-');
  const first = path.join(runs, 'one');
  const r1 = await cache.makeLocal(minio, bucket, 'datasets/dh/', first, retry, {}, { deferHashes: true });
  t.ok(r1.hashed, 'some hashes come after the make-local');
  t.equal(r1.hashedAfter, 2, 'the two large files\'');
  t.match(r1.entries.find((e) => e.path === 'small.csv')?.sha256, /^[0-9a-f]{64}$/, 'a small file\'s hash is there at once');
  await r1.hashed;
  t.same(manifestOf(r1.entries), await dataManifest(first), 'once in, the manifest is the folder\'s');
  const names = readdirSync(path.join(work, 'data-cache'));
  t.equal(names.length, 3, `three entries (${names.join(', ')})`);
  t.ok(names.every((n) => /^[0-9a-f]{64}-[0-9a-f]{64}$/.test(n)), 'each under the name a restart reads back (no .got left)');
  const want = createHash('sha256').update(big).digest('hex');
  t.ok(names.some((n) => n.endsWith(`-${want}`)), 'the large file\'s entry named by its hash');

  // An agent restarted on the same work dir finds the entries by their names: hits, hashes known at once.
  const restarted = new DataCache(work, 1 << 30);
  restarted.linksForRuns = true;
  const r2 = await restarted.makeLocal(minio, bucket, 'datasets/dh/', path.join(runs, 'two'), retry, {}, { deferHashes: true });
  t.equal(r2.hits, 3, 'every file from the cache');
  t.notOk(r2.hashed, 'nothing left to hash');
  t.same(manifestOf(r2.entries), manifestOf(r1.entries));

  // Runs that share the agent's uid get copies, which they could write: their hashes are taken as the bytes come.
  const copies = new DataCache(tmp('ty-dch3-'), 1 << 30);
  const r3 = await copies.makeLocal(minio, bucket, 'datasets/dh/', path.join(runs, 'three'), retry, {}, { deferHashes: true });
  t.notOk(r3.hashed, 'without links deferHashes is not taken');
  t.same(manifestOf(r3.entries), manifestOf(r1.entries));
});

/** A file hasher for DataCache that holds each file until the test lets it go (or fails it). */
function heldHasher() {
  const held: { file: string; go: (fail?: boolean) => void }[] = [];
  const hasher = (file: string) => new Promise<{ sha256: string; size: number }>((resolve, reject) => {
    held.push({ file, go: (fail) => { if (fail) reject(Object.assign(new Error('read failed'), { code: 'EIO' })); else void hashFile(file).then(resolve, reject); } });
  });
  return { held, hasher };
}

t.test('deferHashes: runs that take an entry while its hash is held get it once in; a failed hash drops the entry', async (t) => {
  const big = randomBytes(DEFER_HASH_FROM_BYTES + 5);
  const want = createHash('sha256').update(big).digest('hex');
  await put('datasets/dw/big.bin', big);
  const work = tmp('ty-dcw-');
  const { held, hasher } = heldHasher();
  const cache = new DataCache(work, 1 << 30, { hashFile: hasher });
  cache.linksForRuns = true;
  const runs = tmp('ty-runw-');
  const local = (name: string, prefix = 'datasets/dw/') => cache.makeLocal(minio, bucket, prefix, path.join(runs, name), retry, {}, { deferHashes: true });
  const first = await local('a');
  t.equal(held.length, 1, 'its hash is asked for once');
  t.equal(first.entries[0]?.sha256, '', 'not in yet');
  const more = await Promise.all(['b', 'c', 'd'].map((n) => local(n)));
  t.same(more.map((m) => [m.hits, Boolean(m.hashed), m.entries[0]?.sha256]), Array(3).fill([1, true, '']), 'runs linking the entry meanwhile wait for the same hash');
  t.equal(held.length, 1, 'still one hash');
  t.ok(readdirSync(path.join(work, 'data-cache')).some((n) => n.endsWith('.got')), 'the entry keeps its download name meanwhile');
  held[0]!.go();
  for (const m of [first, ...more]) await m.hashed;
  t.same([first, ...more].map((m) => m.entries[0]?.sha256), Array(4).fill(want), 'each gets the hash');
  t.same(readdirSync(path.join(work, 'data-cache')).map((n) => n.slice(65)), [want], 'the entry is named by it, the download name gone');
  const later = await local('e');
  t.same([later.hits, later.hashed, later.entries[0]?.sha256], [1, undefined, want], 'a later run has it at once');

  await put('datasets/df/big.bin', randomBytes(DEFER_HASH_FROM_BYTES));
  const failing = await local('f', 'datasets/df/');
  held[1]!.go(true);
  await t.rejects(failing.hashed!, { code: 'EIO' }, 'a hash that fails fails the make-local\'s hashes');
  t.equal(readdirSync(path.join(work, 'data-cache')).length, 1, 'and its entry left the cache, file and all');
  const again = await local('g', 'datasets/df/');
  t.equal(again.hits, 0, 'the next run downloads it again');
  held[2]!.go();
  await again.hashed;
  t.match(again.entries[0]?.sha256, /^[0-9a-f]{64}$/);
});

t.test('deferHashes: entries held by their hash past the cap are evicted once hashed', async (t) => {
  for (const n of ['x', 'y', 'z']) await put(`datasets/dcap/${n}.bin`, randomBytes(DEFER_HASH_FROM_BYTES));
  const { held, hasher } = heldHasher();
  const cap = 2 * DEFER_HASH_FROM_BYTES;
  const work = tmp('ty-dcc-');
  const cache = new DataCache(work, cap, { hashFile: hasher });
  cache.linksForRuns = true;
  const r = await cache.makeLocal(minio, bucket, 'datasets/dcap/', path.join(tmp('ty-runc-'), 'data'), retry, {}, { deferHashes: true });
  t.equal(cache.size.bytes, 3 * DEFER_HASH_FROM_BYTES, 'over the cap while the hashes are held (an entry being hashed is not evicted)');
  for (const h of held) h.go();
  await r.hashed;
  const files = () => readdirSync(path.join(work, 'data-cache')).length;
  for (const until = Date.now() + 5000; (cache.size.bytes > cap || files() !== cache.size.entries) && Date.now() < until;) await new Promise((res) => setTimeout(res, 10));
  t.ok(cache.size.bytes <= cap, `within the cap once hashed (${cache.size.bytes} bytes)`);
  t.equal(readdirSync(path.join(work, 'data-cache')).length, cache.size.entries, 'and the files evicted are gone');
});

t.test('a run of the generation listed shortly before uses that listing; another generation, a stale one or a changed object lists again', async (t) => {
  const rm = (key: string) => minio.removeObject(bucket, key);
  await put('datasets/gen/a.csv', 'one\n');
  await put('datasets/gen/b.csv', 'two\n');
  const work = tmp('ty-dc-gen-');
  const cache = new DataCache(work, 1 << 20, { listingTrustMs: 60_000 });
  // Each run's claim is sent after the run before ended (a moment later), as one slot's runs are.
  const claim = async () => { await new Promise((r) => setTimeout(r, 2)); return Date.now(); };
  const run = async (generation: number, claimedAfter?: number) => {
    const dir = path.join(tmp('ty-gen-run-'), 'data');
    const made = await cache.makeLocal(minio, bucket, 'datasets/gen/', dir, retry, {}, { generation, claimedAfter: claimedAfter ?? await claim() });
    return { made, files: (await walkFiles(dir)).map((f) => f.rel).sort(), dir };
  };
  const first = await run(7);
  t.same(first.files, ['a.csv', 'b.csv']);
  t.notOk(first.made.listingTrusted, 'the first run of a generation lists the dataset');

  // Written behind Trainyard's back (no new generation): a run of generation 7 does not see it...
  await put('datasets/gen/c.csv', 'three\n');
  const same = await run(7);
  t.same(same.files, ['a.csv', 'b.csv'], 'the same generation within the trust: the listing of a moment ago, without c.csv');
  t.ok(same.made.listingTrusted, 'and says so');
  t.same(manifestOf(same.made.entries), manifestOf(first.made.entries), 'its manifest is what it made local');
  // ...nor does one claimed before that listing ended: its claim may have read the generation before a
  // push that the listing saw part of...
  const early = await run(7, 0);
  t.notOk(early.made.listingTrusted, 'a run claimed before the listing ended lists');
  t.same(early.files, ['a.csv', 'b.csv', 'c.csv']);
  await put('datasets/gen/c2.csv', 'three and a bit\n');
  t.same((await run(7, undefined)).files, ['a.csv', 'b.csv', 'c.csv'], '(and its listing is the one kept now)');
  // ...a new generation (a push) does at once...
  const next = await run(8);
  t.same(next.files, ['a.csv', 'b.csv', 'c.csv', 'c2.csv'], 'a new generation lists the dataset again');
  t.notOk(next.made.listingTrusted);
  // ...and no generation (0: a push in progress) always lists, and drops a kept listing it differs from.
  await put('datasets/gen/d.csv', 'four\n');
  const none = await run(0);
  t.same(none.files, ['a.csv', 'b.csv', 'c.csv', 'c2.csv', 'd.csv'], 'generation 0 lists');
  const after = await run(8);
  t.same(after.files, ['a.csv', 'b.csv', 'c.csv', 'c2.csv', 'd.csv'], 'a listing made without a generation that differs drops the kept one');
  t.notOk(after.made.listingTrusted);
  await rm('datasets/gen/c2.csv');
  await rm('datasets/gen/d.csv');

  // An object replaced behind Trainyard's back that the cache does not hold (larger than its cap): the
  // trusted listing's ETag fails its GET (If-Match), and the pull starts again, in an emptied folder (the
  // first try's links are gone: linked again they would exist already), from a fresh listing.
  await put('datasets/gen/big.bin', 'x'.repeat(4096));
  const small = new DataCache(tmp('ty-dc-gen0-'), 1024, { listingTrustMs: 60_000 });
  small.linksForRuns = true;
  const dirA = path.join(tmp('ty-gen-a-'), 'data');
  await small.makeLocal(minio, bucket, 'datasets/gen/', dirA, retry, {}, { generation: 9, claimedAfter: await claim() });
  await put('datasets/gen/big.bin', 'y'.repeat(5000));
  const dirB = path.join(tmp('ty-gen-b-'), 'data');
  const replaced = await small.makeLocal(minio, bucket, 'datasets/gen/', dirB, retry, {}, { generation: 9, claimedAfter: await claim() });
  t.equal(readFileSync(path.join(dirB, 'big.bin'), 'utf8'), 'y'.repeat(5000), 'the replaced object, from a fresh listing');
  t.notOk(replaced.listingTrusted, 'not from the trusted listing');
  t.match(replaced.relisted, /pre-conditions you specified did not hold/, 'and says why it listed again');
  t.same(manifestOf(replaced.entries), await dataManifest(dirB), 'its manifest is the folder\'s');
  t.same((await walkFiles(dirB)).map((f) => f.rel).sort(), ['a.csv', 'b.csv', 'big.bin', 'c.csv'], 'each file once');
  await rm('datasets/gen/big.bin');

  // Past the trust, or with none (0 s), a run lists.
  await put('datasets/gen/e.csv', 'five\n');
  const brief = new DataCache(tmp('ty-dc-gen1-'), 1 << 20, { listingTrustMs: 1 });
  await brief.makeLocal(minio, bucket, 'datasets/gen/', path.join(tmp('ty-gen-c-'), 'data'), retry, {}, { generation: 10, claimedAfter: await claim() });
  await put('datasets/gen/f.csv', 'six\n');
  await new Promise((r) => setTimeout(r, 5));
  const late = await brief.makeLocal(minio, bucket, 'datasets/gen/', path.join(tmp('ty-gen-d-'), 'data'), retry, {}, { generation: 10, claimedAfter: await claim() });
  t.equal(late.files, 5, 'a listing older than the trust is not used');
  const off = new DataCache(tmp('ty-dc-gen2-'), 1 << 20);
  await off.makeLocal(minio, bucket, 'datasets/gen/', path.join(tmp('ty-gen-e-'), 'data'), retry, {}, { generation: 11, claimedAfter: await claim() });
  await put('datasets/gen/g.csv', 'seven\n');
  const offAgain = await off.makeLocal(minio, bucket, 'datasets/gen/', path.join(tmp('ty-gen-f-'), 'data'), retry, {}, { generation: 11, claimedAfter: await claim() });
  t.equal(offAgain.files, 6, 'no trust (the default of a DataCache made without one): every run lists');
});
