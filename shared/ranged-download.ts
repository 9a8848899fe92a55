// A large object's download as parallel ranged GETs (issue 21): one GET stream is bound by one TCP
// connection and one core's worth of MinIO's reads, several ranges at once fill the link. Ranges arrive in
// any order but the `.part` file is written strictly in order, each chunk written and hashed from the same
// buffer as soon as every byte before it is in: written and hashed in one pass, nothing read back, and the
// file's length is always a prefix of the object that was checked to be whole. That is what makes a pull
// resumable: a later try (after a drop, or an agent restart) continues from the file's length with a Range
// from there, hashing only the prefix it finds. A range whose connection drops continues from the byte it
// reached. Every range carries If-Match with the listed ETag: an object replaced halfway fails
// PreconditionFailed (permanent) instead of stitching two versions together, and the partial file goes.
//
// Profiled (issue 21, s4): the first version gathered each 8 MiB range in a buffer of its own, copied
// every chunk into it, wrote it at its offset and then hashed it: on a busy 2-core machine that was 3-5x
// slower than one plain GET per object (the copies, 8 MiB allocations and their GC, and write and hash
// queued behind whole ranges). Chunks are now kept as they came off the socket and written as they come.
// A large object's ranges are read from their sockets into reused slabs (rawGet, shared/raw-get.ts): the
// fresh 64 KiB Buffer Node allocates for each socket read, and the collection of them, had been most of
// the agent's CPU in a 1 GiB pull (about 3 of its 6 s). Each range is then a connection of its own.
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type * as Minio from 'minio';
import { mapBounded } from './bounded.js';
import { hashFor, type ByteHash } from './hash-thread.js';
import { rawGet } from './raw-get.js';
import { isPermanentStorageError, withStorageRetry, type RetryOptions } from './storage.js';

/** Objects above this are fetched in ranges of this size. Big enough that a range's request is noise. */
export const RANGE_BYTES = 8 * 1024 * 1024;
/** Ranges of one object in flight at once. */
export const RANGES_IN_FLIGHT = 4;

export interface RangedOptions {
  /** Range size (tests use a small one); default RANGE_BYTES. */
  rangeBytes?: number;
  /** Ranges in flight; default RANGES_IN_FLIGHT. 1 is one GET of the whole (rest of the) object. */
  parallel?: number;
  /**
   * Continue `${dest}.part` if it is there (it must be of this same object: the caller names `dest` after
   * the object's key, ETag and size), and keep it when the download fails other than permanently, so a
   * later call continues it. Without: a `.part` left over is started afresh, and removed on failure.
   */
  resume?: boolean;
  /**
   * `dest`'s folder is there already (the caller made it once for many files): not made again for each
   * (a pull of 20,000 files spent 20,000 mkdir calls on one folder). Made after all if it is gone.
   */
  folderMade?: boolean;
  /**
   * The mode `dest`'s folder is made with, when this call makes it (the umask applies): a cache the agent
   * keeps to itself (0700) must not come back 0755 after it was removed by hand.
   */
  folderMode?: number;
  /**
   * Hash the bytes as they are written (the default). false: not hashed (`sha256` null), for a caller that
   * hashes the file later, off the pull's path (agent/data-cache.ts, deferred hashes); a `.part` continued
   * is then taken by its length, not read.
   */
  hash?: boolean;
}

/**
 * What a download did: the file's bytes and SHA-256 (null when not asked for: RangedOptions hash), and how
 * many of them came from a `.part` already there.
 */
export interface Downloaded { bytes: number; sha256: string | null; resumedFrom: number }

/**
 * What the range being written holds before a write starts. One `writev` per socket chunk (64 KiB) cost
 * the agent's thread 0.33 s of CPU per GiB (a thread-pool hand-off each), one per 1 MiB 0.04 s.
 */
const WRITE_BYTES = 512 * 1024;
/** What the range being written may hold before its socket waits for the disk. */
const BATCH_BYTES = 2 * 1024 * 1024;
/**
 * A range's bytes are read from its socket into slabs of this size, each filled from its start until less
 * than MIN_READ is left and then given to the range as one chunk; a slab is reused once written.
 */
const SLAB_BYTES = 256 * 1024;
const MIN_READ = 64 * 1024;
/** Slabs kept for reuse (16 MiB, for every download of the process); more in flight are left to the collector. */
const SLABS_KEPT = 64;
/**
 * Objects from this size up are fetched with rawGet. A smaller one is a socket read or a few: it goes
 * through the client, whose connections are kept alive (a pull of 20,000 small files would otherwise
 * open 20,000 connections).
 */
export const RAW_GET_MIN_BYTES = 1024 * 1024;
const slabPool: Buffer[] = [];
/** The slabs' memory (a chunk is given back only if it is one of them). */
const slabMemory = new WeakSet<ArrayBufferLike>();
function takeSlab(): Buffer {
  const s = slabPool.pop();
  if (s) return s;
  const b = Buffer.allocUnsafeSlow(SLAB_BYTES);
  slabMemory.add(b.buffer);
  return b;
}
/** Gives back the slab that `c` is a view of, once nothing reads it (written and hashed, or never used). */
function giveSlab(c: Buffer): void {
  if (slabPool.length < SLABS_KEPT && slabMemory.has(c.buffer)) slabPool.push(Buffer.from(c.buffer, 0, SLAB_BYTES));
}
/**
 * How long a range's presigned URL is good for. It is signed just before it is sent and never leaves the
 * process; the length is for an agent whose clock is behind MinIO's (a request signed in headers is taken
 * 15 minutes either side; a presigned one is refused, AccessDenied, once its time is up by MinIO's clock).
 */
const PRESIGN_SECONDS = 6 * 3600;

/** Writes `bufs` (`n` bytes) at `at`, all of them (a short write continues). */
async function writeAll(fh: FileHandle, bufs: Buffer[], n: number, at: number): Promise<void> {
  let w = (await fh.writev(bufs, at)).bytesWritten;
  if (w < n) {
    const rest = Buffer.concat(bufs).subarray(w);
    while (w < n) w += (await fh.write(rest, w - (n - rest.length), n - w, at + w)).bytesWritten;
  }
}

/** A range that ended early: the connection dropped. Retried from where it stopped. */
class ShortRange extends Error {}

/** One range being fetched: chunks as they came, waiting to be written in order. */
interface Range { start: number; len: number; chunks: Buffer[]; got: number; held: number; done: boolean }

/**
 * Downloads `key` (of `size` bytes as listed, with ETag `etag`; '' skips the If-Match) to `dest`,
 * atomically (a `.part` file renamed). Resolves with the bytes written and their SHA-256.
 */
export async function downloadRanged(
  client: Minio.Client, bucket: string, key: string, dest: string, size: number, etag: string, retry: RetryOptions, o: RangedOptions = {},
): Promise<Downloaded> {
  const rangeBytes = o.rangeBytes ?? RANGE_BYTES;
  const folderOpts = { recursive: true, ...(o.folderMode !== undefined ? { mode: o.folderMode } : {}) };
  if (!o.folderMade) await mkdir(path.dirname(dest), folderOpts);
  const tmp = `${dest}.part`;
  // Large objects are hashed on the hash thread (shared/hash-thread.ts), off the thread reading sockets;
  // given up however the download ends (a no-op once digested).
  const hashed = o.hash !== false;
  const hash = hashed ? hashFor(size) : noHash;
  try {
    const from = !o.resume ? 0 : hashed ? await hashPrefix(tmp, size, hash, retry.signal) : await prefixLength(tmp, size);
    // Readable as downloadObject's files are (0644): a run uid reads its data through the attempt folder's
    // group (the folder keeps others out); 0600 left every file of a run uid's data unreadable to it.
    const openPart = () => open(tmp, from > 0 ? 'r+' : 'w', 0o644);
    const fh = await openPart().catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' || !o.folderMade) throw err;
      await mkdir(path.dirname(dest), folderOpts); // removed meanwhile (by hand): made again
      return openPart();
    });
    let sha256: string | null = null;
    try {
      if (from > 0) await fh.truncate(from); // nothing past the prefix that was hashed
      await fetchInOrder(client, bucket, key, fh, hash, from, size, etag, retry, {
        rangeBytes, parallel: size - from <= rangeBytes ? 1 : Math.max(1, o.parallel ?? RANGES_IN_FLIGHT),
      });
      await fh.close();
      if (hashed) sha256 = await hash.digest();
    } catch (err) {
      await fh.close().catch(() => {});
      if (!o.resume || isPermanentStorageError((err as { cause?: unknown }).cause ?? err)) await rm(tmp, { force: true });
      throw err;
    }
    await rename(tmp, dest);
    return { bytes: size, sha256, resumedFrom: from };
  } finally {
    hash.close();
  }
}

/** The hash of a download asked not to hash (RangedOptions hash: false): takes nothing. */
const noHash: ByteHash = { update: async () => {}, digest: async () => '', close: () => {} };

/** The length of an earlier try's `.part` (a prefix of the object), unread; 0 as hashPrefix gives it. */
async function prefixLength(file: string, size: number): Promise<number> {
  const s = await stat(file).catch(() => null);
  return !s?.isFile() || s.size > size ? 0 : s.size;
}

/**
 * Hashes what a `.part` file already holds (an earlier try's prefix of the object) and returns its length;
 * 0 when there is none, or it is longer than the object (not this object's: started afresh).
 */
async function hashPrefix(file: string, size: number, hash: ByteHash, signal?: AbortSignal): Promise<number> {
  const len = await prefixLength(file, size);
  if (len === 0) return 0;
  let n = 0;
  for await (const c of createReadStream(file, { end: len - 1, ...(signal ? { signal } : {}) }) as AsyncIterable<Buffer>) {
    await hash.update([c]);
    n += c.length;
  }
  return n;
}

/**
 * Fetches bytes `from`..`size` of `key` as ranges, `parallel` at once, and writes and hashes them in order
 * at their offsets in `fh`. A range is only started within a window of the one being written, so what
 * waits in memory is bounded; the range being written reads its socket only as fast as the disk takes it.
 */
async function fetchInOrder(
  client: Minio.Client, bucket: string, key: string, fh: FileHandle, hash: ByteHash, from: number, size: number, etag: string, retry: RetryOptions,
  o: { rangeBytes: number; parallel: number },
): Promise<void> {
  const len = o.parallel === 1 ? size - from : o.rangeBytes;
  const ranges: Range[] = [];
  for (let at = from; at < size; at += len) ranges.push({ start: at, len: Math.min(len, size - at), chunks: [], got: 0, held: 0, done: false });
  let head = 0; // the range being written
  let written = from; // the file's length: every byte before it is written and hashed
  const window = o.parallel * 2;
  let wake: (() => void)[] = [];
  let stopped = false; // a range failed: the others waiting for room give up rather than wait forever
  const wakeAll = () => { const w = wake; wake = []; for (const r of w) r(); };
  // One writer at a time: whoever finds it idle writes everything that is in order, then lets go.
  // A failed write is sticky: nothing after it may be written (the file must stay a prefix of the object).
  let writing: Promise<void> | null = null;
  let writeErr: { err: unknown } | null = null;
  const drain = (): Promise<void> => {
    if (writeErr) return Promise.reject(writeErr.err);
    writing ??= (async () => {
      // First let `writing` be set: a writer that let go before it was set would stay set, settled, and
      // every later drain would wait on it instead of writing. From here, the last look for chunks and the
      // letting go below happen with no await between them, so no chunk comes in unseen.
      await undefined;
      try {
        while (head < ranges.length) {
          const r = ranges[head]!;
          if (r.chunks.length > 0) {
            // Everything of this range that is in goes in one writev: one call per batch, not per chunk.
            const batch = r.chunks.splice(0);
            let n = 0;
            for (const c of batch) n += c.length;
            r.held -= n;
            // The hash takes its copy while the write is under way (on its own thread for a large object).
            await Promise.all([writeAll(fh, batch, n, written), hash.update(batch)]);
            written += n;
            for (const c of batch) giveSlab(c);
          } else if (r.done) {
            head++;
            wakeAll();
          } else break;
        }
      } catch (err) {
        writeErr ??= { err };
        throw err;
      } finally {
        writing = null;
      }
    })();
    return writing;
  };
  // On failure too, the write under way ends before the caller closes the file (a `.part` kept to be
  // continued must hold only bytes written in order).
  await mapBounded(ranges.map((_, i) => i), o.parallel, async (i) => {
    try {
      while (!stopped && i >= head + window) await new Promise<void>((r) => wake.push(r));
      if (stopped) throw new Error('stopped: another range failed');
      await fetchRange(i);
      await drain();
    } catch (err) {
      stopped = true;
      wakeAll();
      throw err;
    }
  }, retry.signal).finally(() => (writing as Promise<void> | null)?.catch(() => {}));
  await (writing as Promise<void> | null)?.catch(() => {});
  const failed = writeErr as { err: unknown } | null;
  if (failed) throw failed.err;
  if (written !== size) throw new Error(`${key}: wrote ${written} bytes of ${size}`);

  async function fetchRange(i: number): Promise<void> {
    const r = ranges[i]!;
    const end = r.start + r.len - 1;
    await withStorageRetry(`download ${key} bytes ${r.start}-${end}`, async () => {
      // All of it came and something after failed (a write: sticky, thrown again by the drain after this):
      // there is nothing left to ask for.
      if (r.got === r.len) return;
      const from = r.start + r.got;
      const headers: Record<string, string> = { Range: `bytes=${from}-${end}` };
      if (etag) headers['If-Match'] = `"${etag}"`;
      if (size >= RAW_GET_MIN_BYTES) await getRaw(i, headers);
      else await getViaClient(i, headers);
      if (r.got < r.len) throw new ShortRange(`${key}: range ${r.start}-${end} ended after ${r.got} bytes`);
    }, retry);
    r.done = true;
  }

  /**
   * The response is the bytes asked for (`bytes=A-B`), of an object of the size listed: without an ETag to
   * match (a checkpoint's file), this is what tells another object. Permanent, as a failed If-Match is: no
   * retry changes it.
   */
  function checkRange(got: string | undefined, asked: string): void {
    const want = `bytes ${asked.slice('bytes='.length)}/${size}`;
    if (got !== want) throw Object.assign(new Error(`${key}: asked for ${want}, the server sent ${JSON.stringify(got ?? null)}`), { code: 'PreconditionFailed' });
  }

  /**
   * Range `i` holds more: the range being written starts a write once it holds WRITE_BYTES, and holds its
   * socket for the disk (the promise) once it holds a batch's worth; one ahead of it only holds its
   * chunks. What is left when the range ends is written by the drain after it.
   */
  function grew(i: number): Promise<void> | undefined {
    if (i !== head) return undefined;
    const held = ranges[i]!.held;
    if (held >= BATCH_BYTES) return drain();
    if (held >= WRITE_BYTES) void drain().catch(() => {}); // a failed write fails the next awaited drain too
    return undefined;
  }

  /**
   * A large object's range: signed here, each try (a retry after a long backoff gets a fresh signature),
   * and sent by rawGet, which reads the body into slabs instead of a fresh Buffer per socket read.
   */
  async function getRaw(i: number, headers: Record<string, string>): Promise<void> {
    const r = ranges[i]!;
    const url = await client.presignedUrl('GET', bucket, key, PRESIGN_SECONDS);
    let slab: Buffer | null = null;
    let open = 0; // slab[open, fill) holds this range's bytes not given to it yet
    let fill = 0;
    const seal = () => {
      if (slab && fill > open) {
        const c = slab.subarray(open, fill);
        r.chunks.push(c);
        r.held += c.length;
      } else if (slab) giveSlab(slab);
      slab = null;
    };
    try {
      await rawGet(url, headers, [206], {
        next: () => {
          if (!slab) { slab = takeSlab(); open = fill = 0; }
          return slab.subarray(fill);
        },
        head: (_status, h) => checkRange(h.get('content-range'), headers.Range!),
        body: (b) => {
          if (r.got + b.length > r.len) throw new Error(`${key}: the server sent more than the range asked`);
          // b lies in the slab at `fill` or, the response's first bytes, after its head (whose bytes are
          // left unused).
          const at = b.byteOffset - slab!.byteOffset;
          if (fill === open) open = at;
          fill = at + b.length;
          r.got += b.length;
          if (SLAB_BYTES - fill >= MIN_READ) return undefined;
          seal();
          return grew(i);
        },
      }, retry.signal ? { signal: retry.signal } : {});
    } finally {
      seal();
    }
  }

  /** A small object (one range): through the client, whose connections are kept alive from one file to the next. */
  async function getViaClient(i: number, headers: Record<string, string>): Promise<void> {
    const r = ranges[i]!;
    const res = await client.makeRequestAsync({ method: 'GET', bucketName: bucket, objectName: key, headers }, '', [206]);
    try {
      checkRange(res.headers['content-range'], headers.Range!);
      for await (const c of res as AsyncIterable<Buffer>) {
        retry.signal?.throwIfAborted();
        if (r.got + c.length > r.len) throw new Error(`${key}: the server sent more than the range asked`);
        r.chunks.push(c);
        r.got += c.length;
        r.held += c.length;
        const wait = grew(i);
        if (wait) await wait;
      }
    } finally {
      res.destroy();
    }
  }
}
