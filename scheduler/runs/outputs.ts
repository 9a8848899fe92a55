// A run's outputs: DownloadOutputs (every object the current attempt wrote, as a file header then its
// bytes), and for the web console the list of those objects and one of them by its path.
import type { SchedulerContext } from '../context.js';
import type { OutputChunk } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { keys, listObjects, withStorageRetry } from '../../shared/storage.js';
import { getRun } from './read.js';

export async function* runOutputs(ctx: SchedulerContext, runId: string, signal: AbortSignal): AsyncGenerator<OutputChunk> {
  const run = await getRun(ctx, runId);
  if (!run.attempt) throw notFound(`run ${runId} has no outputs: it never started`);
  const prefix = keys.attemptPrefix(runId, run.attempt);
  const objects = await listObjects(ctx.minio, ctx.settings.bucket, prefix, { ...ctx.storageRetry, signal });
  if (objects.length === 0) throw notFound(`run ${runId} has no outputs in the bucket (${prefix})`);
  for (const o of objects) {
    yield { file: { path: o.key.slice(prefix.length), size_bytes: o.size } };
    const body = await withStorageRetry(`download ${o.key}`, () => ctx.minio.getObject(ctx.settings.bucket, o.key), { ...ctx.storageRetry, signal });
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

async function attemptPrefix(ctx: SchedulerContext, runId: string): Promise<{ attempt: number; prefix: string }> {
  const run = await getRun(ctx, runId);
  if (!run.attempt) throw notFound(`run ${runId} has no outputs: it never started`);
  return { attempt: run.attempt, prefix: keys.attemptPrefix(runId, run.attempt) };
}

/** The run's current attempt's objects, as paths under its prefix (empty while it has written none). */
export async function listRunOutputs(ctx: SchedulerContext, runId: string, signal?: AbortSignal): Promise<{ attempt: number; prefix: string; files: { path: string; size_bytes: number }[] }> {
  const { attempt, prefix } = await attemptPrefix(ctx, runId);
  const objects = await listObjects(ctx.minio, ctx.settings.bucket, prefix, { ...ctx.storageRetry, retries: 1, signal });
  return { attempt, prefix, files: objects.map((o) => ({ path: o.key.slice(prefix.length), size_bytes: o.size })) };
}

/** One output file of the run's current attempt: its size and its bytes (NOT_FOUND when there is none). */
export async function openRunOutput(ctx: SchedulerContext, runId: string, rel: string, signal?: AbortSignal): Promise<{ size: number; body: NodeJS.ReadableStream }> {
  const path = checkOutputPath(rel);
  const { prefix } = await attemptPrefix(ctx, runId);
  const key = prefix + path;
  const retry = { ...ctx.storageRetry, retries: 1, signal };
  const stat = await withStorageRetry(`stat ${key}`, () => ctx.minio.statObject(ctx.settings.bucket, key), retry).catch((err: unknown) => {
    // NoSuchKey (or NotFound) is permanent: withStorageRetry says STORAGE_REJECTED at once.
    if (err instanceof TrainyardError && err.code === ErrorCodes.StorageRejected) throw notFound(`run ${runId} has no output "${path}"`);
    throw err;
  });
  const body = await withStorageRetry(`download ${key}`, () => ctx.minio.getObject(ctx.settings.bucket, key), retry);
  return { size: stat.size, body };
}
