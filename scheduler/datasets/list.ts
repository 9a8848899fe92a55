// `trainyard dataset list`: every dataset, by name.
import type { SchedulerContext } from '../context.js';
import type { Dataset } from '../../shared/proto.js';
import { datasetToProto } from './to-proto.js';

export async function listDatasets(ctx: SchedulerContext): Promise<Dataset[]> {
  const rows = await ctx.db.selectFrom('datasets').selectAll().orderBy('name').execute();
  return rows.map(datasetToProto);
}
