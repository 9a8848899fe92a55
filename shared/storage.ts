// Object storage: the MinIO client, the bucket's key layout (documented in the README), and transfers
// that retry with backoff and stop on an AbortSignal.
import * as Minio from 'minio';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, stat, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AnchoredDir, AnchoredFile } from './anchored-dir.js';
import { ErrorCodes, TrainyardError, errorMessage } from './errors.js';
import { retry, RetriesExhausted } from './retry.js';

export interface StorageOptions {
  minioEndpoint: string;
  minioAccessKey: string;
  minioSecretKey: string;
  /** With temporary (STS) credentials: the session token that goes with them. */
  sessionToken?: string;
}

export function createMinioClient(o: StorageOptions): Minio.Client {
  const url = new URL(o.minioEndpoint);
  return new Minio.Client({
    endPoint: url.hostname,
    port: url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
    useSSL: url.protocol === 'https:',
    accessKey: o.minioAccessKey,
    secretKey: o.minioSecretKey,
    ...(o.sessionToken ? { sessionToken: o.sessionToken } : {}),
    region: 'us-east-1',
  });
}

/** The bucket's layout, in one place. */
export const keys = {
  /** Content-addressed, so the zip is stored before (and outside) the transaction that numbers it. */
  uploadedPackage: (name: string, sha256: string) => `packages/${name}/${sha256}/package.zip`,
  datasetPrefix: (name: string, sub = '') => `datasets/${name}/${sub ? sub + '/' : ''}`,
  datasetFile: (name: string, rel: string) => `datasets/${name}/${rel}`,
  attemptPrefix: (runId: string, attempt: number) => `runs/${runId}/attempt-${attempt}/`,
};
/** Names inside an attempt's prefix. */
export const outputNames = {
  package: 'package.zip',
  artifacts: 'artifacts/',
  trainData: 'train_data/',
  testData: 'test_data/',
  results: '_results.json',
  lineage: '_lineage.json',
} as const;

const permanentS3Codes = new Set(['NoSuchKey', 'NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'NotFound', 'InvalidBucketName']);

/** Local disk errors that no retry fixes: the transfer stops at once instead of backing off for seconds. */
export const diskFullCodes: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT']);

export function isPermanentStorageError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return typeof code === 'string' && (permanentS3Codes.has(code) || diskFullCodes.has(code));
}

export interface RetryOptions {
  retries: number;
  signal?: AbortSignal;
  baseDelayMs?: number;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `op` until it succeeds, a permanent error, the retries are spent, or the signal aborts (then the
 * signal's reason is thrown). A permanent refusal (NoSuchKey, AccessDenied, a full local disk) throws
 * STORAGE_REJECTED at once: no retry can change it. Retries spent on a transient error throw STORAGE_ERROR,
 * which callers may retry later (the gRPC boundary makes it UNAVAILABLE).
 */
export async function withStorageRetry<T>(what: string, op: () => Promise<T>, o: RetryOptions): Promise<T> {
  let tries = 0;
  try {
    return await retry(() => { tries++; return op(); }, {
      retries: o.retries,
      baseMs: o.baseDelayMs ?? 250,
      capMs: 8000,
      jitter: 0.25,
      isRetryable: (err) => !isPermanentStorageError(err),
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onRetry ? { onRetry: o.onRetry } : {}),
    });
  } catch (e) {
    if (o.signal?.aborted) throw e;
    const err = e instanceof RetriesExhausted ? e.cause : e;
    const code = isPermanentStorageError(err) ? ErrorCodes.StorageRejected : ErrorCodes.StorageError;
    throw new TrainyardError(code, `storage error on ${what}${tries > 1 ? ` after ${tries} tries` : ''}: ${errorMessage(err)}`, { cause: err });
  }
}

export async function ensureBucket(client: Minio.Client, bucket: string, retry: RetryOptions): Promise<void> {
  await withStorageRetry(`bucket ${bucket}`, async () => {
    if (!(await client.bucketExists(bucket))) {
      try {
        await client.makeBucket(bucket, 'us-east-1');
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'BucketAlreadyOwnedByYou' && code !== 'BucketAlreadyExists') throw err;
      }
    }
  }, retry);
}

export interface ObjectEntry {
  key: string;
  size: number;
  /** The object's ETag as listed (quotes stripped; '' when the server gave none). */
  etag: string;
}

export async function listObjects(client: Minio.Client, bucket: string, prefix: string, retry: RetryOptions): Promise<ObjectEntry[]> {
  return withStorageRetry(`list ${prefix}`, async () => {
    const out: ObjectEntry[] = [];
    const stream = client.listObjectsV2(bucket, prefix, true);
    for await (const item of stream as AsyncIterable<{ name?: string; size?: number; etag?: string }>) {
      if (item.name) out.push({ key: item.name, size: item.size ?? 0, etag: (item.etag ?? '').replace(/^"|"$/g, '') });
    }
    return out;
  }, retry);
}

export async function removePrefix(client: Minio.Client, bucket: string, prefix: string, retry: RetryOptions): Promise<number> {
  const objects = await listObjects(client, bucket, prefix, retry);
  for (let i = 0; i < objects.length; i += 1000) {
    const batch = objects.slice(i, i + 1000).map((o) => o.key);
    await withStorageRetry(`remove ${prefix}`, () => client.removeObjects(bucket, batch), retry);
  }
  return objects.length;
}

export type Progress = (doneBytes: number, totalBytes: number) => void;

/** Where an object under `prefix` goes in `dir` (its key relative to the prefix); null for a folder marker. Refuses a key that leaves `dir`. */
export function localPathOf(key: string, prefix: string, dir: string): { rel: string; dest: string } | null {
  const rel = key.slice(prefix.length);
  if (!rel || rel.endsWith('/')) return null;
  const dest = path.join(dir, ...rel.split('/'));
  if (!dest.startsWith(path.resolve(dir) + path.sep)) throw new TrainyardError(ErrorCodes.InvalidArgument, `object key ${key} leaves ${dir}`);
  return { rel: path.relative(dir, dest).split(path.sep).join('/'), dest };
}

/** Downloads one object to `dest`, atomically (a `.part` file renamed); resolves with its size and SHA-256, hashed as it was written. */
export async function downloadObject(client: Minio.Client, bucket: string, key: string, dest: string, retry: RetryOptions): Promise<{ bytes: number; sha256: string }> {
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.part`;
  const got = await withStorageRetry(`download ${key}`, async () => {
    const body = await client.getObject(bucket, key);
    const hash = createHash('sha256');
    let bytes = 0;
    await pipeline(body, async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        hash.update(c);
        bytes += c.length;
        yield c;
      }
    }, createWriteStream(tmp), { signal: retry.signal });
    return { bytes, sha256: hash.digest('hex') };
  }, retry);
  await rename(tmp, dest);
  return got;
}

export async function uploadFile(client: Minio.Client, bucket: string, key: string, file: string, retry: RetryOptions): Promise<number> {
  const { size } = await stat(file);
  await withStorageRetry(`upload ${key}`, () => client.fPutObject(bucket, key, file, {}), retry);
  return size;
}

/** Uploads bytes held in memory (`meta`: its metadata, such as Content-Type); resolves with their size. */
export async function uploadBuffer(client: Minio.Client, bucket: string, key: string, body: Buffer, retry: RetryOptions, meta?: Minio.ItemBucketMetadata): Promise<number> {
  await withStorageRetry(`upload ${key}`, () => client.putObject(bucket, key, body, body.length, meta), retry);
  return body.length;
}

/**
 * Every regular file under dir, as '/'-separated relative paths; symlinks are skipped. For a user's own
 * folder (the CLI's push): a folder a run can still change is walked with AnchoredDir instead.
 */
export async function walkFiles(dir: string, exclude: (rel: string) => boolean = () => false): Promise<{ rel: string; size: number }[]> {
  const out: { rel: string; size: number }[] = [];
  async function walk(abs: string, rel: string): Promise<void> {
    const entries = await readdir(abs, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (exclude(r)) continue;
      if (e.isDirectory()) await walk(path.join(abs, e.name), r);
      else if (e.isFile()) out.push({ rel: r, size: (await stat(path.join(abs, e.name))).size });
    }
  }
  await walk(dir, '');
  return out;
}

/**
 * Uploads the files AnchoredDir.files() found below `dir` to `prefix`, each read from a descriptor opened
 * from `dir` down (shared/anchored-dir.ts): a folder swapped for a link meanwhile fails the upload instead
 * of sending what the link names.
 */
export async function uploadDir(
  client: Minio.Client, bucket: string, dir: AnchoredDir, files: readonly AnchoredFile[], prefix: string, retry: RetryOptions, progress?: Progress,
): Promise<{ files: number; bytes: number }> {
  const total = files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  for (const f of files) {
    const fh = await dir.openFile(f);
    try {
      // A fresh stream per try (a retry starts again from byte 0), of exactly the size that was counted.
      await withStorageRetry(`upload ${prefix + f.rel}`, () => client.putObject(bucket, prefix + f.rel, bytesOf(fh, f.size), f.size), retry);
    } finally {
      await fh.close();
    }
    done += f.size;
    progress?.(done, total);
  }
  return { files: files.length, bytes: total };
}

/** The first `size` bytes of an open file, as a stream that leaves the handle open. */
export function bytesOf(fh: FileHandle, size: number, o: { autoClose?: boolean } = {}): Readable {
  return size === 0 ? Readable.from([]) : fh.createReadStream({ start: 0, end: size - 1, autoClose: o.autoClose ?? false });
}

export { createReadStream };
