// `trainyard run diff A B`: what differed between two runs, from their lineage (scheduler/runs/lineage.ts):
// the code (the input version's SHA-256), the data (the manifests: which files were added, removed or
// changed), the venv's packages, the env, the agent and GPUs, the score, and the metrics summaries.
import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, type Parsed } from '../verb.js';
import { color, safeText } from '../format.js';
import { invalid } from '../../shared/errors.js';
import type { Run__Output } from '../../shared/proto.js';

export const runDiffFlags = flags({ json: jsonFlag });

type Manifest = { manifest_sha256?: string; manifest?: { path: string; size: number; sha256: string }[] } | null;
interface Lineage {
  input?: { package: string; version: string; sha256: string };
  dataset?: string; eval_dataset?: string | null;
  data?: Manifest; eval_data?: Manifest;
  environment?: { python?: string; packages?: string[] } | null;
  agent?: { name?: string; gpus?: { name: string; uuid: string }[] } | null;
  env?: Record<string, string>; score?: number | null; pipeline?: string;
}

export interface Difference { what: string; a: unknown; b: unknown; detail?: string[] }

function files(m: Manifest): Map<string, string> {
  return new Map((m?.manifest ?? []).map((f) => [f.path, `${f.size}:${f.sha256}`]));
}

/** Added (+), removed (-) and changed (~) names between two maps. */
function changes(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of b) if (!a.has(k)) out.push(`+ ${k}`); else if (a.get(k) !== v) out.push(`~ ${k}`);
  for (const k of a.keys()) if (!b.has(k)) out.push(`- ${k}`);
  return out.sort((x, y) => x.slice(2).localeCompare(y.slice(2)));
}

const pkgMap = (l: Lineage) => new Map((l.environment?.packages ?? []).map((p) => { const i = p.indexOf('=='); return [(i < 0 ? p : p.slice(0, i)).toLowerCase(), p]; }));

export function diffLineage(a: Lineage, b: Lineage): Difference[] {
  const out: Difference[] = [];
  const cmp = (what: string, x: unknown, y: unknown, detail?: string[]) => {
    if (JSON.stringify(x) !== JSON.stringify(y)) out.push({ what, a: x, b: y, ...(detail?.length ? { detail } : {}) });
  };
  cmp('pipeline', a.pipeline, b.pipeline);
  cmp('code (input version sha256)', a.input?.sha256, b.input?.sha256, [`${a.input?.package} ${a.input?.version} → ${b.input?.package} ${b.input?.version}`]);
  cmp('dataset', a.dataset, b.dataset);
  cmp('data (manifest sha256)', a.data?.manifest_sha256, b.data?.manifest_sha256, changes(files(a.data ?? null), files(b.data ?? null)));
  cmp('evaluation dataset', a.eval_dataset ?? null, b.eval_dataset ?? null);
  cmp('evaluation data (manifest sha256)', a.eval_data?.manifest_sha256 ?? null, b.eval_data?.manifest_sha256 ?? null, changes(files(a.eval_data ?? null), files(b.eval_data ?? null)));
  cmp('python', a.environment?.python, b.environment?.python);
  const pa = pkgMap(a); const pb = pkgMap(b);
  const reqs = changes(pa, pb).map((line) => (line.startsWith('~') ? `~ ${pa.get(line.slice(2))} → ${pb.get(line.slice(2))}` : line.startsWith('+') ? `+ ${pb.get(line.slice(2))}` : `- ${pa.get(line.slice(2))}`));
  if (reqs.length) out.push({ what: 'requirements (venv packages)', a: pa.size, b: pb.size, detail: reqs });
  const envChanges = changes(new Map(Object.entries(a.env ?? {})), new Map(Object.entries(b.env ?? {})))
    .map((line) => { const k = line.slice(2); return line.startsWith('~') ? `~ ${k}: ${a.env?.[k]} → ${b.env?.[k]}` : line.startsWith('+') ? `+ ${k}=${b.env?.[k]}` : `- ${k}=${a.env?.[k]}`; });
  if (envChanges.length) out.push({ what: 'env', a: a.env, b: b.env, detail: envChanges });
  cmp('agent', a.agent?.name, b.agent?.name);
  cmp('GPUs', (a.agent?.gpus ?? []).map((g) => g.uuid), (b.agent?.gpus ?? []).map((g) => g.uuid));
  cmp('score', a.score ?? null, b.score ?? null);
  return out;
}

/** The runs' metrics summaries (trainyard.summary in train.py), key by key. */
export function diffSummary(a: { name: string; value: number }[], b: { name: string; value: number }[]): Difference[] {
  const ma = new Map(a.map((x) => [x.name, x.value])); const mb = new Map(b.map((x) => [x.name, x.value]));
  const keys = [...new Set([...ma.keys(), ...mb.keys()])].sort();
  return keys.filter((k) => !Object.is(ma.get(k), mb.get(k))).map((k) => ({ what: `summary ${k}`, a: ma.get(k) ?? null, b: mb.get(k) ?? null }));
}

const lineageOf = (r: Run__Output): Lineage => {
  if (!r.lineage_json) throw invalid(`run ${r.id} has no lineage (${r.status}): only a Successful run records one`);
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
