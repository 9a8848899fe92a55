// DownloadOutputs: every object the run's current attempt wrote, as a file header then its bytes.
import type { SchedulerContext } from '../context.js';
import type { OutputChunk } from '../../shared/proto.js';
import { notFound } from '../../shared/errors.js';
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
