// A run's outputs: DownloadOutputs (every object the current attempt wrote, as a file header then its
// bytes), and for the web console the list of those objects and one of them by its path.
//
// An ended run's outputs are what its attempt left when it ended (runs.outputs, recorded by complete.ts
// at a success and at an end the agent reported), each read on condition of its recorded ETag: the
// attempt's credentials live on for up to their lifetime after the end and may still write under its
// prefix, but a new object is never listed and a replaced one is refused (FAILED_PRECONDITION naming
// it), never served. A run with no record (running, ended by the scheduler itself, such as lost with no
// attempts left, or from before the record) is served as its prefix lists now.
import type { SchedulerContext } from '../context.js';
import type { OutputChunk } from '../../shared/proto.js';
import type { RecordedOutput } from '../db/database.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { getObjectIfMatch, keys, listObjects, withStorageRetry, type RetryOptions } from '../../shared/storage.js';

interface Attempt { attempt: number; prefix: string; recorded: RecordedOutput[] | null }

async function currentAttempt(ctx: SchedulerContext, runId: string): Promise<Attempt> {
  const run = await ctx.db.selectFrom('runs').select(['attempt', 'outputs']).where('id', '=', runId).executeTakeFirst();
  if (!run) throw notFound(`run ${runId} not found`);
  if (!run.attempt) throw notFound(`run ${runId} has no outputs: it never started`);
  return { attempt: run.attempt, prefix: keys.attemptPrefix(runId, run.attempt), recorded: run.outputs };
}

/** The attempt's files: as recorded at its commit, else as listed now. */
async function filesOf(ctx: SchedulerContext, a: Attempt, retry: RetryOptions): Promise<RecordedOutput[]> {
  if (a.recorded) return a.recorded;
  return (await listObjects(ctx.minio, ctx.settings.bucket, a.prefix, retry)).map((o) => ({ path: o.key.slice(a.prefix.length), size: o.size, etag: o.etag }));
}

/** One file's bytes; a recorded one only while it is still the object recorded. */
async function bodyOf(ctx: SchedulerContext, runId: string, a: Attempt, f: RecordedOutput, retry: RetryOptions): Promise<NodeJS.ReadableStream> {
  const key = a.prefix + f.path;
  if (!a.recorded) return withStorageRetry(`download ${key}`, () => ctx.minio.getObject(ctx.settings.bucket, key), retry);
  try {
    return await getObjectIfMatch(ctx.minio, ctx.settings.bucket, key, f.etag, retry);
  } catch (err) {
    if (err instanceof TrainyardError && err.code === ErrorCodes.StorageRejected) {
      throw new TrainyardError(ErrorCodes.FailedPrecondition, `run ${runId}'s output "${f.path}" is not the object its attempt left when the run committed (it was replaced or removed since); it is not served`, { cause: err });
    }
    throw err;
  }
}

export async function* runOutputs(ctx: SchedulerContext, runId: string, signal: AbortSignal): AsyncGenerator<OutputChunk> {
  const a = await currentAttempt(ctx, runId);
  const retry = { ...ctx.storageRetry, signal };
  const files = await filesOf(ctx, a, retry);
  if (files.length === 0) throw notFound(`run ${runId} has no outputs in the bucket (${a.prefix})`);
  for (const f of files) {
    // Opened before its header goes out: a refused file ends the stream before any of its bytes.
    const body = await bodyOf(ctx, runId, a, f, retry);
    yield { file: { path: f.path, size_bytes: f.size } };
    for await (const chunk of body) yield { data: chunk as Buffer };
  }
}

/**
 * A path inside an attempt's prefix, as the console names an output file: relative, '/'-separated, no
 * empty, '.' or '..' segment, no backslash or NUL, so the key it makes stays under the prefix.
 */
export function checkOutputPath(rel: string): string {
  const segments = rel.split('/');
  if (!rel || rel.length > 1024 || /[\\\0]/.test(rel) || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw invalid(`"${rel}" is not a path inside the run's outputs (relative, no "..", no empty segment)`);
  }
  return rel;
}

/** The run's current attempt's objects, as paths under its prefix (empty while it has written none). */
export async function listRunOutputs(ctx: SchedulerContext, runId: string, signal?: AbortSignal): Promise<{ attempt: number; prefix: string; files: { path: string; size_bytes: number }[] }> {
  const a = await currentAttempt(ctx, runId);
  const files = await filesOf(ctx, a, { ...ctx.storageRetry, retries: 1, signal });
  return { attempt: a.attempt, prefix: a.prefix, files: files.map((f) => ({ path: f.path, size_bytes: f.size })) };
}

/** One output file of the run's current attempt: its size and its bytes (NOT_FOUND when there is none). */
export async function openRunOutput(ctx: SchedulerContext, runId: string, rel: string, signal?: AbortSignal): Promise<{ size: number; body: NodeJS.ReadableStream }> {
  const path = checkOutputPath(rel);
  const a = await currentAttempt(ctx, runId);
  const key = a.prefix + path;
  const retry = { ...ctx.storageRetry, retries: 1, signal };
  const missing = () => notFound(`run ${runId} has no output "${path}"`);
  if (a.recorded) {
    const f = a.recorded.find((o) => o.path === path);
    if (!f) throw missing();
    return { size: f.size, body: await bodyOf(ctx, runId, a, f, retry) };
  }
  const stat = await withStorageRetry(`stat ${key}`, () => ctx.minio.statObject(ctx.settings.bucket, key), retry).catch((err: unknown) => {
    // NoSuchKey (or NotFound) is permanent: withStorageRetry says STORAGE_REJECTED at once.
    if (err instanceof TrainyardError && err.code === ErrorCodes.StorageRejected) throw missing();
    throw err;
  });
  const body = await withStorageRetry(`download ${key}`, () => ctx.minio.getObject(ctx.settings.bucket, key), retry);
  return { size: stat.size, body };
}
