// An object uploaded from a stream of unknown length (issue 21): a package version zipped straight into
// the bucket instead of written whole to disk and read back. The stream is cut into PART_BYTES parts,
// hashed as they are cut, and sent PARTS_IN_FLIGHT at once while the next ones are made (the zip is being
// written while its first parts go up). A stream that ends within one part is one PUT carrying its
// SHA-256 (MinIO checks it and keeps it, as for uploadBuffer); a longer one is a multipart upload of its
// own, completed only once every part is in: a failure, or a stream past `maxBytes`, aborts it and
// nothing is stored.
import { createHash } from 'node:crypto';
import type * as Minio from 'minio';
import { ErrorCodes, TrainyardError } from './errors.js';
import { PART_BYTES, putOnce, putParts, withStorageRetry, type PutOptions, type RetryOptions } from './storage.js';

export interface StreamUploadOptions extends Omit<PutOptions, 'sha256'> {
  /** More bytes than this fail the upload (nothing stored); default none. */
  maxBytes?: number;
  /** Part size (tests use a small one, at least MinIO's 5 MiB); default PART_BYTES. */
  partBytes?: number;
  /**
   * false: a multipart upload's SHA-256 of the whole is not computed (sha256 null): each part carries a
   * checksum of its own, and the whole's is a second pass over every byte on this thread, for a caller
   * that has no use for it (a dataset push). Default true.
   */
  sha256?: boolean;
}

/** Uploads everything `source` yields to `key`; resolves with its size and SHA-256 (hex). */
export async function uploadStream(
  client: Minio.Client, bucket: string, key: string, source: AsyncIterable<Buffer>, retry: RetryOptions, o?: StreamUploadOptions & { sha256?: true },
): Promise<{ bytes: number; sha256: string }>;
export async function uploadStream(
  client: Minio.Client, bucket: string, key: string, source: AsyncIterable<Buffer>, retry: RetryOptions, o: StreamUploadOptions,
): Promise<{ bytes: number; sha256: string | null }>;
export async function uploadStream(
  client: Minio.Client, bucket: string, key: string, source: AsyncIterable<Buffer>, retry: RetryOptions, o: StreamUploadOptions = {},
): Promise<{ bytes: number; sha256: string | null }> {
  const partBytes = o.partBytes ?? PART_BYTES;
  const hash = o.sha256 === false ? null : createHash('sha256');
  const it = source[Symbol.asyncIterator]();
  let carry: Buffer[] = [];
  let carried = 0;
  let total = 0;
  let ended = false;
  /** The next part, as the chunks it came in: partBytes bytes, fewer at the end, null once nothing is left. */
  const next = async (): Promise<Buffer[] | null> => {
    while (!ended && carried < partBytes) {
      retry.signal?.throwIfAborted();
      const r = await it.next();
      if (r.done) { ended = true; break; }
      const c = r.value;
      total += c.length;
      if (o.maxBytes !== undefined && total > o.maxBytes) {
        throw new TrainyardError(ErrorCodes.ResourceExhausted, `${key}: more than ${o.maxBytes} bytes; nothing of it was stored`);
      }
      hash?.update(c);
      carry.push(c);
      carried += c.length;
    }
    if (carried === 0) return null;
    // Not copied into one buffer: the chunks go as they are (putParts), the last one cut where the part ends.
    const part: Buffer[] = [];
    let need = partBytes;
    while (need > 0 && carry.length) {
      const c = carry[0]!;
      if (c.length <= need) { part.push(c); carry.shift(); need -= c.length; } else { part.push(c.subarray(0, need)); carry[0] = c.subarray(need); need = 0; }
    }
    carried -= partBytes - need;
    return part;
  };
  try {
    const firstChunks = await next();
    const second = await next();
    if (!second) {
      const first = !firstChunks ? Buffer.alloc(0) : firstChunks.length === 1 ? firstChunks[0]! : Buffer.concat(firstChunks);
      const sha256 = hash ? hash.digest('hex') : createHash('sha256').update(first).digest('hex');
      await withStorageRetry(`upload ${key}`, () => putOnce(client, bucket, key, first, { ...(o.headers ? { headers: o.headers } : {}), sha256 }), retry);
      return { bytes: first.length, sha256 };
    }
    const queue: (Buffer[] | null)[] = [firstChunks, second];
    const bytes = await putParts(client, bucket, key, async () => (queue.length ? queue.shift()! : next()), o.headers ? { headers: o.headers } : {}, retry);
    return { bytes, sha256: hash ? hash.digest('hex') : null };
  } finally {
    if (!ended) await it.return?.().catch(() => {});
  }
}
