// What differs between two runs, from their lineage (scheduler/runs/lineage.ts): the code (the input
// version's SHA-256), the data (the manifests: which files were added, removed or changed), the venv's
// packages, the env, the agent and GPUs, the score, and the metrics summaries. One comparison for every
// place that shows it: `trainyard run diff A B` (cli/commands/run-diff.ts) and the console's Compare page
// (through GET /api/runs/:id/diff, scheduler/runs/compare.ts).

type Manifest = { manifest_sha256?: string; manifest?: { path: string; size: number; sha256: string }[] } | null;
export interface Lineage {
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

