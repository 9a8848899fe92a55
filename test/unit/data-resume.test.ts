// A pull cut off mid-object resumes (issue 21): the agent downloads a file it keeps into its data cache
// first, written strictly in order, so what a dropped connection or an agent restart leaves is a prefix of
// the object; the next pull of the same object (same key, ETag and size) hashes that prefix and asks only
// for the rest. Checked against the real MinIO through a TCP proxy that cuts a connection mid-object and
// counts the bytes that came down; a new DataCache on the same folder is the agent after a restart.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createMinioClient, ensureBucket, removePrefix, uploadBuffer } from '../../shared/storage.js';
import { downloadRanged } from '../../shared/ranged-download.js';
import { DataCache } from '../../agent/data-cache.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const endpoint = new URL(process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000');
const creds = { minioAccessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '' };
const bucket = `trainyard-data-resume-${process.pid}-${Date.now()}`;
const direct = createMinioClient({ minioEndpoint: endpoint.href, ...creds });
const MIB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const partials = (work: string) => readdirSync(path.join(work, 'data-cache')).filter((n) => n.endsWith('.part'));

t.before(() => ensureBucket(direct, bucket, { retries: 3 }));
t.teardown(async () => {
  await removePrefix(direct, bucket, '', { retries: 1 }).catch(() => {});
  await direct.removeBucket(bucket).catch(() => {});
});

// A connection is cut once it has carried `cut` bytes: mid-object for one GET, mid-range for ranges (each
// range is a connection of its own).
for (const c of [{ how: 'one GET', ranged: {}, cut: 2 * MIB }, { how: 'parallel ranges', ranged: { rangeBytes: MIB / 2, parallel: 4 }, cut: MIB / 4 }]) {
  t.test(`a pull cut off mid-object (${c.how}) continues after an agent restart from the bytes on disk`, async (t) => {
    const key = `datasets/r-${c.how.replace(' ', '-')}/blob.bin`;
    const prefix = key.slice(0, key.lastIndexOf('/') + 1);
    const body = randomBytes(3 * MIB + 4321);
    await uploadBuffer(direct, bucket, key, body, { retries: 1 });
    const proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
    t.teardown(() => proxy.close());
    const via = createMinioClient({ minioEndpoint: proxy.endpoint, ...creds });
    const work = mkdtempSync(path.join(os.tmpdir(), 'ty-resume-'));

    proxy.dropAfter(c.cut); // no retry: the pull fails
    const err = await new DataCache(work, 64 * MIB).makeLocal(via, bucket, prefix, path.join(work, 'run1'), { retries: 0 }, c.ranged).catch((e: unknown) => e);
    t.match(err, { code: 'STORAGE_ERROR' }, 'the first pull failed on the dropped connection');
    t.equal(proxy.dropped, 1);
    const left = partials(work);
    t.equal(left.length, 1, 'it left its partial file in the cache folder');
    const had = statSync(path.join(work, 'data-cache', left[0]!)).size;
    t.ok(had > 0 && had < body.length, `a prefix of the object (${had} of ${body.length} bytes)`);
    t.ok(readFileSync(path.join(work, 'data-cache', left[0]!)).equals(body.subarray(0, had)), 'and exactly the object\'s first bytes');

    // The agent restarted: a new cache object on the same folder; the connection holds this time.
    proxy.reset();
    const before = proxy.down;
    const made = await new DataCache(work, 64 * MIB).makeLocal(via, bucket, prefix, path.join(work, 'run2'), { retries: 0 }, c.ranged);
    const fetched = proxy.down - before;
    t.equal(made.resumedBytes, had, 'continued from the bytes on disk');
    t.ok(fetched < body.length - had + 64 * 1024, `fewer bytes fetched the second time: ${fetched} for the ${body.length - had} missing`);
    t.ok(readFileSync(path.join(work, 'run2', 'blob.bin')).equals(body), 'the file is whole and right');
    t.equal(statSync(path.join(work, 'run2', 'blob.bin')).mode & 0o044, 0o044, 'readable by the run\'s group and others, as downloadObject writes (a run uid reads it through the folder\'s group)');
    t.equal(made.entries[0]!.sha256, sha(body), 'its hash covers the resumed prefix too');
    t.same(partials(work), [], 'no partial file left');
    // And it is a cache entry now: a third pull downloads nothing.
    const third = await new DataCache(work, 64 * MIB).makeLocal(via, bucket, prefix, path.join(work, 'run3'), { retries: 0 }, c.ranged);
    t.equal(third.hits, 1);
  });
}

t.test('an object changed since the cut-off pull starts over, and the old prefix is never mixed in', async (t) => {
  const key = 'datasets/changed/blob.bin';
  const one = randomBytes(3 * MIB);
  await uploadBuffer(direct, bucket, key, one, { retries: 1 });
  const proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
  t.teardown(() => proxy.close());
  const via = createMinioClient({ minioEndpoint: proxy.endpoint, ...creds });
  const work = mkdtempSync(path.join(os.tmpdir(), 'ty-resume-'));
  proxy.dropAfter(2 * MIB);
  await t.rejects(new DataCache(work, 64 * MIB).makeLocal(via, bucket, 'datasets/changed/', path.join(work, 'run1'), { retries: 0 }));
  t.equal(partials(work).length, 1);

  const two = randomBytes(3 * MIB); // same key and size, other bytes: another ETag
  await uploadBuffer(direct, bucket, key, two, { retries: 1 });
  const made = await new DataCache(work, 64 * MIB).makeLocal(via, bucket, 'datasets/changed/', path.join(work, 'run2'), { retries: 0 });
  t.equal(made.resumedBytes, 0, 'started from zero');
  t.ok(readFileSync(path.join(work, 'run2', 'blob.bin')).equals(two), 'the new object, whole');
  t.equal(made.entries[0]!.sha256, sha(two));
});

t.test('a partial file of the same name but longer than the object is not continued', async (t) => {
  const key = 'datasets/long/blob.bin';
  const body = randomBytes(MIB + 7);
  const { etag } = await uploadBuffer(direct, bucket, key, body, { retries: 1 });
  const dest = path.join(mkdtempSync(path.join(os.tmpdir(), 'ty-resume-')), 'blob.bin');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(`${dest}.part`, randomBytes(2 * MIB));
  const got = await downloadRanged(direct, bucket, key, dest, body.length, etag, { retries: 0 }, { resume: true });
  t.equal(got.resumedFrom, 0);
  t.ok(readFileSync(dest).equals(body));
  t.equal(got.sha256, sha(body));
});
