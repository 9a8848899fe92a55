// The large files of a `dataset push`, stored by the CLI straight into MinIO (issue 21). Through the
// scheduler, a GiB cost it about 6 CPU-seconds (received by gRPC, hashed, sent again) and the push ran at
// a third of MinIO's speed. Here each file is cut into parts; each part is read once into memory, hashed,
// and PUT to a URL the scheduler signs for exactly those bytes (PresignDatasetParts), PARTS_IN_FLIGHT at
// once across the push's files. The push's stream then names each file's upload and the scheduler
// completes it (scheduler/datasets/push.ts): nothing becomes part of the dataset until then.
//
// When storage cannot be used from here (the scheduler signs for the address it was given, which may be an
// internal one, behind a firewall or a proxy), or the scheduler does not offer it, the first part's failure
// turns direct storing off for the push and its large files go through the stream as before: a push never
// fails for want of a shortcut. Once a part has been stored, storage is known to work from here, and a
// failure is retried and then fails the push, saying how to push without it.
import * as http from 'node:http';
import * as https from 'node:https';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ErrorCodes, TrainyardError, errorMessage } from '../shared/errors.js';
import type { PresignDatasetPartsRequest, PresignDatasetPartsResponse__Output } from '../shared/proto.js';

/** Files of at least this many bytes are stored directly, in parts of this size (S3's minimum is 5 MiB). */
export const DIRECT_PART_BYTES = 16 * 1024 * 1024;
const MIB = 1024 * 1024;
/** S3's most parts in one upload: a file over 156 GiB has larger parts. */
const MAX_PARTS = 10_000;
/** The part size for a file of `size` bytes: 16 MiB, or whole MiB enough to stay within MAX_PARTS. */
export const partBytesFor = (size: number) => Math.max(DIRECT_PART_BYTES, Math.ceil(size / MAX_PARTS / MIB) * MIB);
/** Parts being read, hashed or sent at once, across the push's files (each held in memory meanwhile). */
const PARTS_IN_FLIGHT = 4;
/** Tries of one part's PUT (a dropped connection, a 5xx) before the push fails. */
const PART_TRIES = 4;
/** A PUT whose connection is idle this long is tried again. */
const PART_TIMEOUT_MS = 60_000;
/** Before any part has been stored: idle this long, storage is taken as out of reach (a firewall that drops). */
const PROBE_TIMEOUT_MS = 15_000;
/** An upload not given up within this long is left for MinIO to drop. */
const ABORT_TIMEOUT_MS = 10_000;
const HINT = 'push with --via-scheduler to send every byte through the scheduler';

export type Presigner = (req: PresignDatasetPartsRequest) => Promise<PresignDatasetPartsResponse__Output>;

export interface LargeFile { rel: string; abs: string; size: number }

/** Why direct storing was turned off for a push: shown once, so a user knows what the push is doing. */
export type FallbackReason = string;

const agents = { http: new http.Agent({ keepAlive: true, maxSockets: PARTS_IN_FLIGHT }), https: new https.Agent({ keepAlive: true, maxSockets: PARTS_IN_FLIGHT }) };

/** Sends `method` (a part's PUT with its `body`, an upload's DELETE) to a signed URL; throws with `status` when storage answered, without when the connection failed. */
function send(method: 'PUT' | 'DELETE', url: string, body: Buffer | null, idleMs: number): Promise<void> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(u, { method, agent: u.protocol === 'https:' ? agents.https : agents.http, headers: { 'content-length': body?.length ?? 0 }, timeout: idleMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) return resolve();
        const text = Buffer.concat(chunks).toString('utf8');
        const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? `HTTP ${res.statusCode}`;
        const message = /<Message>([^<]+)<\/Message>/.exec(text)?.[1] ?? '';
        reject(Object.assign(new Error(`${u.host} refused ${method === 'PUT' ? 'a part' : 'to give an upload up'}: ${code}${message ? ` (${message})` : ''}`), { status: res.statusCode }));
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`${u.host}: no answer in ${idleMs / 1000} s`), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => reject(Object.assign(new Error(`${u.host}: ${err.code ?? err.message}`), { code: err.code })));
    req.end(body ?? undefined);
  });
}

/** A part's PUT, tried again on a dropped connection or a 5xx; a 4xx (a refused signature) is final. */
async function putWithRetry(url: string, body: Buffer, signal: AbortSignal): Promise<void> {
  for (let tryNo = 1; ; tryNo++) {
    signal.throwIfAborted();
    try {
      await send('PUT', url, body, PART_TIMEOUT_MS);
      return;
    } catch (err) {
      const status = (err as { status?: number }).status;
      if ((status !== undefined && status < 500) || tryNo >= PART_TRIES) {
        throw new TrainyardError(ErrorCodes.StorageError, `dataset push: ${errorMessage(err)}${tryNo > 1 ? ` (${tryNo} tries)` : ''}; ${HINT}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 250 * 2 ** tryNo));
    }
  }
}

/**
 * Stores `files` directly, each as one upload; resolves each file's promise with its upload id, or with
 * null when the file is to go through the stream instead (direct storing turned off, `onFallback` told why).
 * `onBytes` is told of each part stored. A failure that is not about reaching storage rejects that file's
 * promise and stops the rest (`abort()` gives up every upload not yet handed to the push).
 */
export function storeDirect(files: readonly LargeFile[], dataset: string, presignParts: Presigner, o: { onBytes: (n: number) => void; onFallback: (why: FallbackReason) => void; signal: AbortSignal }) {
  let off = false;
  /** A part has been stored: storage works from here, and a failure is no longer a reason to go around it. */
  let proven = false;
  /** The first failure that is not about reaching storage: the push fails with it, the other parts stop. */
  let stopped: { err: unknown } | null = null;
  const aborts = new Map<string, string>(); // upload id -> abort URL, until the push takes the upload
  type Job = { file: LargeFile; part: number; uploadId: Promise<string | null> };
  const results = new Map<string, Promise<string | null>>();
  const jobs: Job[] = [];

  const turnOff = (why: string) => {
    if (!off) { off = true; o.onFallback(why); }
    return null;
  };

  for (const file of files) {
    const parts = Math.ceil(file.size / partBytesFor(file.size));
    // The first part starts the upload (its presign returns the id); the others wait for it.
    let firstDone!: (id: string | null) => void;
    const uploadId = new Promise<string | null>((r) => { firstDone = r; });
    const doneParts: Promise<boolean>[] = [];
    for (let part = 1; part <= parts; part++) {
      const job = { file, part, uploadId, first: part === 1 ? firstDone : null };
      let settle!: (ok: boolean) => void;
      let fail!: (err: unknown) => void;
      doneParts.push(new Promise<boolean>((res, rej) => { settle = res; fail = rej; }));
      jobs.push(Object.assign(job, { settle, fail }));
    }
    const all = (async () => {
      const id = await uploadId;
      const settled = await Promise.allSettled(doneParts);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (stopped) throw (stopped as { err: unknown }).err;
      // Some parts went, then direct storing was turned off: the file goes through the stream (its upload
      // is given up by abort(), as every upload the push did not take).
      return id !== null && settled.every((r) => r.status === 'fulfilled' && r.value) ? id : null;
    })();
    all.catch(() => {});
    results.set(file.rel, all);
  }

  const runJob = async (job: Job & { first: ((id: string | null) => void) | null; settle: (ok: boolean) => void; fail: (err: unknown) => void }, buffers: { b: Buffer }) => {
    try {
      if (stopped) throw stopped.err;
      if (off) { job.first?.(null); return job.settle(false); }
      const { file, part } = job;
      const partBytes = partBytesFor(file.size);
      const start = (part - 1) * partBytes;
      const n = Math.min(partBytes, file.size - start);
      if (buffers.b.length < n) buffers.b = Buffer.allocUnsafe(partBytes);
      const body = buffers.b.subarray(0, n);
      const fh = await open(file.abs, 'r');
      try {
        for (let got = 0; got < n;) {
          const r = await fh.read(body, got, n - got, start + got);
          if (r.bytesRead === 0) throw new TrainyardError(ErrorCodes.InvalidArgument, `dataset push: ${file.rel} shrank while it was pushed (${file.size} bytes when the push began)`);
          got += r.bytesRead;
        }
        if (start + n === file.size && (await fh.read(Buffer.alloc(1), 0, 1, file.size)).bytesRead > 0) {
          throw new TrainyardError(ErrorCodes.InvalidArgument, `dataset push: ${file.rel} grew while it was pushed (${file.size} bytes when the push began)`);
        }
      } finally {
        await fh.close();
      }
      const sha = createHash('sha256').update(body).digest('hex');
      const base = { dataset, path: file.rel, size_bytes: file.size, part_bytes: partBytes, first_part: part, part_sha256: [sha] };
      let url: string;
      if (job.first) {
        let res: PresignDatasetPartsResponse__Output;
        try {
          res = await presignParts({ ...base, upload_id: '' });
        } catch (err) {
          const code = (err as { code?: string }).code;
          // A scheduler that does not offer it (older, or --client-storage-url none): through the stream.
          if (code === ErrorCodes.Unimplemented) { job.first(turnOff(`${errorMessage(err)}; large files go through it`)); return job.settle(false); }
          job.first(null);
          throw err;
        }
        aborts.set(res.upload_id, res.abort_url);
        url = res.part_urls[0]!;
        if (proven) await putWithRetry(url, body, o.signal);
        else {
          // The probe: anything but success (refused, unknown host, a firewall's silence, a proxy's page or
          // a signature it broke) means storage is not usable from here, and the push goes around it.
          try {
            await send('PUT', url, body, PROBE_TIMEOUT_MS);
          } catch (err) {
            if (!proven) { job.first(turnOff(`storage is not usable from here (${errorMessage(err)}); large files go through the scheduler`)); return job.settle(false); }
            await putWithRetry(url, body, o.signal); // another file's part got through meanwhile: a real failure, retried
          }
          proven = true;
        }
        job.first(res.upload_id);
        job.first = null;
      } else {
        const id = await job.uploadId;
        if (id === null || off) return job.settle(false);
        const res = await presignParts({ ...base, upload_id: id });
        url = res.part_urls[0]!;
        await putWithRetry(url, body, o.signal);
      }
      o.onBytes(n);
      job.settle(true);
    } catch (err) {
      stopped ??= { err };
      job.first?.(null);
      job.fail(err);
    }
  };

  // PARTS_IN_FLIGHT workers over the parts in order: a file's first part before its others, files in turn.
  // Each reads its parts into one buffer of its own, used again for the next: a new 16 MiB buffer per part
  // cost the CLI 0.7 CPU-seconds of garbage collection a GiB (a part's PUT has ended, its body all sent,
  // before the worker takes the next).
  let nextJob = 0;
  const workers = Array.from({ length: Math.min(PARTS_IN_FLIGHT, jobs.length) }, async () => {
    const buffers = { b: Buffer.alloc(0) };
    while (nextJob < jobs.length) {
      const job = jobs[nextJob++] as Parameters<typeof runJob>[0];
      await runJob(job, buffers);
    }
  });
  const finished = Promise.all(workers);

  return {
    /** A file's upload id once all its parts are stored; null: send it through the stream. */
    uploadOf: (rel: string): Promise<string | null> => results.get(rel) ?? Promise.resolve(null),
    /** The push has the upload now: a failure of the push is the scheduler's to clean up. */
    handedOver: (uploadId: string) => { aborts.delete(uploadId); },
    /** Gives up every upload not handed over (the push failed, or a file went through the stream after all); waits for the parts in flight first. */
    abort: async () => {
      off = true;
      await finished;
      // Best effort: what is not given up here, MinIO drops with its stale uploads.
      await Promise.all([...aborts.values()].map((url) => send('DELETE', url, null, ABORT_TIMEOUT_MS).catch(() => {})));
      aborts.clear();
    },
  };
}
