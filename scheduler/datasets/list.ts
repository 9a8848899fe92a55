// `trainyard dataset list`: every dataset the caller's project owns (an admin's: every dataset), by name.
import type { SchedulerContext } from '../context.js';
import type { Dataset } from '../../shared/proto.js';
import { datasetToProto } from './to-proto.js';

export async function listDatasets(ctx: SchedulerContext, project: string | null): Promise<Dataset[]> {
  let q = ctx.db.selectFrom('datasets').selectAll().where('deleting_at', 'is', null).orderBy('name');
  if (project !== null) q = q.where('project', '=', project);
  const rows = await q.execute();
  return rows.map(datasetToProto);
}
