// The scheduler's side of checkpoints (shared/checkpoints.ts has the layout): find the latest complete
// checkpoint a new attempt starts from (its own run's earlier attempts first, then the run --resume-from
// named), and delete a run's checkpoints once it ended Successful. Only a pointer (latest.json) makes a
// checkpoint complete, and a pointer is read here whole and checked before anything is handed on.
import type { Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { RunsTable } from '../db/database.js';
import { checkpointKeys, MAX_POINTER_BYTES, parsePointer, type CheckpointPointer } from '../../shared/checkpoints.js';
import { errorMessage } from '../../shared/errors.js';
import { removePrefix, withStorageRetry } from '../../shared/storage.js';
import { checkpointsDeleted } from './checkpoint-report.js';

/** One attempt's pointer: null when it wrote none (or one that does not hold up, which is logged and never used). */
async function readPointer(ctx: SchedulerContext, runId: string, attempt: number): Promise<CheckpointPointer | null> {
  const key = checkpointKeys.pointer(runId, attempt);
  const text = await withStorageRetry(`read ${key}`, async () => {
    let body: NodeJS.ReadableStream;
    try {
      body = await ctx.minio.getObject(ctx.settings.bucket, key);
    } catch (err) {
      if ((err as { code?: string }).code === 'NoSuchKey') return null;
      throw err;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of body as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > MAX_POINTER_BYTES) return '';
      chunks.push(c);
    }
    return Buffer.concat(chunks).toString('utf8');
  }, ctx.storageRetry);
  if (text === null) return null;
  try {
    return parsePointer(text, runId, attempt);
  } catch (err) {
    ctx.log.warn({ run: runId, attempt, err: errorMessage(err) }, 'checkpoint pointer refused; that attempt\'s checkpoints are not used');
    return null;
  }
}

/** The newest complete checkpoint of a run, from attempt `upTo` down to 1; null when none has one. */
export async function latestCheckpoint(ctx: SchedulerContext, runId: string, upTo: number): Promise<CheckpointPointer | null> {
  for (let a = upTo; a >= 1; a--) {
    const p = await readPointer(ctx, runId, a);
    if (p) return p;
  }
  return null;
}

/**
 * What the run's current attempt starts from: the latest complete checkpoint of its earlier attempts,
 * else (a first attempt, or earlier ones that wrote none) that of the run --resume-from named, else none.
 */
export async function checkpointForAttempt(ctx: SchedulerContext, r: Pick<Selectable<RunsTable>, 'id' | 'attempt' | 'resume_from' | 'project'>): Promise<CheckpointPointer | null> {
  const own = r.attempt > 1 ? await latestCheckpoint(ctx, r.id, r.attempt - 1) : null;
  if (own || !r.resume_from) return own;
  // Checked at submit; checked again here (same project), as the source may have been replaced since.
  const src = await ctx.db.selectFrom('runs').select(['id', 'attempt', 'project']).where('id', '=', r.resume_from).executeTakeFirst();
  if (!src || src.project !== r.project) return null;
  return latestCheckpoint(ctx, src.id, src.attempt);
}

/** What the success read of a run's checkpoints: whether it keeps them, and the bytes they count. */
export interface RunCheckpoints { keep: boolean; bytes: number }

/**
 * Retention: a run that ended Successful loses its checkpoints unless it was submitted with
 * --keep-checkpoints. Best effort, after the success committed: a failure is logged and leaves them (they
 * are still under the run's prefix, which deleting the run removes).
 */
export async function dropCheckpointsAfterSuccess(ctx: SchedulerContext, runId: string, known?: RunCheckpoints): Promise<void> {
  try {
    // The success read the run a moment before (a statement less per run; --keep-checkpoints is the submit's).
    const run = known ?? await ctx.db.selectFrom('runs').select(['keep_checkpoints as keep', 'checkpoint_bytes as bytes']).where('id', '=', runId).executeTakeFirst()
      .then((r) => r && { keep: r.keep, bytes: Number(r.bytes) });
    if (!run || run.keep) return;
    // Listed even when no checkpoint was reported: a report can be lost after its upload.
    const n = await removePrefix(ctx.minio, ctx.settings.bucket, checkpointKeys.runPrefix(runId), ctx.storageRetry);
    // Nothing removed and nothing counted: nothing to set to zero (a run that wrote no checkpoint, most).
    if (n > 0 || run.bytes !== 0) await checkpointsDeleted(ctx.db, runId);
    if (n > 0) ctx.log.info({ run: runId, objects: n }, 'checkpoints deleted after success');
  } catch (err) {
    ctx.log.warn({ run: runId, err: errorMessage(err) }, 'could not delete the checkpoints of a successful run');
  }
}
