// Data transfers at the machine's speed (issue 21), against the real MinIO through a TCP proxy that
// counts bytes and connections and can cut one mid-object: a large object comes in parallel ranges and a
// dropped connection continues its range (the object is not fetched again), the file is whole and its
// SHA-256 right; many small files come several at once, their manifest in the listing's order. Uploads
// likewise: a file over the part size goes up in parts sent at once, a folder's files several at once,
// and a new package version zipped straight into the bucket is the very zip the agent wrote to disk before.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createMinioClient, ensureBucket, listObjects, objectChecksum, PART_BYTES, partChecksum, removePrefix, uploadBuffer, uploadDir, uploadFile } from '../../shared/storage.js';
import { uploadStream } from '../../shared/stream-upload.js';
import { zipAnchored, zipAnchoredStream } from '../../shared/zip.js';
import { AnchoredDir } from '../../shared/anchored-dir.js';
import { downloadRanged } from '../../shared/ranged-download.js';
import { DataCache } from '../../agent/data-cache.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const endpoint = new URL(process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000');
const creds = { minioAccessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '' };
const bucket = `trainyard-data-transfer-${process.pid}-${Date.now()}`;
const direct = createMinioClient({ minioEndpoint: endpoint.href, ...creds });
const MIB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'ty-dt-'));

t.before(() => ensureBucket(direct, bucket, { retries: 3 }));
t.teardown(async () => {
  await removePrefix(direct, bucket, '', { retries: 1 }).catch(() => {});
  await direct.removeBucket(bucket).catch(() => {});
});

t.test('a large object comes in parallel ranges; a connection cut mid-object continues its range', async (t) => {
  const body = randomBytes(6 * MIB + 12345);
  const { etag } = await uploadBuffer(direct, bucket, 'datasets/big/blob.bin', body, { retries: 1 });
  const proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
  t.teardown(() => proxy.close());
  const via = createMinioClient({ minioEndpoint: proxy.endpoint, ...creds });
  proxy.dropAfter(MIB / 2); // the first connection past half a range is cut
  const retries: unknown[] = [];
  const dest = path.join(tmp(), 'blob.bin');
  const got = await downloadRanged(via, bucket, 'datasets/big/blob.bin', dest, body.length, etag, { retries: 3, baseDelayMs: 10, onRetry: (e) => retries.push(e) }, { rangeBytes: MIB, parallel: 4 });
  t.equal(proxy.dropped, 1, 'a connection was cut mid-object');
  t.ok(retries.length >= 1, 'and the cut range was tried again');
  t.ok(proxy.maxOpen > 1, `ranges went in parallel (${proxy.maxOpen} connections at once)`);
  t.equal(got.bytes, body.length);
  t.equal(got.sha256, sha(body), 'hashed as written: the SHA-256 of the object');
  t.ok(readFileSync(dest).equals(body), 'the file is whole and right');
  // Continued, not restarted: what came down is the object and a few KiB of headers, not the object
  // again (a restart would bring more than a range on top).
  t.ok(proxy.down < body.length + MIB / 2, `continued from where it stopped: ${proxy.down} bytes down for ${body.length}`);
});

t.test('an object replaced between its ranges fails instead of stitching two versions together', async (t) => {
  const one = randomBytes(3 * MIB);
  const { etag } = await uploadBuffer(direct, bucket, 'datasets/swap/blob.bin', one, { retries: 1 });
  await uploadBuffer(direct, bucket, 'datasets/swap/blob.bin', randomBytes(3 * MIB), { retries: 1 });
  const dir = tmp();
  const err = await downloadRanged(direct, bucket, 'datasets/swap/blob.bin', path.join(dir, 'b'), one.length, etag, { retries: 3, baseDelayMs: 10 }, { rangeBytes: MIB }).catch((e: unknown) => e);
  t.match(err, { code: 'STORAGE_REJECTED' }, 'PreconditionFailed: permanent');
  t.same(readdir(dir), [], 'no partial file left');
});

t.test('a large object not of the size listed fails rather than coming down cut to that size', async (t) => {
  const body = randomBytes(3 * MIB);
  await uploadBuffer(direct, bucket, 'datasets/grown/blob.bin', body, { retries: 1 });
  const dir = tmp();
  // No ETag to match (as for a checkpoint's file): the size is all there is to tell another object by.
  const err = await downloadRanged(direct, bucket, 'datasets/grown/blob.bin', path.join(dir, 'b'), 2 * MIB, '', { retries: 3, baseDelayMs: 10 }, { rangeBytes: MIB }).catch((e: unknown) => e);
  t.match(err, { code: 'STORAGE_REJECTED', message: /asked for bytes \d+-\d+\/2097152, the server sent "bytes \d+-\d+\/3145728"/ }, 'refused at once: permanent');
  t.same(readdir(dir), [], 'no file, whole or partial, left');
  // A small one (fetched through the client, one range) the same.
  await uploadBuffer(direct, bucket, 'datasets/grown/small.bin', randomBytes(5000), { retries: 1 });
  const small = await downloadRanged(direct, bucket, 'datasets/grown/small.bin', path.join(dir, 's'), 4000, '', { retries: 3, baseDelayMs: 10 }).catch((e: unknown) => e);
  t.match(small, { code: 'STORAGE_REJECTED', message: /asked for bytes 0-3999\/4000, the server sent "bytes 0-3999\/5000"/ });
  t.same(readdir(dir), [], 'nothing left of it either');
});

t.test('many small files come several at once, the manifest in the listing\'s order, each hash right', async (t) => {
  const files = Array.from({ length: 60 }, (_, i) => ({ rel: `f/${String(i).padStart(3, '0')}.bin`, body: randomBytes(4096 + i) }));
  for (const f of files) await uploadBuffer(direct, bucket, `datasets/many/${f.rel}`, f.body, { retries: 1 });
  const proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
  t.teardown(() => proxy.close());
  const via = createMinioClient({ minioEndpoint: proxy.endpoint, ...creds });
  const work = tmp();
  const cache = new DataCache(work, 64 * MIB);
  const dir = path.join(work, 'data');
  const made = await cache.makeLocal(via, bucket, 'datasets/many/', dir, { retries: 2 });
  t.ok(proxy.maxOpen > 1, `files went several at once (${proxy.maxOpen} connections at once)`);
  t.same(made.entries.map((e) => e.path), files.map((f) => f.rel), 'the manifest follows the listing');
  t.same(made.entries.map((e) => e.sha256), files.map((f) => sha(f.body)), 'each hash is its file\'s');
  for (const f of files) if (!readFileSync(path.join(dir, ...f.rel.split('/'))).equals(f.body)) t.fail(`${f.rel} differs`);
  t.equal(made.hits, 0);
  const again = await cache.makeLocal(via, bucket, 'datasets/many/', path.join(work, 'data2'), { retries: 2 });
  t.equal(again.hits, files.length, 'a second run copies every file from the cache');
});

async function objectBytes(key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await direct.getObject(bucket, key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

t.test('a file over the part size goes up in parts sent at once; a folder\'s files several at once', async (t) => {
  const dir = tmp();
  const big = randomBytes(2 * PART_BYTES + 4321);
  writeFileSync(path.join(dir, 'big.bin'), big);
  const proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
  t.teardown(() => proxy.close());
  const via = createMinioClient({ minioEndpoint: proxy.endpoint, ...creds });
  await uploadFile(via, bucket, 'datasets/up/big.bin', path.join(dir, 'big.bin'), { retries: 1 });
  t.ok(proxy.maxOpen > 1, `the parts went at once (${proxy.maxOpen} connections at once)`);
  t.ok((await objectBytes('datasets/up/big.bin')).equals(big), 'the object is the file');
  const small = path.join(dir, 'small');
  mkdirSync(small);
  for (let i = 0; i < 40; i++) writeFileSync(path.join(small, `${i}.txt`), `file ${i}\n`.repeat(100 + i));
  proxy.reset();
  const anchored = await AnchoredDir.open(small);
  t.teardown(() => anchored.close());
  const files = await anchored.files();
  const up = await uploadDir(via, bucket, anchored, files, 'datasets/many-up/', { retries: 1 });
  t.equal(up.files, 40);
  t.ok(proxy.maxOpen > 1, `the files went several at once (${proxy.maxOpen} connections at once)`);
  for (const f of files) if (!(await objectBytes(`datasets/many-up/${f.rel}`)).equals(readFileSync(path.join(small, f.rel)))) t.fail(`${f.rel} differs`);
});

t.test('a package version zipped straight into the bucket is the zip the agent wrote to disk before', async (t) => {
  const pkg = tmp();
  writeFileSync(path.join(pkg, 'train.py'), 'def train():\n    pass\n');
  mkdirSync(path.join(pkg, 'model'));
  writeFileSync(path.join(pkg, 'model', 'weights.bin'), randomBytes(6 * MIB)); // incompressible: several parts
  writeFileSync(path.join(pkg, 'model', 'notes.txt'), 'x'.repeat(200_000));
  const dir = await AnchoredDir.open(pkg);
  t.teardown(() => dir.close());
  const files = await dir.files();
  const onDisk = path.join(tmp(), 'package.zip');
  await zipAnchored(dir, files, onDisk);
  const want = readFileSync(onDisk);
  const got = await uploadStream(direct, bucket, 'runs/r/attempt-1/package.zip', zipAnchoredStream(dir, files), { retries: 1 }, { partBytes: 5 * MIB, headers: { 'Content-Type': 'application/zip' } });
  t.equal(got.bytes, want.length);
  t.equal(got.sha256, sha(want), 'hashed as it went up');
  t.ok(want.length > 5 * MIB, 'more than one part');
  t.ok((await objectBytes('runs/r/attempt-1/package.zip')).equals(want), 'the object is byte for byte the zip it replaces');
  // One within a part is a single PUT that carries its SHA-256.
  const one = await uploadStream(direct, bucket, 'runs/r/attempt-2/package.zip', zipAnchoredStream(dir, files.filter((f) => f.rel === 'train.py')), { retries: 1 });
  t.equal(one.sha256, sha(await objectBytes('runs/r/attempt-2/package.zip')));
});

t.test('a stream\'s chunks go up as they came, cut where a part ends: one larger than a part, odd sizes, one byte', async (t) => {
  // The parts are the chunks themselves, not a copy of them in one buffer (shared/stream-upload.ts).
  const pieces = [randomBytes(12 * MIB + 7), randomBytes(1), randomBytes(3 * MIB - 5), randomBytes(777_777), randomBytes(1)];
  const whole = Buffer.concat(pieces);
  const got = await uploadStream(direct, bucket, 'runs/r/attempt-4/out.bin', (async function* () { yield* pieces; })(), { retries: 1 }, { partBytes: 5 * MIB });
  t.equal(got.bytes, whole.length);
  t.equal(got.sha256, sha(whole));
  t.ok((await objectBytes('runs/r/attempt-4/out.bin')).equals(whole), 'the object is byte for byte the stream');
  const stat = await direct.statObject(bucket, 'runs/r/attempt-4/out.bin');
  t.match(stat.etag, /-4$/, 'in four parts: 5 + 5 + 5 MiB and the rest');
});

t.test('a streamed upload past its limit stores nothing, not even an unfinished multipart upload', async (t) => {
  const parts = (async function* () { for (let i = 0; i < 4; i++) yield randomBytes(3 * MIB); })();
  const err = await uploadStream(direct, bucket, 'runs/r/attempt-3/package.zip', parts, { retries: 1 }, { partBytes: 5 * MIB, maxBytes: 10 * MIB }).catch((e: unknown) => e);
  t.match(err, { code: 'RESOURCE_EXHAUSTED', message: /more than 10485760 bytes; nothing of it was stored/ });
  t.same(await listObjects(direct, bucket, 'runs/r/attempt-3/', { retries: 1 }), [], 'no object');
  const pending: unknown[] = [];
  for await (const u of direct.listIncompleteUploads(bucket, 'runs/r/attempt-3/', true)) pending.push(u);
  t.same(pending, [], 'no multipart upload left open');
});

function readdir(dir: string): string[] {
  return execFileSync('ls', ['-A', dir]).toString().split('\n').filter(Boolean);
}

t.test('a body changed on its way to MinIO is refused: every PUT of data carries a checksum MinIO checks', async (t) => {
  // The bodies are not signed (UNSIGNED-PAYLOAD, shared/storage.ts): what makes a changed byte fail is the
  // signed checksum each single PUT (x-amz-checksum-sha256) and each part (x-amz-checksum-crc32) carries.
  const proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) }, { tamperBodiesOver: 4096 });
  t.teardown(() => proxy.close());
  const via = createMinioClient({ minioEndpoint: proxy.endpoint, ...creds });
  const retry = { retries: 1, baseDelayMs: 5 };
  const one = randomBytes(64 * 1024);
  const err = await uploadBuffer(via, bucket, 'datasets/tamper/one.bin', one, retry).catch((e: unknown) => e);
  t.ok(err instanceof Error, `a single PUT whose body changed fails (${String((err as Error).message).slice(0, 120)})`);
  const parts = async function* () { yield randomBytes(5 * MIB); yield randomBytes(5 * MIB); yield randomBytes(1000); };
  const err2 = await uploadStream(via, bucket, 'datasets/tamper/parts.bin', parts(), retry, { partBytes: 5 * MIB, sha256: false }).catch((e: unknown) => e);
  t.ok(err2 instanceof Error, 'a multipart upload whose parts changed fails');
  t.match(String((err2 as Error).message), /checksum/i, `refused for its checksum (${String((err2 as Error).message).slice(0, 120)})`);
  t.ok(proxy.tampered >= 2, `bodies were changed on the way (${proxy.tampered})`);
  t.same(await listObjects(direct, bucket, 'datasets/tamper/', { retries: 1 }), [], 'and nothing of either was stored');

  // The list of parts that completes a multipart upload, its last part dropped on the way: without a
  // checksum of its own that would store a shorter object (the parts' checksums do not cover the list).
  const lists = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) },
    { rewritePost: (body) => (body.includes('<CompleteMultipartUpload') ? body.replace(/<Part>(?:(?!<Part>)[\s\S])*<\/Part>(?=\s*<\/CompleteMultipartUpload>)/, '') : body) });
  t.teardown(() => lists.close());
  const viaLists = createMinioClient({ minioEndpoint: lists.endpoint, ...creds });
  const err3 = await uploadStream(viaLists, bucket, 'datasets/tamper/list.bin', parts(), retry, { partBytes: 5 * MIB, sha256: false }).catch((e: unknown) => e);
  t.ok(lists.tampered >= 1, 'the list of parts was cut on the way');
  t.ok(err3 instanceof Error, `the upload whose list of parts changed fails (${String((err3 as Error).message).slice(0, 100)})`);
  t.same(await listObjects(direct, bucket, 'datasets/tamper/', { retries: 1 }), [], 'and stores nothing');

  // Untouched, the same puts go through, and a single PUT's checksum is what MinIO kept.
  const clean = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
  t.teardown(() => clean.close());
  const ok = createMinioClient({ minioEndpoint: clean.endpoint, ...creds });
  await uploadBuffer(ok, bucket, 'datasets/clean/one.bin', one, retry);
  t.equal((await objectChecksum(direct, bucket, 'datasets/clean/one.bin', retry)).sha256, sha(one), "the SHA-256 MinIO checked and kept is the body's");
  const got = await uploadStream(ok, bucket, 'datasets/clean/parts.bin', parts(), retry, { partBytes: 5 * MIB, sha256: false });
  t.equal(got.bytes, 10 * MIB + 1000, 'the multipart upload went through whole');
  t.equal(got.sha256, null, "and its whole SHA-256 was not computed, as asked (its parts' were)");
});

t.test('a part carries SHA-256 over plain http (a CRC-32 could be matched by whoever changes the bytes), a CRC-32 only over TLS', async (t) => {
  const pieces = [randomBytes(1000), randomBytes(1), randomBytes(70_000)];
  const whole = Buffer.concat(pieces);
  t.same(partChecksum(pieces, false), { 'x-amz-checksum-sha256': createHash('sha256').update(whole).digest('base64') }, 'http: the SHA-256 of the pieces in order');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(whole));
  t.same(partChecksum(pieces, true), { 'x-amz-checksum-crc32': crc.toString('base64') }, 'TLS: the CRC-32 of the pieces in order, as one');
});
