// Compare (#/compare?runs=A,B,…, from the runs list's Compare column): the runs' curves overlaid by name,
// one uPlot chart per name with a line per run (on the union of their steps; a run without a point at a
// step leaves a gap there), and beside them each run's differences from the first: code, data manifest,
// packages, env, agent, score and summaries, as `trainyard run diff FIRST RUN` prints them (the scheduler
// computes them with the same code: GET /api/runs/:id/diff).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from '../api.js';
import type { RunMetricsJson } from '../metric-charts.js';
import type { Run } from '../types.js';
import type { Route } from '../route.js';
import { ErrorBox, Page, Status, runLink, useLoad } from '../ui.js';

const MAX_POINTS = 2000;
const MAX_RUNS = 8;
const COLOURS = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0969da', '#57606a'];

interface Difference { what: string; a: unknown; b: unknown; detail?: string[] }
interface Comparison { a: string; b: string; lineage: boolean; differences: Difference[]; missing_lineage: string[] }
interface Loaded { run: Run; metrics: RunMetricsJson; diff: Comparison | null }

/** One name's curves: x is the union of the runs' steps, each run's values at its own steps, null elsewhere. */
function overlay(name: string, runs: Loaded[]): uPlot.AlignedData {
  const per = runs.map((r) => r.metrics.series.find((s) => s.name === name));
  const steps = [...new Set(per.flatMap((s) => s?.steps ?? []))].sort((a, b) => a - b);
  const at = new Map(steps.map((x, i) => [x, i]));
  const ys = per.map((s) => {
    const y: (number | null)[] = new Array<number | null>(steps.length).fill(null);
    s?.steps.forEach((x, i) => { y[at.get(x)!] = s.values[i] ?? null; });
    return y;
  });
  return [steps, ...ys];
}

function OverlayChart({ name, runs }: { name: string; runs: Loaded[] }) {
  const box = useRef<HTMLDivElement>(null);
  const data = overlay(name, runs);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const plot = new uPlot({
      width: Math.max(300, Math.min(560, el.clientWidth || 560)), height: 220, title: name,
      scales: { x: { time: false } },
      axes: [{ label: 'step' }, {}],
      series: [{ label: 'step' }, ...runs.map((r, i) => ({ label: r.run.id, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true }))],
    }, data, el);
    return () => plot.destroy();
  }, [name, runs]);
  const drawn = runs.filter((r) => r.metrics.series.some((s) => s.name === name)).length;
  return <div class="metric-chart" data-testid="compare-chart" data-name={name} data-runs={drawn} data-steps={data[0].length} ref={box} />;
}

function show(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : JSON.stringify(v) ?? '-';
}

function Differences({ first, r }: { first: string; r: Loaded }) {
  const d = r.diff;
  if (!d) return null;
  return (
    <div data-testid="differences" data-run={r.run.id}>
      {d.missing_lineage.length ? <p class="muted">No lineage for {d.missing_lineage.join(', ')} (only a Successful run records one): summaries only.</p> : null}
      {d.differences.length === 0
        ? <p class="muted" data-testid="same">The same code, data, packages, env and agent as {first}.</p>
        : <ul class="differences">{d.differences.map((x) => (
          <li key={x.what} data-testid="difference" data-what={x.what}><b>{x.what}</b>: {show(x.a)} → {show(x.b)}
            {x.detail?.length ? <ul>{x.detail.slice(0, 50).map((line) => <li key={line}>{line}</li>)}</ul> : null}</li>))}</ul>}
    </div>
  );
}

export function ComparePage({ route }: { route: Route }) {
  const ids = [...new Set((route.query.get('runs') ?? '').split(',').map((x) => x.trim()).filter(Boolean))].slice(0, MAX_RUNS);
  const loaded = useLoad(async (signal) => Promise.all(ids.map(async (id, i): Promise<Loaded> => {
    const enc = encodeURIComponent(id);
    const [{ run }, metrics, diff] = await Promise.all([
      api<{ run: Run }>(`/api/runs/${enc}`, { signal }),
      api<RunMetricsJson>(`/api/runs/${enc}/metrics?max_points=${MAX_POINTS}`, { signal }),
      i === 0 ? Promise.resolve(null) : api<Comparison>(`/api/runs/${enc}/diff?against=${encodeURIComponent(ids[0]!)}`, { signal }),
    ]);
    return { run, metrics, diff };
  })), ids.join(','));
  if (ids.length < 2) return <Page title="Compare"><p class="muted">Pick two or more runs in the runs list (the Compare column), then Compare.</p></Page>;
  const runs = loaded.data;
  const names = runs ? [...new Set(runs.flatMap((r) => r.metrics.series.map((s) => s.name)))].sort((a, b) => Number(a.startsWith('sys/')) - Number(b.startsWith('sys/')) || a.localeCompare(b)) : [];
  return (
    <Page title="Compare">
      <ErrorBox error={loaded.error} />
      {runs ? <>
        <ul class="compare-runs" data-testid="compare-runs">{runs.map((r, i) => (
          <li key={r.run.id}>
            <span class="swatch" style={{ background: COLOURS[i % COLOURS.length] }} />{runLink(r.run.id)} <Status status={r.run.status} />{' '}
            {r.run.package} {r.run.version}{i === 0 ? <span class="muted"> (the others are compared with this one)</span> : null}
            {i > 0 ? <Differences first={ids[0]!} r={r} /> : null}
          </li>))}</ul>
        {names.length ? <div class="charts">{names.map((n) => <OverlayChart key={n} name={n} runs={runs} />)}</div> : <p class="muted">None of these runs logged metrics.</p>}
      </> : null}
    </Page>
  );
}
