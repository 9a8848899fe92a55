// Usage: what each project used over a window (the figures of `trainyard projects usage`, from
// GET /api/usage): a table, and GPU-hours per bucket over time drawn by uPlot (a canvas chart; hovering
// shows each project's value at that time).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from '../api.js';
import { navigate, type Route } from '../route.js';
import { ErrorBox, Page, Table, useLoad } from '../ui.js';

interface Usage {
  project: string; gpu_hours: number; cpu_hours: number; attempts: number; storage_bytes: number;
  gpu_hours_by_model: { model: string; hours: number }[]; runs_by_outcome: { status: string; runs: number }[];
  series: { at: string; gpu_hours: number; cpu_hours: number }[];
}
interface Answer { since: string; until: string; projects: Usage[] }

/** The windows the page offers, and the bucket each is drawn with. */
const windows: [string, string, number][] = [['1d', 'last day', 1], ['7d', 'last 7 days', 6], ['30d', 'last 30 days', 24], ['90d', 'last 90 days', 24]];
const palette = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];
const h = (x: number) => x.toFixed(x < 10 ? 3 : 1);

function Chart({ answer, bucketHours }: { answer: Answer; bucketHours: number }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!el.current) return;
    // One x per bucket of the whole window (the server's buckets start at `since`, one step apart), so the
    // axis spans the window; a project without use in a bucket shows 0 there.
    const xs: number[] = [];
    for (let x = Date.parse(answer.since) / 1000; x <= Date.parse(answer.until) / 1000; x += bucketHours * 3600) xs.push(x);
    const ys = answer.projects.map((p) => {
      const at = new Map(p.series.map((s) => [Date.parse(s.at) / 1000, s.gpu_hours]));
      return xs.map((x) => at.get(x) ?? 0);
    });
    const plot = new uPlot({
      width: Math.max(320, el.current.clientWidth), height: 280,
      scales: { x: { time: true } },
      series: [{ label: 'time' }, ...answer.projects.map((p, i) => ({ label: p.project, stroke: palette[i % palette.length], width: 2, value: (_u: uPlot, v: number | null) => (v === null ? '-' : `${h(v)} GPU-h`) }))],
      axes: [{}, { label: `GPU-hours per ${bucketHours} h` }],
    }, [xs, ...ys], el.current);
    return () => plot.destroy();
  }, [answer, bucketHours]);
  return <div class="usage-chart" data-testid="usage-chart" ref={el} />;
}

export function UsagePage({ route }: { route: Route }) {
  const chosen = windows.find(([w]) => w === route.query.get('since')) ?? windows[2]!;
  const [w, , bucketHours] = chosen;
  const usage = useLoad((signal) => {
    const since = new Date(Date.now() - Number(w.slice(0, -1)) * 86_400_000).toISOString();
    return api<Answer>(`/api/usage?since=${encodeURIComponent(since)}&bucket_hours=${bucketHours}`, { signal });
  }, w, 60_000);
  return (
    <Page title="Usage" actions={
      <select data-testid="usage-window" value={w} onChange={(e) => navigate('/usage', new URLSearchParams({ since: (e.target as HTMLSelectElement).value }))}>
        {windows.map(([v, label]) => <option key={v} value={v}>{label}</option>)}
      </select>}>
      <ErrorBox error={usage.error} />
      {usage.data ? <>
        <Chart answer={usage.data} bucketHours={bucketHours} />
        <Table rows={usage.data.projects} rowKey={(p) => p.project} testid="usage" empty="No projects." columns={[
          { label: 'Project', sort: (p) => p.project, cell: (p) => p.project },
          { label: 'GPU-hours', sort: (p) => p.gpu_hours, cell: (p) => h(p.gpu_hours) },
          { label: 'By GPU model', cell: (p) => p.gpu_hours_by_model.map((m) => `${m.model} ${h(m.hours)}`).join(', ') || '-' },
          { label: 'CPU-hours', sort: (p) => p.cpu_hours, cell: (p) => h(p.cpu_hours) },
          { label: 'Attempts', sort: (p) => p.attempts, cell: (p) => p.attempts },
          { label: 'Runs by outcome', cell: (p) => p.runs_by_outcome.map((o) => `${o.status} ${o.runs}`).join(', ') || '-' },
          { label: 'Storage', sort: (p) => p.storage_bytes, cell: (p) => `${Number((p.storage_bytes / 1e9).toFixed(3))} GB` },
        ]} />
      </> : null}
    </Page>
  );
}
