// Storage transfers' retry (shared/storage.ts withStorageRetry, on shared/retry.ts) against the real
// MinIO: a permanent refusal (NoSuchKey) is STORAGE_REJECTED after one try, a transient failure that
// outlasts the retries is STORAGE_ERROR naming the tries, and the signal ends the waiting at once.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createMinioClient, downloadObject, ensureBucket, withStorageRetry } from '../../shared/storage.js';
import { ErrorCodes } from '../../shared/errors.js';

const endpoint = process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000';
const creds = { minioAccessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '' };
const bucket = `trainyard-agent-storage-${process.pid}-${Date.now()}`;
const minio = createMinioClient({ minioEndpoint: endpoint, ...creds, bucket });

t.before(() => ensureBucket(minio, bucket, { retries: 3 }));
t.teardown(() => minio.removeBucket(bucket).catch(() => {}));

t.test('a missing object is STORAGE_REJECTED after one try: no retry can make it appear', async (t) => {
  const retries: number[] = [];
  const dest = path.join(mkdtempSync(path.join(os.tmpdir(), 'ty-st-')), 'x');
  const started = Date.now();
  const err = await downloadObject(minio, bucket, 'packages/none/1.0/package.zip', dest, { retries: 6, onRetry: (_e, n) => retries.push(n) }).catch((e: unknown) => e);
  t.match(err, { code: ErrorCodes.StorageRejected, message: /storage error on download packages\/none\/1\.0\/package\.zip: / });
  t.equal((err as { cause?: { code?: string } }).cause?.code, 'NoSuchKey', 'the S3 error is the cause');
  t.same(retries, [], 'not retried');
  t.ok(Date.now() - started < 2000);
});

t.test('a transient failure that outlasts the retries is STORAGE_ERROR, after every try', async (t) => {
  const down = createMinioClient({ minioEndpoint: 'http://127.0.0.1:1', ...creds, bucket }); // nothing listens
  const retries: number[] = [];
  const err = await withStorageRetry('list runs/', () => down.bucketExists(bucket), { retries: 2, baseDelayMs: 10, onRetry: (_e, n) => retries.push(n) }).catch((e: unknown) => e);
  t.match(err, { code: ErrorCodes.StorageError, message: /storage error on list runs\/ after 3 tries: / });
  t.same(retries, [1, 2]);
});

t.test('the signal ends the retrying at once, with its reason', async (t) => {
  const down = createMinioClient({ minioEndpoint: 'http://127.0.0.1:1', ...creds, bucket });
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('attempt killed')), 200);
  const started = Date.now();
  await t.rejects(withStorageRetry('upload x', () => down.bucketExists(bucket), { retries: 50, baseDelayMs: 5000, signal: ac.signal }), { message: 'attempt killed' });
  t.ok(Date.now() - started < 2000, 'not after the 5 s backoff');
});
