// Issue 21, push at MinIO's speed: a large file of `dataset push` goes from the CLI straight to MinIO, by
// URLs the scheduler signs for each part (PresignDatasetParts), and becomes part of the dataset only when
// the push's stream names it and the scheduler has checked it. The scheduler and the CLI reach MinIO
// through two counting proxies, so where the bytes went is measured, not assumed. What the URLs and the
// RPC refuse is tried from outside: another project, a reader, bad parts, bytes that are not the ones
// signed, an upload that does not add up.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { minioEndpoint, Stack, freePort, tempDir, writeTree } from '../helpers/stack.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { connectClient } from '../../cli/client.js';
import type { PresignDatasetPartsRequest, PresignDatasetPartsResponse__Output } from '../../shared/proto.js';
import { DIRECT_PART_BYTES } from '../../cli/dataset-direct.js';

const MIB = 1024 * 1024;

async function proxyToMinio(t: Test): Promise<TcpProxy> {
  const m = new URL(minioEndpoint);
  const p = await startTcpProxy({ host: m.hostname, port: Number(m.port) });
  t.teardown(() => p.close());
  return p;
}

async function read(s: Stack, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await s.minio.getObject(s.bucket, key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Multipart uploads begun and neither completed nor given up, under `prefix`. */
async function incomplete(s: Stack, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const u of s.minio.listIncompleteUploads(s.bucket, prefix, true) as AsyncIterable<{ key: string }>) out.push(u.key);
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('a large file goes from the CLI to MinIO directly; the scheduler carries only the small ones', async (t) => {
  const toScheduler = await proxyToMinio(t);
  const toClients = await proxyToMinio(t);
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_MINIO_ENDPOINT: toScheduler.endpoint, TRAINYARD_CLIENT_STORAGE_URL: toClients.endpoint } });
  const big = randomBytes(DIRECT_PART_BYTES * 2 + 4096); // three parts, the last a short one
  const tree: Record<string, Buffer> = { 'big/model.bin': big };
  for (let i = 0; i < 5; i++) tree[`small/${i}.csv`] = randomBytes(1000 + i);
  const dir = writeTree(tempDir(), tree);
  toScheduler.reset();
  toClients.reset();
  const pushed = await s.cliJson(['dataset', 'push', dir, '--name', 'direct']);
  t.match(pushed, { name: 'direct', file_count: 6 });
  t.equal(Number(pushed.size_bytes), Object.values(tree).reduce((n, b) => n + b.length, 0), 'the row counts every byte');
  t.ok(toClients.up >= big.length, `the large file's bytes went to MinIO from the CLI (${(toClients.up / MIB).toFixed(1)} MiB)`);
  t.ok(toScheduler.up < MIB, `the scheduler sent MinIO only the small files and requests (${toScheduler.up} bytes), not the large one`);
  t.ok((await read(s, 'datasets/direct/big/model.bin')).equals(big), 'the large file is stored whole, every byte right');
  for (let i = 0; i < 5; i++) t.ok((await read(s, `datasets/direct/small/${i}.csv`)).equals(tree[`small/${i}.csv`]!), `small/${i}.csv is stored as pushed`);
  t.same(await incomplete(s, 'datasets/'), [], 'no upload is left incomplete');
  const events = await s.query("SELECT data FROM events WHERE kind = 'dataset.pushed' AND subject = 'direct'");
  t.match(events, [{ data: { files_pushed: 6, files: 6 } }], 'the push is in the ML log, its directly stored file counted');

  // --via-scheduler: nothing from the CLI to MinIO.
  toClients.reset();
  toScheduler.reset();
  const again = await s.cliJson(['dataset', 'push', dir, '--name', 'through', '--via-scheduler']);
  t.equal(again.file_count, 6);
  t.equal(toClients.used, 0, '--via-scheduler: the CLI opened no connection to MinIO');
  t.ok(toScheduler.up >= big.length, 'the scheduler stored the large file itself');
  t.ok((await read(s, 'datasets/through/big/model.bin')).equals(big), 'and every byte is right');
});

t.test('when the CLI cannot reach MinIO, or the scheduler does not offer it, the push goes through the scheduler', async (t) => {
  const closed = await freePort();
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_CLIENT_STORAGE_URL: `http://127.0.0.1:${closed}` } });
  const big = randomBytes(DIRECT_PART_BYTES + 100);
  const dir = writeTree(tempDir(), { 'a.bin': big, 'b.bin': randomBytes(DIRECT_PART_BYTES), 'c.txt': 'c\n' });
  const r = await s.cli(['dataset', 'push', dir, '--name', 'unreachable']);
  t.equal(r.code, 0, `the push succeeds (${r.stderr.trim()})`);
  t.match(r.stderr, /storage is not usable from here \(127\.0\.0\.1:\d+: ECONNREFUSED\); large files go through the scheduler/, 'saying why, once');
  t.equal(r.stderr.match(/not usable/g)?.length, 1, 'once for the push, not per file');
  t.ok((await read(s, 'datasets/unreachable/a.bin')).equals(big), 'the file is stored whole');
  t.ok((await read(s, 'datasets/unreachable/b.bin')).equals(readFileSync(path.join(dir, 'b.bin'))), 'and the other large one');

  const off = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_CLIENT_STORAGE_URL: 'none' } });
  const r2 = await off.cli(['dataset', 'push', dir, '--name', 'through']);
  t.equal(r2.code, 0, r2.stderr);
  t.match(r2.stderr, /this scheduler stores every byte of a push itself \(--client-storage-url none\); large files go through it/, 'a scheduler set to --client-storage-url none is told apart');
  t.ok((await read(off, 'datasets/through/a.bin')).equals(big), 'and the push is whole');
  t.same(await incomplete(off, 'datasets/'), [], 'no upload was begun');
});

t.test('PresignDatasetParts refuses what a caller may not do and input that is wrong; its URLs store only the bytes they name', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const token = async (project: string, role = 'member') => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const [alpha, beta, reader] = [await token('alpha'), await token('beta'), await token('alpha', 'reader')];
  await s.cli(['dataset', 'push', writeTree(tempDir(), { 'a.csv': 'a\n' }), '--name', 'owned', '--token', alpha]);
  t.equal((await s.query("SELECT project FROM datasets WHERE name = 'owned'"))[0]?.project, 'alpha');

  const clients = new Map<string, Awaited<ReturnType<typeof connectClient>>>();
  const presign = async (tok: string, req: Partial<PresignDatasetPartsRequest>) => {
    if (!clients.has(tok)) clients.set(tok, await connectClient(s.schedulerAddress, tok));
    const c = clients.get(tok)!;
    return new Promise<{ res?: PresignDatasetPartsResponse__Output; code?: number; details?: string }>((resolve) => {
      c.PresignDatasetParts({ dataset: 'owned', path: 'big.bin', size_bytes: 6 * MIB, part_bytes: 5 * MIB, first_part: 1, part_sha256: [sha(Buffer.alloc(5 * MIB))], ...req },
        (err, res) => resolve(err ? { code: err.code, details: err.details } : { res: res! }));
    });
  };
  t.teardown(() => { for (const c of clients.values()) c.close(); });

  const other = await presign(beta, {});
  t.equal(other.code, 6, `another project's member may not store into alpha's dataset (${other.details})`); // ALREADY_EXISTS: the name is taken
  t.notMatch(other.details ?? '', /alpha/, 'without learning whose it is');
  const ro = await presign(reader, {});
  t.equal(ro.code, 7, `a reader may not (${ro.details})`); // PERMISSION_DENIED
  const bad: [string, Partial<PresignDatasetPartsRequest>, RegExp][] = [
    ['parts under 5 MiB', { part_bytes: MIB }, /part_bytes 1048576 is outside/],
    ['a path out of the dataset', { path: '../escape.bin' }, /path/],
    ['a hash that is not one', { part_sha256: ['xyz'] }, /not a SHA-256/],
    ['a part past the end', { first_part: 3 }, /first_part 3 is not one of its parts 1 to 2/],
    ['more parts than the file has', { part_sha256: [sha(Buffer.alloc(1)), sha(Buffer.alloc(2)), sha(Buffer.alloc(3))] }, /parts 1 to 3 asked for; it has 2/],
    ['an empty file', { size_bytes: 0 }, /size 0/],
    ['too many parts', { size_bytes: 10_001 * 5 * MIB }, /10001 parts/],
    ['no dataset name', { dataset: '' }, /dataset/],
  ];
  for (const [what, req, message] of bad) {
    const r = await presign(alpha, req);
    t.equal(r.code, 3, `${what}: INVALID_ARGUMENT`);
    t.match(r.details, message, `${what}: ${r.details}`);
  }
  t.same(await incomplete(s, 'datasets/'), [], 'nothing refused began an upload');
  await s.cliJson(['projects', 'set', 'alpha', '--max-storage-gb', '0.004']);
  const over = await presign(alpha, {});
  t.equal(over.code, 9, `over the project's storage quota: refused (${over.details})`); // FAILED_PRECONDITION
  t.match(over.details, /storage quota of project "alpha" exceeded/);
  t.same(await incomplete(s, 'datasets/'), [], 'and no upload begun');

  // An upload begun counts against the quota until its push ends: room for one of 6 MiB, not two.
  await s.cliJson(['projects', 'set', 'alpha', '--max-storage-gb', '0.01']);
  const part1 = randomBytes(5 * MIB);
  const ok = await presign(alpha, { part_sha256: [sha(part1)] });
  t.ok(ok.res?.upload_id, `within the quota, an upload is begun (${ok.details ?? ''})`);
  const second = await presign(alpha, { path: 'second.bin' });
  t.equal(second.code, 9, 'a second one that would not fit beside the first is refused');
  t.match(second.details, /with the project's 1 other uploads open/);
  t.match(await s.query('SELECT project, object_key, size_bytes FROM dataset_uploads'), [{ project: 'alpha', object_key: 'datasets/owned/big.bin', size_bytes: String(6 * MIB) }], 'the open upload is recorded');
  await s.cliJson(['projects', 'set', 'alpha', '--max-storage-gb', 'none']);
  const elsewhere = await presign(alpha, { path: 'other.bin', upload_id: ok.res!.upload_id });
  t.equal(elsewhere.code, 3, 'URLs for another file under that upload are refused');
  t.match(elsewhere.details, /not one begun for this file/);
  const resized = await presign(alpha, { size_bytes: 7 * MIB, upload_id: ok.res!.upload_id });
  t.equal(resized.code, 3, 'and for another size');
  const reparted = await presign(alpha, { part_bytes: 6 * MIB, part_sha256: [sha(Buffer.alloc(1))], upload_id: ok.res!.upload_id });
  t.equal(reparted.code, 3, 'and for another part size (each URL is signed for its part\'s length)');

  // A URL stores exactly its part's bytes, at its part number of its upload, and nothing else.
  const url = ok.res!.part_urls[0]!;
  t.equal(ok.res!.part_urls.length, 1);
  const other1 = Buffer.from(part1);
  other1[77] ^= 1;
  const changed = await fetch(url, { method: 'PUT', body: other1 });
  t.equal(changed.status, 400, 'other bytes than the ones signed are refused');
  t.match(await changed.text(), /XAmzContentSHA256Mismatch/);
  const moved = await fetch(url.replace('partNumber=1', 'partNumber=2'), { method: 'PUT', body: part1 });
  t.equal(moved.status, 403, 'the URL is no good for another part number');
  await moved.text();
  const other2 = await fetch(url.replace('big.bin', 'other.bin'), { method: 'PUT', body: part1 });
  t.equal(other2.status, 403, 'nor for another file');
  await other2.text();
  // Bytes of another length, with their own hash signed: the length is signed too.
  const longer = randomBytes(6 * MIB);
  const forLonger = await presign(alpha, { part_sha256: [sha(longer)], upload_id: ok.res!.upload_id });
  const long = await fetch(forLonger.res!.part_urls[0]!, { method: 'PUT', body: longer });
  t.equal(long.status, 403, 'a part longer than the file\'s part size is refused, whatever hash was signed');
  await long.text();
  // UploadPartCopy: the URL plus an unsigned x-amz-copy-source header would copy an object server-side
  // with the signer's rights. The URLs are signed with keys that can read nothing.
  // (Sent with the very bytes the URL was signed for, so that only the copy is left to refuse.)
  const copy = await fetch(url, { method: 'PUT', headers: { 'x-amz-copy-source': `/${s.bucket}/datasets/owned/a.csv` }, body: part1 });
  t.equal(copy.status, 403, 'a URL cannot copy another object into the upload');
  t.match(await copy.text(), /AccessDenied/, 'its keys may read nothing');
  t.match(url, /X-Amz-Security-Token=/, 'the URL is signed with temporary keys, not the scheduler\'s');
  t.notMatch(url, new RegExp(`Credential=${process.env.TRAINYARD_MINIO_ACCESS_KEY ?? 'minioadmin'}%2F`), 'whose access key it does not show');
  const put = await fetch(url, { method: 'PUT', body: part1 });
  t.equal(put.status, 200, 'its own bytes are stored');
  await put.text();

  // A push naming that upload with the file's size: its parts add up to 5 MiB, not 6: refused, nothing left.
  const pushNaming = (uploadId: string, dataset: string, size: number) => new Promise<{ code?: number; details?: string }>((resolve) => {
    const call = clients.get(alpha)!.PushDataset((err) => resolve(err ? { code: err.code, details: err.details } : {}));
    call.write({ header: { name: dataset, size_bytes: size } });
    call.write({ file: { path: 'big.bin', size_bytes: size, upload_id: uploadId } });
    call.end();
  });
  const short = await pushNaming(ok.res!.upload_id, 'owned', 6 * MIB);
  t.equal(short.code, 3, `an upload that does not add up to the file's size fails the push (${short.details})`);
  t.match(short.details, /holds 1 part\(s\), 5242880 bytes; the push announced 6291456/);
  t.same(await incomplete(s, 'datasets/'), [], 'and its upload is given up');
  t.same(await s.query('SELECT * FROM dataset_uploads'), [], 'and forgotten (no longer counted against the quota)');
  t.same(await s.objects('datasets/owned/'), ['datasets/owned/a.csv'], 'the dataset holds what it held');
  const unknown = await pushNaming('no-such-upload', 'fresh', 6 * MIB);
  t.equal(unknown.code, 3, `an upload that is not the file's fails the push (${unknown.details})`);
  t.match(unknown.details, /not one begun for this file/);
  t.same(await s.objects('datasets/fresh/'), [], 'a new dataset whose push failed leaves no object');
  t.same(await s.query("SELECT name FROM datasets WHERE name = 'fresh'"), [], 'and no row');
  const after = await fetch(url, { method: 'PUT', body: part1 });
  t.equal(after.status, 404, 'a URL of an upload given up stores nothing more');
  await after.text();
});
