// SHA-256 of a large download on a thread of its own (issue 21). A pull hashes every byte it makes local
// (the lineage records it), and on the agent's one JavaScript thread that hash was the largest cost of a
// large pull: 0.88 s of a 1 GiB pull's 1.8-2.2 s of main-thread CPU, with the socket reads, the writes'
// bookkeeping and the GC queued behind it. Here the bytes are copied (a memcpy, about a tenth of the hash's
// cost) into a few slots of shared memory that one worker thread hashes while the main thread goes on
// reading sockets and writing the file. The copy is what lets the socket's buffers be written and dropped
// at once; slots are reused, so the worker's memory does not grow with the object.
//
// One worker serves every download of the process (each is a job of its own); it holds the process open
// only while a job is open (an idle one keeps no process alive, a busy one is awaited), and is made again if it dies (the jobs it held fail, and are retried as any
// failed download is). Small files keep hashing on the main thread (`inThreadHash`): a round trip to the
// worker costs more than hashing a few KiB.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** An incremental SHA-256 fed in order. */
export interface ByteHash {
  /** Adds `chunks`; once resolved the chunks may be reused (the bytes were taken). */
  update(chunks: readonly Buffer[]): Promise<void>;
  /** The hex digest of everything added; the hash is spent after. */
  digest(): Promise<string>;
  /** Gives the hash up (a failed download): nothing more is added. */
  close(): void;
}

/** Objects from this size up are hashed on the worker. */
export const HASH_THREAD_MIN_BYTES = 4 * 1024 * 1024;
/** One slot: what the worker hashes per message. */
const SLOT_BYTES = 1024 * 1024;
/** What the file hasher reads at a time (hashFile). */
const FILE_READ_BYTES = 1024 * 1024;
/** Slots per job: enough that the copy into one never waits for the hash of another in the steady state. */
const SLOTS = 4;

/** Hashing on the calling thread: for small files, and where no worker is wanted. */
export function inThreadHash(): ByteHash {
  const h = createHash('sha256');
  return {
    update: async (chunks) => { for (const c of chunks) h.update(c); },
    digest: async () => h.digest('hex'),
    close: () => {},
  };
}

// The worker's whole program: plain CommonJS, given as source so it needs no file of its own next to the
// compiled one (nor a TypeScript loader under the tests).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const jobs = new Map();
parentPort.on('message', (m) => {
  try {
    if (m.op === 'open') jobs.set(m.id, { hash: createHash('sha256'), mem: new Uint8Array(m.sab) });
    else if (m.op === 'update') {
      const j = jobs.get(m.id);
      if (j) j.hash.update(j.mem.subarray(m.off, m.off + m.len));
      parentPort.postMessage({ id: m.id, op: 'done', slot: m.slot });
    } else if (m.op === 'digest') {
      const j = jobs.get(m.id);
      jobs.delete(m.id);
      parentPort.postMessage({ id: m.id, op: 'digest', hex: j ? j.hash.digest('hex') : null });
    } else if (m.op === 'close') jobs.delete(m.id);
  } catch (err) {
    parentPort.postMessage({ id: m.id, op: 'error', message: String(err && err.message || err) });
  }
});
`;

interface Job {
  /** The worker the job is open on: only its own worker's death fails it. */
  worker: Worker;
  /** Resolves the wait for a slot (or the digest); rejects all of them when the worker dies. */
  onDone(slot: number): void;
  onDigest(hex: string | null): void;
  onError(err: Error): void;
}

let worker: Worker | null = null;
const jobs = new Map<number, Job>();
let nextId = 1;

/** Holds the process open while any job is open, and no longer (ref and unref are idempotent). */
function refWhileBusy(): void {
  if (jobs.size > 0) worker?.ref();
  else worker?.unref();
}

function theWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.on('message', (m: { id: number; op: string; slot?: number; hex?: string | null; message?: string }) => {
    const j = jobs.get(m.id);
    if (!j) return;
    if (m.op === 'done') j.onDone(m.slot!);
    else if (m.op === 'digest') j.onDigest(m.hex ?? null);
    else j.onError(new Error(`hash thread: ${m.message}`));
  });
  const fail = (err: Error) => {
    if (worker === w) worker = null;
    // Only this worker's jobs: after its 'error' a new worker may already hold jobs when its 'exit' comes.
    const held = [...jobs].filter(([, j]) => j.worker === w);
    for (const [id] of held) jobs.delete(id);
    refWhileBusy();
    for (const [, j] of held) j.onError(err);
  };
  w.on('error', (err) => fail(err));
  w.on('exit', (code) => fail(new Error(`hash thread exited (code ${code})`)));
  // After the listeners: a 'message' listener refs the worker's port again.
  w.unref();
  worker = w;
  return w;
}

/** A SHA-256 computed on the process's hash thread; see the file's comment. */
export function threadHash(): ByteHash {
  const w = theWorker();
  const id = nextId++;
  const sab = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  const mem = Buffer.from(sab);
  const busy = new Array<boolean>(SLOTS).fill(false);
  let slot = 0; // the slot being filled
  let fill = 0; // bytes in it
  let failed: Error | null = null;
  let closed = false;
  let waiting: { slot: number; resolve: () => void; reject: (e: Error) => void } | null = null;
  let digestWait: { resolve: (hex: string) => void; reject: (e: Error) => void } | null = null;
  jobs.set(id, {
    worker: w,
    onDone(s) {
      busy[s] = false;
      if (waiting?.slot === s) { const wt = waiting; waiting = null; wt.resolve(); }
    },
    onDigest(hex) {
      jobs.delete(id);
      refWhileBusy();
      const d = digestWait;
      digestWait = null;
      if (hex === null) d?.reject(new Error('hash thread: the job was gone'));
      else d?.resolve(hex);
    },
    onError(err) {
      failed = err;
      jobs.delete(id);
      refWhileBusy();
      waiting?.reject(err);
      digestWait?.reject(err);
      waiting = null;
      digestWait = null;
    },
  });
  refWhileBusy();
  w.postMessage({ op: 'open', id, sab });

  const post = () => {
    if (fill === 0) return;
    busy[slot] = true;
    w.postMessage({ op: 'update', id, slot, off: slot * SLOT_BYTES, len: fill });
    slot = (slot + 1) % SLOTS;
    fill = 0;
  };
  const slotFree = (): Promise<void> | null => {
    if (failed) return Promise.reject(failed);
    if (!busy[slot]) return null;
    return new Promise<void>((resolve, reject) => { waiting = { slot, resolve, reject }; });
  };

  return {
    async update(chunks) {
      if (closed) throw new Error('hash thread: update after close');
      for (const c of chunks) {
        let at = 0;
        while (at < c.length) {
          const wait = slotFree();
          if (wait) await wait;
          const n = Math.min(c.length - at, SLOT_BYTES - fill);
          c.copy(mem, slot * SLOT_BYTES + fill, at, at + n);
          fill += n;
          at += n;
          if (fill === SLOT_BYTES) post();
        }
      }
      // What is left goes now, not with the next update: the worker keeps pace with the download rather
      // than the digest waiting for a last slot.
      post();
    },
    async digest() {
      if (failed) throw failed;
      closed = true;
      post();
      return new Promise<string>((resolve, reject) => {
        digestWait = { resolve, reject };
        w.postMessage({ op: 'digest', id });
      });
    },
    close() {
      if (closed) return;
      closed = true;
      jobs.delete(id);
      refWhileBusy();
      w.postMessage({ op: 'close', id });
      waiting?.reject(new Error('hash thread: closed'));
      waiting = null;
    },
  };
}

// The file hasher's whole program: a job names a file, the worker reads and hashes it with blocking reads
// into one buffer of its own (no byte of it crosses to the main thread) and answers with the digest. Jobs
// run one after another; a second worker, so that a file being hashed never holds up a download's hash.
const FILE_WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const buf = Buffer.allocUnsafeSlow(${FILE_READ_BYTES});
parentPort.on('message', (m) => {
  let fd = -1;
  try {
    fd = fs.openSync(m.file, 'r');
    const h = createHash('sha256');
    let size = 0;
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; size += n) h.update(buf.subarray(0, n));
    parentPort.postMessage({ id: m.id, hex: h.digest('hex'), size });
  } catch (err) {
    parentPort.postMessage({ id: m.id, message: String(err && err.message || err), code: err && err.code });
  } finally {
    if (fd >= 0) try { fs.closeSync(fd); } catch {}
  }
});
`;

let fileWorker: Worker | null = null;
const fileJobs = new Map<number, { resolve: (r: { sha256: string; size: number }) => void; reject: (e: Error) => void; worker: Worker }>();

function theFileWorker(): Worker {
  if (fileWorker) return fileWorker;
  const w = new Worker(FILE_WORKER_SOURCE, { eval: true });
  w.on('message', (m: { id: number; hex?: string; size?: number; message?: string; code?: string }) => {
    const j = fileJobs.get(m.id);
    if (!j) return;
    fileJobs.delete(m.id);
    if (fileJobs.size === 0) w.unref();
    if (m.hex !== undefined) j.resolve({ sha256: m.hex, size: m.size! });
    else j.reject(Object.assign(new Error(`hash thread: ${m.message}`), m.code ? { code: m.code } : {}));
  });
  const fail = (err: Error) => {
    if (fileWorker === w) fileWorker = null;
    const held = [...fileJobs].filter(([, j]) => j.worker === w);
    for (const [id, j] of held) { fileJobs.delete(id); j.reject(err); }
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`file hash thread exited (code ${code})`)));
  w.unref();
  fileWorker = w;
  return w;
}

/**
 * The SHA-256 of a file and the bytes it had, read and hashed on a thread of the process's own: nothing of
 * it on the calling thread. A large download is hashed this way after it is made local (agent/data-cache.ts,
 * deferred hashes) instead of as it comes. Rejects with the read's error (its `code`, ENOENT say).
 */
export function hashFile(file: string): Promise<{ sha256: string; size: number }> {
  const w = theFileWorker();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    fileJobs.set(id, { resolve, reject, worker: w });
    w.ref();
    w.postMessage({ id, file });
  });
}

/**
 * Ends the hash thread now; the jobs open on it fail (their downloads fail, and are retried, as when the
 * thread dies), and the next job starts a new one. For tests, and a process that wants no thread left.
 */
export async function stopHashThread(): Promise<void> {
  const w = worker;
  if (w) await w.terminate();
  const f = fileWorker;
  if (f) await f.terminate();
}

/** The hash for an object of `size` bytes: on the hash thread when it is large. */
export function hashFor(size: number): ByteHash {
  return size >= HASH_THREAD_MIN_BYTES ? threadHash() : inThreadHash();
}
