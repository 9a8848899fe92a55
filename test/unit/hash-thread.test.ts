// The hash thread (shared/hash-thread.ts) must give exactly the SHA-256 the main thread would: whatever the
// chunk sizes (smaller than a slot, across slots, several slots long), with several jobs interleaved on
// its one worker, and with the caller reusing its buffers once update() resolves. A job given up refuses
// more, and the worker goes on serving the others; a worker that dies fails the jobs open on it (none
// is left waiting) and the next job gets a new one.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { hashFile, hashFor, inThreadHash, stopHashThread, threadHash, HASH_THREAD_MIN_BYTES } from '../../shared/hash-thread.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Splits `data` into chunks of the sizes given, cycling through them. */
function chunked(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - at);
    out.push(data.subarray(at, at + n));
    at += n;
  }
  return out;
}

t.test('digests match the main thread for any chunking', async (t) => {
  const data = randomBytes(9 * 1024 * 1024 + 12345);
  const want = sha(data);
  for (const sizes of [[65536], [1, 2, 3, 65536], [3 * 1024 * 1024 + 7], [1024 * 1024], [100, 5 * 1024 * 1024, 65536]]) {
    const h = threadHash();
    // Batches of several chunks at once, as the download's writer hands them over.
    const chunks = chunked(data, sizes);
    for (let i = 0; i < chunks.length; i += 7) await h.update(chunks.slice(i, i + 7));
    t.equal(await h.digest(), want, `chunks of ${sizes.join(', ')} bytes`);
  }
  const empty = threadHash();
  t.equal(await empty.digest(), sha(Buffer.alloc(0)), 'nothing added: the empty digest');
});

t.test('buffers reused after update() resolves do not change the digest', async (t) => {
  const data = randomBytes(6 * 1024 * 1024);
  const h = threadHash();
  const buf = Buffer.alloc(256 * 1024);
  for (let at = 0; at < data.length; at += buf.length) {
    data.copy(buf, 0, at, at + buf.length);
    await h.update([buf]);
    buf.fill(0xaa); // what a socket's reused buffer would do
  }
  t.equal(await h.digest(), sha(data));
});

t.test('several jobs at once on the one worker keep their bytes apart', async (t) => {
  const datas = [0, 1, 2, 3, 4].map((i) => randomBytes(2 * 1024 * 1024 + i * 333_333));
  const got = await Promise.all(datas.map(async (d, i) => {
    const h = threadHash();
    for (const c of chunked(d, [65536 * (i + 1)])) await h.update([c]);
    return h.digest();
  }));
  t.same(got, datas.map(sha));
});

t.test('a job given up refuses more, and the worker serves the next one', async (t) => {
  const h = threadHash();
  await h.update([randomBytes(5 * 1024 * 1024)]);
  h.close();
  await t.rejects(h.update([Buffer.from('x')]), /after close/);
  const next = threadHash();
  const d = randomBytes(1024 * 1024);
  await next.update([d]);
  t.equal(await next.digest(), sha(d));
});

t.test('hashFor: small objects on the calling thread, large on the worker, the same digest', async (t) => {
  const d = randomBytes(HASH_THREAD_MIN_BYTES);
  for (const h of [hashFor(d.length), hashFor(100), inThreadHash()]) {
    await h.update([d]);
    t.equal(await h.digest(), sha(d));
  }
});

t.test('a hash thread that dies fails its open jobs, and the next job gets a new one', async (t) => {
  const waiting = threadHash();
  const big = randomBytes(8 * 1024 * 1024);
  const open = threadHash();
  await open.update([randomBytes(1024)]);
  await stopHashThread();
  await t.rejects(open.digest(), /hash thread exited/, 'a digest asked of a dead thread fails');
  await t.rejects(waiting.update([big]), /hash thread exited/, 'a job open on it fails its next update too');
  const next = threadHash();
  const d = randomBytes(3 * 1024 * 1024);
  await next.update([d]);
  t.equal(await next.digest(), sha(d), 'a new thread serves the next job');
});

t.test('hashFile: a file read and hashed on its own thread, with the bytes it had; a missing file fails with its code', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ty-hashfile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Across the thread's 1 MiB reads and not a multiple of them; and nothing at all.
  for (const size of [3 * 1024 * 1024 + 77, 0, 10]) {
    const data = randomBytes(size);
    const file = path.join(dir, `f${size}`);
    writeFileSync(file, data);
    t.same(await hashFile(file), { sha256: sha(data), size }, `${size} bytes`);
  }
  // Several at once come back each with its own digest (the jobs run one after another on the thread).
  const files = [1, 2, 3].map((i) => { const d = randomBytes(i * 700_000); const f = path.join(dir, `m${i}`); writeFileSync(f, d); return { f, want: sha(d) }; });
  t.same((await Promise.all(files.map(({ f }) => hashFile(f)))).map((r) => r.sha256), files.map((x) => x.want));
  await t.rejects(hashFile(path.join(dir, 'nope')), { code: 'ENOENT' });
  // The thread goes on after a failed job.
  t.equal((await hashFile(files[0]!.f)).sha256, files[0]!.want);
});
