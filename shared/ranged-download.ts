// A large object's download as parallel ranged GETs (issue 21): one GET stream is bound by one TCP
// connection and one core's worth of MinIO's reads, several ranges at once fill the link. Every range
// goes straight to its offset in the `.part` file and into the SHA-256 in order, from the same buffer:
// written and hashed in one pass, nothing read back. A range whose connection drops continues from the
// byte it reached (a Range from there), so a drop costs what was in flight, not the object. Every range
// carries If-Match with the listed ETag: an object replaced halfway fails PreconditionFailed (permanent)
// instead of stitching two versions together.
import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type * as Minio from 'minio';
import { mapBounded } from './bounded.js';
import { downloadObject, withStorageRetry, type RetryOptions } from './storage.js';

/** Objects above this are fetched in ranges of this size. Big enough that a range's request is noise. */
export const RANGE_BYTES = 8 * 1024 * 1024;
/** Ranges of one object in flight at once. */
export const RANGES_IN_FLIGHT = 4;

export interface RangedOptions {
  /** Range size (tests use a small one); default RANGE_BYTES. */
  rangeBytes?: number;
  /** Ranges in flight; default RANGES_IN_FLIGHT. */
  parallel?: number;
}

/** A range that ended early: the connection dropped. Retried from where it stopped. */
class ShortRange extends Error {}

/**
 * Downloads `key` (of `size` bytes as listed, with ETag `etag`; '' skips the If-Match) to `dest`,
 * atomically (a `.part` file renamed). Objects of at most one range are one GET (downloadObject). Resolves
 * with the bytes written and their SHA-256.
 */
export async function downloadRanged(
  client: Minio.Client, bucket: string, key: string, dest: string, size: number, etag: string, retry: RetryOptions, o: RangedOptions = {},
): Promise<{ bytes: number; sha256: string }> {
  const rangeBytes = o.rangeBytes ?? RANGE_BYTES;
  if (size <= rangeBytes) return downloadObject(client, bucket, key, dest, retry);
  const parallel = Math.max(1, o.parallel ?? RANGES_IN_FLIGHT);
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.part`;
  const fh = await open(tmp, 'w', 0o600);
  const ranges = Math.ceil(size / rangeBytes);
  const hash = createHash('sha256');
  // Ranges fetched but not yet hashed (they came ahead of an earlier one), and the next one to hash.
  // A range is only started within `window` of the hash cursor, so what waits in memory is bounded.
  const waiting = new Map<number, Buffer>();
  let hashed = 0;
  const window = parallel * 2;
  let wake: (() => void)[] = [];
  let stopped = false; // a range failed: the others waiting for room give up rather than wait forever
  const wakeAll = () => { const w = wake; wake = []; for (const r of w) r(); };
  const room = async (i: number) => {
    while (!stopped && i >= hashed + window) await new Promise<void>((r) => wake.push(r));
    if (stopped) throw new Error('stopped: another range failed');
  };
  try {
    await mapBounded(Array.from({ length: ranges }, (_, i) => i), parallel, (i) => fetchRange(i).catch((err: unknown) => {
      stopped = true;
      wakeAll();
      throw err;
    }), retry.signal);
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  await rename(tmp, dest);
  return { bytes: size, sha256: hash.digest('hex') };

  async function fetchRange(i: number): Promise<void> {
    await room(i);
    const start = i * rangeBytes;
    const len = Math.min(rangeBytes, size - start);
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    await withStorageRetry(`download ${key} bytes ${start}-${start + len - 1}`, async () => {
      const headers: Record<string, string> = { Range: `bytes=${start + got}-${start + len - 1}` };
      if (etag) headers['If-Match'] = `"${etag}"`;
      const res = await client.makeRequestAsync({ method: 'GET', bucketName: bucket, objectName: key, headers }, '', [206]);
      try {
        for await (const c of res as AsyncIterable<Buffer>) {
          retry.signal?.throwIfAborted();
          if (got + c.length > len) throw new Error(`${key}: the server sent more than the range asked`);
          c.copy(buf, got);
          got += c.length;
        }
      } finally {
        res.destroy();
      }
      if (got < len) throw new ShortRange(`${key}: range ${start}-${start + len - 1} ended after ${got} bytes`);
    }, retry);
    for (let w = 0; w < len;) w += (await fh.write(buf, w, len - w, start + w)).bytesWritten;
    waiting.set(i, buf);
    while (waiting.has(hashed)) {
      hash.update(waiting.get(hashed)!);
      waiting.delete(hashed);
      hashed++;
    }
    wakeAll();
  }
}
