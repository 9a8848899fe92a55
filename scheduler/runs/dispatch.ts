import type { Db } from '../db/database.js';
import type { Dispatch } from '../../shared/proto.js';
import { keys } from '../../shared/storage.js';
import { formatVersion } from '../../shared/versions.js';

/** The message an agent needs to run the current attempt, read fresh from the run's row. */
export async function buildDispatch(db: Db, runId: string, bucket: string): Promise<Dispatch | null> {
  const r = await db.selectFrom('runs').selectAll().where('id', '=', runId).where('agent', 'is not', null).executeTakeFirst();
  if (!r || r.lease === null) return null;
  return {
    run_id: r.id,
    lease: r.lease,
    attempt: r.attempt,
    package: r.package,
    version: formatVersion({ major: r.package_major, minor: r.package_minor }),
    package_object_key: r.package_object_key,
    dataset: r.dataset_sub ? `${r.dataset}/${r.dataset_sub}` : r.dataset,
    dataset_prefix: keys.datasetPrefix(r.dataset, r.dataset_sub),
    env: r.env,
    gpu_indices: r.gpu_indices,
    timeout_seconds: r.timeout_seconds,
    output_prefix: keys.attemptPrefix(r.id, r.attempt),
    bucket,
  };
}
