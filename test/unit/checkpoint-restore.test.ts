// A checkpoint restored into checkpoint_directory (agent/checkpoints.ts restore), against the real MinIO:
// exactly the files its pointer lists, large ones in parallel ranges as a dataset's are, and a file that
// is not of the size listed, or is gone (an empty one included), fails the restore as STORAGE_REJECTED
// (permanent: no retry changes it) rather than coming down cut, padded or missing.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RunCheckpoints } from '../../agent/checkpoints.js';
import type { CheckpointPointer } from '../../shared/checkpoints.js';
import { createMinioClient, ensureBucket, removePrefix, uploadBuffer } from '../../shared/storage.js';

const endpoint = new URL(process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000');
const client = createMinioClient({ minioEndpoint: endpoint.href, minioAccessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '' });
const bucket = `trainyard-ckpt-restore-${process.pid}-${Date.now()}`;
const MIB = 1024 * 1024;

t.before(() => ensureBucket(client, bucket, { retries: 3 }));
t.teardown(async () => {
  await removePrefix(client, bucket, '', { retries: 1 }).catch(() => {});
  await client.removeBucket(bucket).catch(() => {});
});

function checkpoints(lines: string[]): RunCheckpoints {
  return new RunCheckpoints({
    runId: 'run_restore', attempt: 2, bucket, attemptDir: mkdtempSync(path.join(os.tmpdir(), 'ty-ckpt-')), folderName: 'checkpoint',
    storage: () => Promise.resolve(client), retry: (signal) => ({ retries: 2, baseDelayMs: 10, signal }),
    say: (l) => lines.push(l), warn: () => {},
  });
}

const pointer = (prefix: string, files: { path: string; size: number }[]): CheckpointPointer => ({
  version: 1, run_id: 'run_restore', attempt: 1, seq: 3, prefix, committed_at: 1_800_000_000, bytes: files.reduce((n, f) => n + f.size, 0), files, trigger: 'commit',
});

t.test('the files the pointer lists, whole: a large one, a small one and an empty one', async (t) => {
  const prefix = 'runs/run_restore/checkpoints/attempt-1/3/';
  const big = randomBytes(9 * MIB + 77);
  const small = randomBytes(5000);
  await uploadBuffer(client, bucket, `${prefix}model.bin`, big, { retries: 1 });
  await uploadBuffer(client, bucket, `${prefix}opt/state.json`, small, { retries: 1 });
  await uploadBuffer(client, bucket, `${prefix}EMPTY`, Buffer.alloc(0), { retries: 1 });
  const lines: string[] = [];
  const c = checkpoints(lines);
  const got = await c.restore(pointer(prefix, [{ path: 'model.bin', size: big.length }, { path: 'opt/state.json', size: small.length }, { path: 'EMPTY', size: 0 }]), new AbortController().signal);
  t.ok(readFileSync(path.join(c.folder, 'model.bin')).equals(big), 'the large file whole');
  t.ok(readFileSync(path.join(c.folder, 'opt', 'state.json')).equals(small), 'the small one');
  t.equal(readFileSync(path.join(c.folder, 'EMPTY')).length, 0, 'the empty one');
  t.match(got, { run_id: 'run_restore', attempt: 1, seq: 3, files: 3 });
  t.match(lines.join('\n'), /resumed from checkpoint 3 of run_restore attempt 1 \(3 files/);
});

t.test('a file not of the size listed, or gone, fails the restore as STORAGE_REJECTED', async (t) => {
  const prefix = 'runs/run_restore/checkpoints/attempt-1/4/';
  await uploadBuffer(client, bucket, `${prefix}a.bin`, randomBytes(2 * MIB), { retries: 1 });
  await uploadBuffer(client, bucket, `${prefix}b.bin`, randomBytes(5000), { retries: 1 });
  const cases: [string, { path: string; size: number }][] = [
    ['larger than listed (large)', { path: 'a.bin', size: MIB }],
    ['smaller than listed (large)', { path: 'a.bin', size: 3 * MIB }],
    ['larger than listed (small)', { path: 'b.bin', size: 4000 }],
    ['smaller than listed (small)', { path: 'b.bin', size: 6000 }],
    ['gone (listed empty)', { path: 'none', size: 0 }],
    ['gone (listed with bytes)', { path: 'none', size: 10 }],
    ['listed empty, not empty', { path: 'b.bin', size: 0 }],
  ];
  for (const [what, f] of cases) {
    const c = checkpoints([]);
    const err = await c.restore(pointer(prefix, [f]), new AbortController().signal).catch((e: unknown) => e);
    t.match(err, { code: 'STORAGE_REJECTED' }, `${what}: ${String((err as Error).message).slice(0, 140)}`);
    if (f.size === 0) t.same(existsSync(c.folder) ? readdirSync(c.folder) : [], [], `${what}: nothing of it was downloaded`);
  }
  const c = checkpoints([]);
  await t.rejects(c.restore(pointer(prefix, [{ path: 'a.bin', size: 0 }]), new AbortController().signal), { code: 'STORAGE_REJECTED', message: /has 2097152 bytes in the bucket, its pointer says 0/ });
  t.same(existsSync(c.folder) ? readdirSync(c.folder) : [], [], 'a large object listed empty is refused without being downloaded');
});
