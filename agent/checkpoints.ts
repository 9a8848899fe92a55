// One attempt's checkpoints on the agent (README, "Checkpoints"; shared/checkpoints.ts has the bucket's
// layout). Before the run's code starts, the checkpoint the scheduler named is fetched into
// checkpoint_directory, exactly the files its pointer lists. While the run runs, what it writes there is
// uploaded as a new checkpoint: when it asks (trainyard_checkpoint.commit() leaves a marker file, removed
// here once the checkpoint is complete), every --checkpoint-interval, and once more when the agent stops
// the attempt (kill, drain, --stall-timeout, preemption), within what is left of the kill grace after the
// run's processes are gone. The same loop watches for stalls: no log line, checkpoint or progress mark
// (trainyard_checkpoint.progress()) for --stall-timeout, per rank in a gang (agent/rank-activity.ts).
//
// The folder is the run uid's and the run is alive while it is read: it is read as outputs are, from
// descriptors (shared/anchored-dir.ts), none of its path followed, each file checked to be the regular file
// that was listed and sent at exactly the size listed, so a run cannot make the agent upload anything from
// outside it. A file the run rewrites while it is sent makes that checkpoint fail or hold a torn file: a
// run that wants a consistent one writes it and calls commit(), which returns once it is in the bucket.
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as Minio from 'minio';
import { AnchoredDir, NotPlainPath, type AnchoredFile } from '../shared/anchored-dir.js';
import {
  checkpointKeys, checkpointMarkers, isMarker, MAX_CHECKPOINT_FILES, parsePointer, resumedFromOf, type CheckpointPointer, type ResumedFrom,
} from '../shared/checkpoints.js';
import { ErrorCodes, errorMessage, TrainyardError } from '../shared/errors.js';
import { uploadBuffer, uploadDir, withStorageRetry, type RetryOptions } from '../shared/storage.js';
import { downloadRanged } from '../shared/ranged-download.js';
import { RankActivity } from './rank-activity.js';

/** How often the folder is looked at for the helper's markers (and the timer and the stall checked). */
const POLL_MS = 500;

export type CommitResult = 'committed' | 'unchanged' | 'empty' | 'failed';

export interface CheckpointOptions {
  runId: string;
  attempt: number;
  bucket: string;
  /** The attempt's folder; checkpoint_directory is its child `folderName` (the agent's folder, the run's child). */
  attemptDir: string;
  folderName: string;
  /** The attempt's storage client (its own credentials, renewed while the attempt is current). */
  storage: () => Promise<Minio.Client>;
  /** Retries, backoff and the signal of one transfer. */
  retry: (signal: AbortSignal) => RetryOptions;
  /** A line in the run's log. */
  say: (line: string) => void;
  warn: (msg: string, err: unknown) => void;
  /** Told of each checkpoint once it is complete (its pointer written), before commit() returns to the run. */
  committed?: (p: CheckpointPointer, signal: AbortSignal) => Promise<void>;
  /** A gang member's global ranks, each watched for silence on its own (agent/rank-activity.ts); none: an ordinary run. */
  ranks?: readonly number[];
}

export interface WatchOptions {
  /** Between timed uploads; 0 or less: none. */
  intervalMs: number;
  /** No activity for this long calls onStall (once); 0: off. */
  stallMs: number;
  onStall: (reason: string) => void;
}

/** The pointer the dispatch carried (the scheduler read and checked it), checked again: a dispatch is not trusted. */
export function resumePointer(json: string | undefined): CheckpointPointer | null {
  if (!json) return null;
  const head = JSON.parse(json) as { run_id?: unknown; attempt?: unknown };
  return parsePointer(json, String(head.run_id), Number(head.attempt));
}

/** Whose progress mark `name` is: null for the unnamed one, R for ".trainyard-progress.R", undefined for any other name. */
function progressRank(name: string): number | null | undefined {
  if (name === checkpointMarkers.progress) return null;
  const m = name.startsWith(`${checkpointMarkers.progress}.`) ? /^(\d{1,6})$/.exec(name.slice(checkpointMarkers.progress.length + 1)) : null;
  return m ? Number(m[1]) : undefined;
}

export class RunCheckpoints {
  #seq = 0;
  /** What the last complete checkpoint held (paths, sizes, inodes, times): the same folder is not sent twice. */
  #lastSignature: string | null = null;
  /** The keys of the last complete checkpoint: removed once a newer one is complete. */
  #lastKeys: string[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  readonly #activity: RankActivity;
  #watch: AbortController | null = null;
  #graceTimer: NodeJS.Timeout | null = null;
  /** When the grace stopping() began ends (ms since the epoch); null while the attempt is not being stopped. */
  #graceEndsAt: number | null = null;
  #loop: Promise<void> = Promise.resolve();

  constructor(private readonly o: CheckpointOptions) {
    this.#activity = new RankActivity(o.ranks ?? []);
  }

  get folder(): string { return path.join(this.o.attemptDir, this.o.folderName); }

  /**
   * Fetches a checkpoint into checkpoint_directory (the agent's still; nothing of the run has run): exactly
   * the files its pointer lists, each checked to be the size listed. Anything else fails the attempt.
   */
  async restore(p: CheckpointPointer, signal: AbortSignal): Promise<ResumedFrom> {
    const client = await this.o.storage();
    // Each file as a dataset's large file comes (parallel ranges read into reused memory; not hashed: no
    // lineage names a checkpoint's bytes), checked to be of the size its pointer lists: one that is not, or
    // is gone, fails as STORAGE_REJECTED. An empty file has no range to ask for: its object is looked at
    // (HEAD), so it must be there and empty too, and one that is not is never downloaded.
    for (const f of p.files) {
      const key = p.prefix + f.path;
      const dest = path.join(this.folder, ...f.path.split('/'));
      if (f.size > 0) {
        await downloadRanged(client, this.o.bucket, key, dest, f.size, '', this.o.retry(signal), { hash: false });
        continue;
      }
      const stored = await withStorageRetry(`stat ${key}`, () => client.statObject(this.o.bucket, key), this.o.retry(signal));
      if (stored.size !== 0) throw new TrainyardError(ErrorCodes.StorageRejected, `checkpoint file ${f.path} has ${stored.size} bytes in the bucket, its pointer says 0`);
      await mkdir(path.dirname(dest), { recursive: true });
      await writeFile(dest, '', { mode: 0o644 });
    }
    this.o.say(`[trainyard] resumed from checkpoint ${p.seq} of ${p.run_id} attempt ${p.attempt} (${p.files.length} files, ${p.bytes} bytes, committed ${new Date(p.committed_at * 1000).toISOString()})`);
    return resumedFromOf(p);
  }

  /** A sign of life from the run: a line of its output (for the rank it names), or, without one, of every rank. */
  activity(line?: string): void {
    if (line === undefined) this.#activity.rank(null);
    else this.#activity.line(line);
  }

  /** Starts watching the folder while the run's process lives. */
  watch(w: WatchOptions): void {
    const ctl = new AbortController();
    this.#watch = ctl;
    this.#activity.reset();
    // Stopped before the process was even watched: the grace is already running.
    if (this.#graceEndsAt !== null) this.#cutOffAt(this.#graceEndsAt);
    this.#loop = this.#run(w, ctl.signal).catch((err: unknown) => { if (!ctl.signal.aborted) this.o.warn('checkpoint watch ended', err); });
  }

  /**
   * The agent stops the attempt (SIGTERM now): uploads, the run's own commit() included, go on until
   * `graceMs` from now and are cut off then. Call afterStop() once the run's processes are gone.
   */
  stopping(graceMs: number): void {
    if (this.#graceEndsAt !== null) return;
    this.#graceEndsAt = Date.now() + graceMs;
    if (this.#watch) this.#cutOffAt(this.#graceEndsAt);
  }

  #cutOffAt(at: number): void {
    const ctl = this.#watch!;
    this.#graceTimer = setTimeout(() => ctl.abort(new Error('kill grace over')), Math.max(0, at - Date.now()));
    this.#graceTimer.unref();
  }

  /**
   * "Checkpoint now, within the grace": one last upload of the folder as the run left it, in whatever is
   * left of the grace stopping() began (none, when the run used all of it). For kill, drain, stall and
   * preemption alike.
   */
  async afterStop(): Promise<CommitResult> {
    const ctl = this.#watch;
    if (!ctl || ctl.signal.aborted) return 'failed';
    return this.commitNow('stop', ctl.signal);
  }

  /** Stops watching; an upload still running is cut off. */
  async unwatch(): Promise<void> {
    this.#watch?.abort(new Error('attempt over'));
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    await this.#loop;
    await this.#chain.catch(() => {});
  }

  /** One checkpoint of the folder now (after any upload in progress): what `trigger` says made it. */
  commitNow(trigger: string, signal: AbortSignal): Promise<CommitResult> {
    const next = this.#chain.then(() => this.#commit(trigger, signal), () => this.#commit(trigger, signal));
    this.#chain = next.catch(() => {});
    return next;
  }

  async #run(w: WatchOptions, signal: AbortSignal): Promise<void> {
    let lastTimed = Date.now();
    let stalled = false;
    while (!signal.aborted) {
      await sleep(POLL_MS, undefined, { signal }).catch(() => {});
      if (signal.aborted) return;
      const seen = await this.#markers().catch((err: unknown) => { this.o.warn('could not look at checkpoint_directory', err); return { commit: false, progress: [] }; });
      for (const rank of seen.progress) this.#activity.rank(rank);
      if (seen.commit) {
        await this.commitNow('commit', signal);
        // Removed whatever became of the upload: the run's commit() waits for that, and the log says how it went.
        await this.#removeMarker(checkpointMarkers.commit);
        lastTimed = Date.now();
      } else if (w.intervalMs > 0 && Date.now() - lastTimed >= w.intervalMs) {
        await this.commitNow('interval', signal);
        lastTimed = Date.now();
      }
      const silent = !stalled && w.stallMs > 0 ? this.#activity.silent(w.stallMs) : undefined;
      if (silent) {
        stalled = true;
        const who = silent.rank === null ? '' : `rank ${silent.rank}: `;
        w.onStall(`stalled: ${who}no log line, checkpoint or progress mark for ${Math.round(w.stallMs / 1000)} s`);
      }
    }
  }

  /**
   * The helper's markers in the folder; each progress mark is taken (removed) as it is seen, and says whose
   * it is: a gang's rank R leaves ".trainyard-progress.R" (null: unnamed, every rank's).
   */
  async #markers(): Promise<{ commit: boolean; progress: (number | null)[] }> {
    const dir = await this.#open();
    if (!dir) return { commit: false, progress: [] };
    try {
      const names = new Set(await dir.names());
      const progress: (number | null)[] = [];
      for (const name of names) {
        const rank = progressRank(name);
        if (rank === undefined) continue;
        progress.push(rank);
        await unlink(dir.at(name)).catch(() => {});
      }
      return { commit: names.has(checkpointMarkers.commit), progress };
    } finally {
      await dir.close();
    }
  }

  async #removeMarker(name: string): Promise<void> {
    const dir = await this.#open().catch(() => null);
    if (!dir) return;
    try { await unlink(dir.at(name)).catch(() => {}); } finally { await dir.close(); }
  }

  /** checkpoint_directory, opened from the attempt's folder down without following a link; null if gone. */
  async #open(): Promise<AnchoredDir | null> {
    const root = await AnchoredDir.open(this.o.attemptDir);
    try { return await root.openDir(this.o.folderName); } finally { await root.close(); }
  }

  async #commit(trigger: string, signal: AbortSignal): Promise<CommitResult> {
    if (signal.aborted) return 'failed';
    let dir: AnchoredDir | null = null;
    try {
      dir = await this.#open();
      if (!dir) return 'empty';
      const files = await dir.files(isMarker);
      if (files.length === 0) return 'empty';
      const signature = JSON.stringify(files.map((f) => [f.rel, f.size, f.ino, f.mtimeMs]));
      if (signature === this.#lastSignature) { this.activity(); return 'unchanged'; }
      if (files.length > MAX_CHECKPOINT_FILES) throw new TrainyardError(ErrorCodes.ResourceExhausted, `checkpoint_directory holds ${files.length} files, over ${MAX_CHECKPOINT_FILES}`);
      const seq = ++this.#seq;
      const pointer = await this.#upload(dir, files, seq, trigger, signal);
      this.#lastSignature = signature;
      this.activity();
      this.o.say(`[trainyard] checkpoint ${seq} committed (${trigger}): ${pointer.files.length} files, ${pointer.bytes} bytes`);
      // Within the same signal: in the kill grace, the report never outlasts what is left of it.
      await this.o.committed?.(pointer, signal);
      return 'committed';
    } catch (err) {
      const why = err instanceof NotPlainPath ? `checkpoint_directory ${err.message}` : errorMessage(err);
      this.o.say(`[trainyard] checkpoint (${trigger}) not committed: ${why}`);
      return 'failed';
    } finally {
      await dir?.close();
    }
  }

  /** Every file into a new folder, then the pointer (last: only now does the checkpoint count), then the older one's files go. */
  async #upload(dir: AnchoredDir, files: AnchoredFile[], seq: number, trigger: string, signal: AbortSignal): Promise<CheckpointPointer> {
    const { runId, attempt, bucket } = this.o;
    const prefix = checkpointKeys.folder(runId, attempt, seq);
    const client = await this.o.storage();
    const up = await uploadDir(client, bucket, dir, files, prefix, this.o.retry(signal));
    const pointer: CheckpointPointer = {
      version: 1, run_id: runId, attempt, seq, prefix, committed_at: Date.now() / 1000, bytes: up.bytes,
      files: files.map((f) => ({ path: f.rel, size: f.size })), trigger,
    };
    await uploadBuffer(client, bucket, checkpointKeys.pointer(runId, attempt), Buffer.from(JSON.stringify(pointer)), this.o.retry(signal), { headers: { 'Content-Type': 'application/json' } });
    const older = this.#lastKeys;
    this.#lastKeys = files.map((f) => prefix + f.rel);
    if (older.length) {
      for (let i = 0; i < older.length; i += 1000) {
        const batch = older.slice(i, i + 1000);
        await withStorageRetry('remove an older checkpoint', () => client.removeObjects(bucket, batch), this.o.retry(signal))
          .catch((err: unknown) => this.o.warn('could not remove an older checkpoint', err));
      }
    }
    return pointer;
  }
}
