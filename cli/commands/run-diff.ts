// `trainyard run diff A B`: what differed between two runs (the comparison itself is shared/run-diff.ts,
// which the console's Compare page shows too).
import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, type Parsed } from '../verb.js';
import { color, safeText } from '../format.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import type { Run__Output } from '../../shared/proto.js';
import { diffLineage, diffSummary, type Lineage } from '../../shared/run-diff.js';

export { diffLineage, diffSummary, type Difference } from '../../shared/run-diff.js';

export const runDiffFlags = flags({ json: jsonFlag });

const lineageOf = (r: Run__Output): Lineage => {
  // The run's state, not the command line: exit 1, as any refusal of what is there.
  if (!r.lineage_json) throw new TrainyardError(ErrorCodes.FailedPrecondition, `run ${r.id} has no lineage (${r.status}): only a Successful run records one`);
  return JSON.parse(r.lineage_json) as Lineage;
};

export async function runDiff({ values, positionals }: Parsed<typeof runDiffFlags>, address: string): Promise<number> {
  const [a = '', b = ''] = positionals;
  if (!a || !b) throw invalid('run diff: give two run ids');
  const [ra, rb, ma, mb] = await withApi(address, (api) => Promise.all([api.getRun(a), api.getRun(b),
    api.getRunMetrics({ run_id: a, max_points: 8, names: [] }), api.getRunMetrics({ run_id: b, max_points: 8, names: [] })]));
  const diffs = [...diffLineage(lineageOf(ra), lineageOf(rb)), ...diffSummary(ma.summary, mb.summary)];
  if (values.json) {
    console.log(JSON.stringify({ a, b, same: diffs.length === 0, differences: diffs }, null, 2));
    return 0;
  }
  if (diffs.length === 0) {
    console.log(`${color.green('same')}: ${safeText(a)} and ${safeText(b)} ran the same code on the same data with the same packages, env and agent`);
    return 0;
  }
  for (const d of diffs) {
    const show = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v) : JSON.stringify(v) ?? '-');
    console.log(`${color.bold(d.what)}: ${safeText(show(d.a))} → ${safeText(show(d.b))}`);
    for (const line of (d.detail ?? []).slice(0, 50)) console.log(`  ${safeText(line)}`);
    if ((d.detail?.length ?? 0) > 50) console.log(color.dim(`  … ${d.detail!.length - 50} more`));
  }
  return 0;
}
