// Object storage: the MinIO client, the bucket's key layout (documented in the README), and transfers
// that retry with backoff and stop on an AbortSignal.
import * as Minio from 'minio';
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, stat, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import type { AnchoredDir, AnchoredFile } from './anchored-dir.js';
import { ErrorCodes, TrainyardError, errorMessage } from './errors.js';
import { retry, RetriesExhausted } from './retry.js';
import { mapBounded } from './bounded.js';

/** Files of a folder uploaded at once (uploadDir). */
export const UPLOADS_IN_FLIGHT = 8;

export interface StorageOptions {
  minioEndpoint: string;
  minioAccessKey: string;
  minioSecretKey: string;
  /** With temporary (STS) credentials: the session token that goes with them. */
  sessionToken?: string;
}

export function createMinioClient(o: StorageOptions): Minio.Client {
  const url = new URL(o.minioEndpoint);
  const make = (retryOptions?: { disableRetry: boolean }) => new Minio.Client({
    endPoint: url.hostname,
    port: url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
    useSSL: url.protocol === 'https:',
    accessKey: o.minioAccessKey,
    secretKey: o.minioSecretKey,
    ...(o.sessionToken ? { sessionToken: o.sessionToken } : {}),
    region: 'us-east-1',
    ...(retryOptions ? { retryOptions } : {}),
  });
  const client = make();
  // Data goes up through a twin whose bodies are not part of the signature (x-amz-content-sha256:
  // UNSIGNED-PAYLOAD, as minio-js does over https): on plain http minio-js would hash every byte sent with
  // SHA-256 to sign it, and a body that is data then carried a second and third hash (Content-MD5, the
  // checksum). Profiled (issue 21): a 1 GiB dataset push spent 3.9 s of the scheduler's one thread in
  // hashes. Every PUT of data carries a checksum of its own instead (x-amz-checksum-sha256; a part over
  // TLS a CRC-32: partChecksum), a signed header that MinIO checks before it keeps the bytes: a body changed
  // on the way is refused all the same, for one checksum instead of three hashes. Everything else stays signed whole on the client itself (the list that
  // completes a multipart upload is checked by the ETag it results in: putParts).
  // minio-js's own retry of a 5xx would send a part's stream again once it is spent (putParts):
  // withStorageRetry retries every data PUT anyway, with a fresh body.
  const data = make({ disableRetry: true });
  data.enableSHA256 = false;
  unsignedTwins.set(client, { data, tls: url.protocol === 'https:' });
  return client;
}

/** The unsigned-payload twin of each client createMinioClient made (for putOnce and putParts), and whether it speaks TLS. */
const unsignedTwins = new WeakMap<Minio.Client, { data: Minio.Client; tls: boolean }>();
/** The client to send a body of data through: the unsigned twin when there is one. */
const dataClient = (client: Minio.Client) => unsignedTwins.get(client)?.data ?? client;

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

// InvalidRange: a range past the end of an object listed longer than it is now (no retry makes it longer).
const permanentS3Codes = new Set(['PreconditionFailed', 'InvalidRange', 'XAmzContentChecksumMismatch', 'NoSuchKey', 'NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'NotFound', 'InvalidBucketName']);

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

/**
 * Every object under `prefix` (recursive), in the listing's (key) order: ListObjectsV2 pages of 1,000.
 * Not minio-js's listObjectsV2: its general XML parser took 250-370 ms of the agent's thread for the
 * 20 pages of a 20,000-file dataset, on every run of it (issue 21); the listing's few fields are read
 * straight from the page (parseListPage), about ten times faster.
 *
 * One page's continuation token is only known from the page before it, so a listing is a chain of round
 * trips (20 for 20,000 files, half a second of a warm run). `hints`, the keys at which an earlier listing
 * of the same prefix crossed into a new page (listHints), cut the key space into ranges that are listed
 * LIST_RANGES_IN_FLIGHT at once, each from `start-after` its first bound up to and including its last:
 * whatever changed since (keys added, removed, bounds gone) is listed as it is now, since together the
 * ranges cover every key; hints only decide where the cuts are.
 */
export async function listObjects(client: Minio.Client, bucket: string, prefix: string, retry: RetryOptions, hints: readonly string[] = []): Promise<ObjectEntry[]> {
  // Bounds in S3's order (UTF-8 bytes), under the prefix, each once.
  const bounds = [...new Set(hints)].filter((k) => k.startsWith(prefix)).sort(compareKeys);
  if (bounds.length === 0) return listRange(client, bucket, prefix, null, null, retry);
  const ranges = [null, ...bounds].map((after, i) => ({ after, until: bounds[i] ?? null }));
  const parts = await mapBounded(ranges, LIST_RANGES_IN_FLIGHT, (r) => listRange(client, bucket, prefix, r.after, r.until, retry), retry.signal);
  return parts.flat();
}

/** Ranges of a hinted listing in flight at once. */
const LIST_RANGES_IN_FLIGHT = 4;
const LIST_PAGE_KEYS = 1000;

/**
 * S3's key order: by UTF-8 bytes. JavaScript's < compares UTF-16 units, which is the same order for keys
 * without surrogates (every character below U+10000: the units are the code points, whose order UTF-8
 * keeps) and differs past U+FFFF; only keys with surrogates are encoded to compare. A listing's range
 * compares every key with its bound: two buffers a key had cost 14-48 ms of the agent's thread per
 * 20,000 keys.
 */
export function compareKeys(a: string, b: string): number {
  if (!SURROGATE.test(a) && !SURROGATE.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
const SURROGATE = /[\uD800-\uDFFF]/;

/** The keys of `objects` (a whole listing) at which a new page of LIST_PAGE_KEYS began: hints for the next listing. */
export function listHints(objects: readonly ObjectEntry[]): string[] {
  const out: string[] = [];
  for (let i = LIST_PAGE_KEYS - 1; i < objects.length - 1; i += LIST_PAGE_KEYS) out.push(objects[i]!.key);
  return out;
}

/** The objects under `prefix` after key `after` (null: from the start) up to and including `until` (null: to the end). */
async function listRange(client: Minio.Client, bucket: string, prefix: string, after: string | null, until: string | null, retry: RetryOptions): Promise<ObjectEntry[]> {
  return withStorageRetry(`list ${prefix}${after === null ? '' : ` after ${after}`}`, async () => {
    const out: ObjectEntry[] = [];
    const seen = new Set<string>();
    for (let token = ''; ;) {
      // Sorted, as minio-js signs a query; keys come URL-encoded (encoding-type=url), any byte in them safe.
      const query = ['list-type=2', 'encoding-type=url', `prefix=${encodeKeyPart(prefix)}`, `max-keys=${LIST_PAGE_KEYS}`,
        ...(token ? [`continuation-token=${encodeKeyPart(token)}`] : after !== null ? [`start-after=${encodeKeyPart(after)}`] : [])].sort().join('&');
      const res = await client.makeRequestAsync({ method: 'GET', bucketName: bucket, query });
      const page = parseListPage(await readText(res));
      for (const o of page.objects) {
        if (until !== null && compareKeys(o.key, until) > 0) return out; // the next range's
        out.push(o);
      }
      // The range's last key itself: nothing of it is left (an unchanged range is one page exactly).
      if (!page.truncated || (until !== null && out.length > 0 && out[out.length - 1]!.key === until)) return out;
      if (!page.next || seen.has(page.next)) throw new TrainyardError(ErrorCodes.StorageError, `list ${prefix}: a truncated page without a new continuation token`);
      seen.add(page.next);
      token = page.next;
    }
  }, retry);
}

/** minio-js's uriEscape (what SigV4 wants): RFC 3986 unreserved characters kept, every other byte %XX. */
export function encodeKeyPart(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

async function readText(res: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

const XML_ENTITIES: Record<string, string> = { quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" };
function xmlText(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|quot|amp|lt|gt|apos);/g, (_, e: string) =>
    e[0] === '#' ? String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : Number(e.slice(1))) : XML_ENTITIES[e]!);
}

/**
 * One ListObjectsV2 page (encoding-type=url): its objects' key, size and ETag, whether it is truncated and
 * the token for the next. Exported for its test; what is not one of these fields is not looked at.
 */
export function parseListPage(xml: string): { objects: ObjectEntry[]; truncated: boolean; next: string } {
  if (!xml.includes('<ListBucketResult')) throw new TrainyardError(ErrorCodes.StorageError, `a listing that is not a ListBucketResult: ${xml.slice(0, 200)}`);
  // Cut off between two objects it would still read as a page, a shorter one.
  if (!xml.trimEnd().endsWith('</ListBucketResult>')) throw new TrainyardError(ErrorCodes.StorageError, 'a listing cut off before its end');
  const objects: ObjectEntry[] = [];
  const field = (block: string, tag: string) => {
    const at = block.indexOf(`<${tag}>`);
    if (at < 0) return null;
    const end = block.indexOf(`</${tag}>`, at);
    return end < 0 ? null : block.slice(at + tag.length + 2, end);
  };
  for (let at = xml.indexOf('<Contents>'); at >= 0; at = xml.indexOf('<Contents>', at)) {
    const end = xml.indexOf('</Contents>', at);
    if (end < 0) throw new TrainyardError(ErrorCodes.StorageError, 'a listing cut off inside an object');
    const block = xml.slice(at + 10, end);
    at = end + 11;
    const key = field(block, 'Key');
    if (!key) continue;
    // encoding-type=url: '+' is a space, as minio-js decodes it.
    objects.push({
      key: decodeURIComponent(xmlText(key).replace(/\+/g, ' ')),
      size: Number(field(block, 'Size') ?? 0),
      etag: xmlText(field(block, 'ETag') ?? '').replace(/^"|"$/g, ''),
    });
  }
  const next = field(xml, 'NextContinuationToken');
  return { objects, truncated: field(xml, 'IsTruncated') === 'true', next: next === null ? '' : xmlText(next) };
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

/** A relative key that path.join would change: a leading or doubled '/', or a '.' or '..' segment. */
const UNCLEAN_KEY = /^\/|\/\/|(^|\/)\.{1,2}(\/|$)/;

/** Where an object under `prefix` goes in `dir` (its key relative to the prefix); null for a folder marker. Refuses a key that leaves `dir`. */
export function localPathOf(key: string, prefix: string, dir: string): { rel: string; dest: string } | null {
  const rel = key.slice(prefix.length);
  if (!rel || rel.endsWith('/')) return null;
  // A key with no empty, '.' or '..' segment under an absolute folder is the folder and the key, as is: the
  // general path below (join, resolve, relative) cost 114 ms for the 20,000 keys of a warm run.
  if (path.sep === '/' && path.isAbsolute(dir) && !UNCLEAN_KEY.test(rel)) {
    const root = path.normalize(dir);
    return { rel, dest: root.endsWith('/') ? root + rel : `${root}/${rel}` };
  }
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

/**
 * Objects larger than this go up in parts of this size. Above MinIO's 5 MiB minimum part, small enough to
 * hold one part in memory while it is sent.
 */
export const PART_BYTES = 16 * 1024 * 1024;

export interface PutOptions {
  /** Headers sent with the object (Content-Type, say). */
  headers?: Record<string, string>;
  /**
   * The bytes' SHA-256 (hex), when the caller has it already: sent as x-amz-checksum-sha256, so MinIO
   * refuses the put unless what it received hashes to it, and keeps it for a HEAD in checksum mode
   * (objectSha256). Without it, putOnce hashes the body itself: every data PUT carries one (createMinioClient).
   * Single-part puts only: each part of a multipart upload carries its own.
   */
  sha256?: string;
}

/** The SHA-256 of `body`, base64, as x-amz-checksum-sha256 carries it. */
const sha256Base64 = (body: Buffer) => createHash('sha256').update(body).digest('base64');

/** zlib's CRC-32 (Node 20.15 and later; undefined before, and parts then carry SHA-256). */
const crc32 = (zlib as { crc32?: (data: Buffer, value?: number) => number }).crc32;

/**
 * The checksum header a part of a multipart upload carries, over its body (its pieces in order). The body
 * goes unsigned (createMinioClient), so this header, which the signature covers, is what MinIO checks it
 * against. Over plain http it is also all that keeps a body from being changed on the way, so it is
 * SHA-256: a CRC-32 can be matched by whoever changes the bytes. Over TLS, which already keeps the bytes
 * from being changed, the part carries a CRC-32 against accidents (what the AWS SDKs send by default):
 * on this machine zlib's CRC-32 runs at 2.3 GB/s against SHA-256's 1.2, the scheduler's largest cost in a
 * 1 GiB push after its garbage collection.
 */
export function partChecksum(body: readonly Buffer[], tls: boolean): Record<string, string> {
  if (tls && crc32) {
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(body.reduce((crc, piece) => crc32(piece, crc), 0));
    return { 'x-amz-checksum-crc32': sum.toString('base64') };
  }
  const h = createHash('sha256');
  for (const piece of body) h.update(piece);
  return { 'x-amz-checksum-sha256': h.digest('base64') };
}

const unquote = (etag: string | undefined) => (etag ?? '').replace(/^"|"$/g, '');

/**
 * One PUT of bytes held in memory. Not minio-js's putObject: that cannot send a checksum header (it turns
 * unknown headers into x-amz-meta-*), and above its part size it lists the bucket's multipart uploads
 * first, which an attempt's credentials may not do (README, "Security").
 */
export async function putOnce(client: Minio.Client, bucket: string, key: string, body: Buffer, o: PutOptions): Promise<string> {
  const headers: Record<string, string | number> = { ...o.headers, 'Content-Length': body.length };
  headers['x-amz-checksum-sha256'] = o.sha256 ? Buffer.from(o.sha256, 'hex').toString('base64') : sha256Base64(body);
  const res = await dataClient(client).makeRequestAsyncOmit({ method: 'PUT', bucketName: bucket, objectName: key, headers }, body);
  return unquote(res.headers.etag);
}

/** Parts of one multipart upload sent at once: one PUT stream is bound by one connection. */
export const PARTS_IN_FLIGHT = 4;

/**
 * A part's bytes: one buffer, or the pieces it came in (a stream's chunks): sent one after the other, so a
 * part is never copied whole into one buffer only to be sent (a 1 GiB push copied it all once more).
 */
export type PartBody = Buffer | readonly Buffer[];

/**
 * A multipart upload by its own upload id: initiate, the parts `next` gives (in order, read one at a time)
 * sent up to `inFlight` at once, complete; aborted on any failure, so no half object is ever visible.
 * Nothing is listed (minio-js's own multipart put looks for an upload to resume with
 * ListMultipartUploads, which would need a bucket-wide permission). A part that fails is sent again by
 * withStorageRetry. Resolves with the bytes sent.
 */
export async function putParts(
  client: Minio.Client, bucket: string, key: string, next: () => Promise<PartBody | null>, o: PutOptions, retry: RetryOptions, inFlight = PARTS_IN_FLIGHT,
): Promise<number> {
  const uploadId = await withStorageRetry(`start ${key}`, () => client.initiateNewMultipartUpload(bucket, key, { ...o.headers }), retry);
  const etags: { part: number; etag: string }[] = [];
  const running = new Set<Promise<void>>();
  let failed: { err: unknown } | null = null;
  let bytes = 0;
  const send = async (part: number, body: readonly Buffer[], length: number) => {
    const sum = partChecksum(body, unsignedTwins.get(client)?.tls ?? false);
    const etag = await withStorageRetry(`upload ${key} part ${part}`, async () => {
      const c = dataClient(client);
      const req = {
        method: 'PUT', bucketName: bucket, objectName: key, query: `partNumber=${part}&uploadId=${encodeURIComponent(uploadId)}`,
        headers: { 'Content-Length': length, ...sum },
      };
      // A client that signs bodies (one createMinioClient did not make, over http) needs the whole to hash.
      if (c.enableSHA256) return unquote((await c.makeRequestAsyncOmit(req, Buffer.concat(body))).headers.etag);
      const res = await c.makeRequestStreamAsync(req, body.length === 1 ? body[0]! : Readable.from(body, { objectMode: false }), '', [200], '');
      res.resume();
      await finished(res);
      return unquote(res.headers.etag);
    }, retry);
    etags.push({ part, etag });
  };
  try {
    try {
      for (let part = 1; !failed; part++) {
        const got = await next();
        if (!got) break;
        const body = Buffer.isBuffer(got) ? [got] : got;
        const length = body.reduce((n, piece) => n + piece.length, 0);
        bytes += length;
        const p: Promise<void> = send(part, body, length).catch((err: unknown) => { failed ??= { err }; }).finally(() => running.delete(p));
        running.add(p);
        if (running.size >= inFlight) await Promise.race(running);
      }
    } catch (err) {
      failed ??= { err }; // the source failed: the parts in flight are awaited before the upload is aborted
    }
    await Promise.all(running);
    if (failed) throw (failed as { err: unknown }).err;
    etags.sort((a, b) => a.part - b.part);
    const done = await withStorageRetry(`complete ${key}`, () => client.completeMultipartUpload(bucket, key, uploadId, etags), retry);
    // MinIO checks neither a signature's payload hash nor a Content-MD5 on the list that completes the
    // upload (tried: both accepted a list with its last part dropped), so a list changed on the way would
    // store a shorter object. The object's ETag is the MD5 of its parts' MD5s; where it is not (a bucket
    // that encrypts has ETags of another kind), its size must be the bytes sent. Otherwise it is refused,
    // and the object goes.
    const expected = `${createHash('md5').update(Buffer.concat(etags.map((e) => Buffer.from(e.etag, 'hex')))).digest('hex')}-${etags.length}`;
    if (unquote(done.etag) !== expected) {
      const stored = await withStorageRetry(`stat ${key}`, () => client.statObject(bucket, key), retry);
      if (stored.size !== bytes) {
        await client.removeObject(bucket, key).catch(() => {});
        throw new TrainyardError(ErrorCodes.StorageError, `upload ${key}: the stored object is ${stored.size} bytes, not the ${bytes} of the ${etags.length} parts sent (the list that completed it changed on the way?); removed`);
      }
    }
    return bytes;
  } catch (err) {
    await client.abortMultipartUpload(bucket, key, uploadId).catch(() => {});
    throw err;
  }
}

/** The first `size` bytes of an open file as parts (putParts), read one after the other. */
async function putInParts(client: Minio.Client, bucket: string, key: string, fh: FileHandle, size: number, o: PutOptions, retry: RetryOptions): Promise<void> {
  let offset = 0;
  await putParts(client, bucket, key, async () => {
    if (offset >= size) return null;
    const buf = await readAt(fh, offset, Math.min(PART_BYTES, size - offset), key);
    offset += buf.length;
    return buf;
  }, o, retry);
}

/** `len` bytes of an open file from `offset`; a file that ends sooner changed while it was read. */
async function readAt(fh: FileHandle, offset: number, len: number, key: string): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  for (let got = 0; got < len;) {
    const { bytesRead } = await fh.read(buf, got, len - got, offset + got);
    if (bytesRead === 0) throw new TrainyardError(ErrorCodes.StorageError, `the file for ${key} shrank while it was uploaded`);
    got += bytesRead;
  }
  return buf;
}

/**
 * Uploads the first `size` bytes of an open file: one PUT up to PART_BYTES, else a multipart upload of its
 * own (nothing listed). The descriptor is the caller's (one opened without following links, say).
 */
export async function uploadHandle(client: Minio.Client, bucket: string, key: string, fh: FileHandle, size: number, retry: RetryOptions, o: PutOptions = {}): Promise<number> {
  if (size > PART_BYTES) {
    await putInParts(client, bucket, key, fh, size, o, retry);
    return size;
  }
  const body = await readAt(fh, 0, size, key);
  await withStorageRetry(`upload ${key}`, () => putOnce(client, bucket, key, body, o), retry);
  return size;
}

export async function uploadFile(client: Minio.Client, bucket: string, key: string, file: string, retry: RetryOptions, o: PutOptions = {}): Promise<number> {
  const fh = await open(file, 'r');
  try {
    return await uploadHandle(client, bucket, key, fh, (await fh.stat()).size, retry, o);
  } finally {
    await fh.close();
  }
}

/** Uploads bytes held in memory in one PUT; resolves with their size and the object's ETag. */
export async function uploadBuffer(client: Minio.Client, bucket: string, key: string, body: Buffer, retry: RetryOptions, o: PutOptions = {}): Promise<{ bytes: number; etag: string }> {
  const etag = await withStorageRetry(`upload ${key}`, () => putOnce(client, bucket, key, body, o), retry);
  return { bytes: body.length, etag };
}

/**
 * An object's size, ETag and, when MinIO verified one at upload (a single PUT with x-amz-checksum-sha256),
 * its SHA-256 (hex; '' when it holds none). A HEAD in checksum mode.
 */
export async function objectChecksum(client: Minio.Client, bucket: string, key: string, retry: RetryOptions): Promise<{ size: number; etag: string; sha256: string }> {
  return withStorageRetry(`stat ${key}`, async () => {
    const res = await client.makeRequestAsyncOmit({ method: 'HEAD', bucketName: bucket, objectName: key, headers: { 'x-amz-checksum-mode': 'ENABLED' } });
    const sum = res.headers['x-amz-checksum-sha256'];
    const whole = typeof sum === 'string' && !sum.includes('-') && res.headers['x-amz-checksum-type'] !== 'COMPOSITE';
    return {
      size: Number(res.headers['content-length'] ?? 0),
      etag: unquote(res.headers.etag),
      sha256: whole ? Buffer.from(sum, 'base64').toString('hex') : '',
    };
  }, retry);
}

/** An object's bytes only while it is still the one with this ETag: a replaced object fails PreconditionFailed (permanent). */
export async function getObjectIfMatch(client: Minio.Client, bucket: string, key: string, etag: string, retry: RetryOptions): Promise<NodeJS.ReadableStream> {
  return withStorageRetry(`download ${key}`, () => client.makeRequestAsync({ method: 'GET', bucketName: bucket, objectName: key, headers: { 'If-Match': `"${etag}"` } }), retry);
}

/** Copies an object inside the bucket, server-side, only while the source still has this ETag. */
export async function copyObjectIfMatch(client: Minio.Client, bucket: string, from: string, to: string, etag: string, retry: RetryOptions): Promise<void> {
  const conditions = new Minio.CopyConditions();
  conditions.setMatchETag(etag);
  await withStorageRetry(`copy ${from}`, () => client.copyObject(bucket, to, `/${bucket}/${from}`, conditions), retry);
}

/**
 * Uploads the files AnchoredDir.files() found below `dir` to `prefix` (UPLOADS_IN_FLIGHT at once), each
 * read from a descriptor opened from `dir` down (shared/anchored-dir.ts): a folder swapped for a link meanwhile fails the upload instead
 * of sending what the link names.
 */
export async function uploadDir(
  client: Minio.Client, bucket: string, dir: AnchoredDir, files: readonly AnchoredFile[], prefix: string, retry: RetryOptions, progress?: Progress,
): Promise<{ files: number; bytes: number }> {
  const total = files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  // Several files at once: many small files are bound by round trips, not bytes.
  await mapBounded(files, UPLOADS_IN_FLIGHT, async (f) => {
    const fh = await dir.openFile(f);
    try {
      // Exactly the size that was counted, from the descriptor the walk checked.
      await uploadHandle(client, bucket, prefix + f.rel, fh, f.size, retry);
    } finally {
      await fh.close();
    }
    done += f.size;
    progress?.(done, total);
  }, retry.signal);
  return { files: files.length, bytes: total };
}

export { createReadStream };
