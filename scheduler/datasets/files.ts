// A dataset's files, for the console's dataset tree: every object under datasets/NAME/, as paths and sizes.
import type { SchedulerContext } from '../context.js';
import { checkName } from '../../shared/names.js';
import { notFound } from '../../shared/errors.js';
import { keys, listObjects } from '../../shared/storage.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorizeObject } from '../auth/policy.js';

export async function datasetFiles(ctx: SchedulerContext, datasetName: string, caller: Principal, signal?: AbortSignal): Promise<{ path: string; size_bytes: number }[]> {
  const name = checkName('dataset', datasetName);
  const row = await ctx.db.selectFrom('datasets').select('project').where('name', '=', name).executeTakeFirst();
  const missing = () => notFound(`dataset "${name}" not found`);
  if (!row) throw missing();
  authorizeObject(caller, Actions.ReadDataset, row.project, missing);
  const prefix = keys.datasetPrefix(name);
  const objects = await listObjects(ctx.minio, ctx.settings.bucket, prefix, { ...ctx.storageRetry, retries: 1, signal });
  return objects.map((o) => ({ path: o.key.slice(prefix.length), size_bytes: o.size }));
}
