// A run's checkpoints in the bucket (README, "Checkpoints"), the one contract the agent (which writes them)
// and the scheduler (which finds the latest for a later attempt, and deletes them after a success) share.
//
//   runs/RUN/checkpoints/attempt-N/SEQ/...        one checkpoint's files (SEQ: 000001, 000002, ...)
//   runs/RUN/checkpoints/attempt-N/latest.json    names the latest COMPLETE one; written last
//
// A checkpoint counts only once its pointer names it: the agent uploads every file of a new SEQ folder
// first and writes the pointer after the last one is in, so a checkpoint cut short (the agent killed
// mid-upload, storage refusing) is never named and never used. The pointer lists every file with its size,
// and an attempt that resumes fetches exactly those, nothing else found under the folder. Attempt N's
// credentials may write only under its own attempt-N/, so a stale attempt cannot replace the pointer a
// newer attempt relies on. Everything sits under runs/RUN/, so whatever removes a run's objects removes
// its checkpoints too.
import { invalid } from './errors.js';

export const checkpointKeys = {
  /** Everything of a run's checkpoints (retention deletes this). */
  runPrefix: (runId: string) => `runs/${runId}/checkpoints/`,
  /** Where one attempt writes its checkpoints (its credentials may write here). */
  attemptPrefix: (runId: string, attempt: number) => `runs/${runId}/checkpoints/attempt-${attempt}/`,
  /** The pointer of one attempt: its latest complete checkpoint. */
  pointer: (runId: string, attempt: number) => `runs/${runId}/checkpoints/attempt-${attempt}/latest.json`,
  /** One checkpoint's folder. */
  folder: (runId: string, attempt: number, seq: number) => `runs/${runId}/checkpoints/attempt-${attempt}/${String(seq).padStart(6, '0')}/`,
};

/** The most files one checkpoint may hold (the pointer lists them all and travels in the dispatch). */
export const MAX_CHECKPOINT_FILES = 10_000;
/** The most a pointer may weigh: it is read whole by the scheduler and sent to the agent. */
export const MAX_POINTER_BYTES = 2 * 1024 * 1024;

/** The names the harness's helper uses inside checkpoint_directory; never uploaded. */
export const checkpointMarkers = {
  /** trainyard_checkpoint.commit(): upload now; the agent removes it once the checkpoint is complete. */
  commit: '.trainyard-commit',
  /** trainyard_checkpoint.progress(): the run is alive (--stall-timeout; a gang's rank R writes `.trainyard-progress.R`); the agent removes it when seen. */
  progress: '.trainyard-progress',
} as const;
export const isMarker = (rel: string) => rel === checkpointMarkers.commit || rel === checkpointMarkers.progress
  || rel.startsWith(`${checkpointMarkers.commit}.`) || rel.startsWith(`${checkpointMarkers.progress}.`);

/** latest.json: one complete checkpoint. */
export interface CheckpointPointer {
  version: 1;
  run_id: string;
  attempt: number;
  seq: number;
  /** The checkpoint's folder (checkpointKeys.folder), ending in '/'. */
  prefix: string;
  /** Unix seconds: when its last file was in. */
  committed_at: number;
  bytes: number;
  /** Paths relative to `prefix`, '/'-separated, with their sizes. */
  files: { path: string; size: number }[];
  /** What made it: commit (the run asked), interval, stop (SIGTERM within the kill grace), stall. */
  trigger: string;
}

/** A relative path that stays inside the folder it is joined to: no '..', no absolute, no empty part. */
export function isPlainRelPath(p: string): boolean {
  if (!p || p.length > 4096 || p.includes('\0') || p.includes('\\') || p.startsWith('/')) return false;
  return p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/**
 * A pointer read from the bucket (the agent wrote it with credentials a run could have taken from it), for
 * the run and attempt whose key it was read from: anything else, or a file path that would leave the
 * folder it is fetched into, is refused.
 */
export function parsePointer(text: string, runId: string, attempt: number): CheckpointPointer {
  let p: Partial<CheckpointPointer>;
  try { p = JSON.parse(text) as Partial<CheckpointPointer>; } catch { throw invalid(`checkpoint pointer of ${runId} attempt ${attempt} is not JSON`); }
  const bad = (why: string) => invalid(`checkpoint pointer of ${runId} attempt ${attempt}: ${why}`);
  if (p.version !== 1 || p.run_id !== runId || p.attempt !== attempt) throw bad('not this attempt\'s');
  if (!Number.isInteger(p.seq) || p.seq! < 1) throw bad('no sequence number');
  if (p.prefix !== checkpointKeys.folder(runId, attempt, p.seq!)) throw bad(`prefix ${String(p.prefix)} is not its folder`);
  if (!Array.isArray(p.files) || p.files.length > MAX_CHECKPOINT_FILES) throw bad('no file list, or too many files');
  let bytes = 0;
  const seen = new Set<string>();
  for (const f of p.files) {
    if (typeof f?.path !== 'string' || !isPlainRelPath(f.path) || seen.has(f.path)) throw bad(`file ${JSON.stringify(f?.path)} is not a plain relative path`);
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw bad(`file ${f.path} has no size`);
    seen.add(f.path);
    bytes += f.size;
  }
  if (p.bytes !== bytes) throw bad('its size is not the sum of its files\'');
  if (typeof p.committed_at !== 'number' || !Number.isFinite(p.committed_at)) throw bad('no commit time');
  return { version: 1, run_id: runId, attempt, seq: p.seq!, prefix: p.prefix, committed_at: p.committed_at, bytes, files: p.files.map((f) => ({ path: f.path, size: f.size })), trigger: typeof p.trigger === 'string' ? p.trigger.slice(0, 32) : '' };
}

/** What a resumed attempt (and run get, the console, the lineage) says it started from. */
export interface ResumedFrom { run_id: string; attempt: number; seq: number; committed_at: number; bytes: number; files: number }
export const resumedFromOf = (p: CheckpointPointer): ResumedFrom => ({ run_id: p.run_id, attempt: p.attempt, seq: p.seq, committed_at: p.committed_at, bytes: p.bytes, files: p.files.length });

/** `resumed_from` as the run's code sees it in its environment: JSON, or '' for a fresh start. */
export function resumedFromEnv(r: ResumedFrom | null): string {
  if (!r) return '';
  return JSON.stringify({ run: r.run_id, attempt: r.attempt, time: new Date(r.committed_at * 1000).toISOString(), size: r.bytes, files: r.files });
}

/** --checkpoint-interval when the run names none (proto 0): ten minutes. */
export const DEFAULT_CHECKPOINT_INTERVAL_S = 600;
