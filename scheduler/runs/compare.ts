// Two runs compared for the console's Compare page (GET /api/runs/:id/diff?against=OTHER): the differences
// `trainyard run diff` prints (shared/run-diff.ts: code, data manifests, packages, env, agent, score, and the
// metrics summaries), from `against` to `id`. A run that recorded no lineage (only a Successful run does)
// is said to have none, with the summaries still compared, rather than failing the page.
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import { diffLineage, diffSummary, type Difference, type Lineage } from '../../shared/run-diff.js';
import { getRun } from './read.js';

export interface RunComparison { a: string; b: string; lineage: boolean; differences: Difference[]; missing_lineage: string[] }

async function summary(ctx: SchedulerContext, id: string): Promise<{ name: string; value: number }[]> {
  const { rows } = await sql<{ name: string; value: number }>`SELECT name, value FROM run_metric_summary WHERE run_id = ${id} ORDER BY name`.execute(ctx.db);
  return rows;
}

/** From run `a` to run `b`; the caller has checked that it may read both. */
export async function compareRuns(ctx: SchedulerContext, a: string, b: string): Promise<RunComparison> {
  const [ra, rb] = await Promise.all([getRun(ctx, a), getRun(ctx, b)]);
  const la = ra.lineage_json ? JSON.parse(ra.lineage_json) as Lineage : null;
  const lb = rb.lineage_json ? JSON.parse(rb.lineage_json) as Lineage : null;
  const differences = [...(la && lb ? diffLineage(la, lb) : []), ...diffSummary(await summary(ctx, a), await summary(ctx, b))];
  return { a, b, lineage: !!(la && lb), differences, missing_lineage: [...(la ? [] : [a]), ...(lb ? [] : [b])] };
}
