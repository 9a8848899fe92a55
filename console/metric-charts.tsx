// A run's metrics as charts (uPlot): one chart per name train.py logged, then the agent's samples of the
// run (sys/...) below. The server downsamples each series to about MAX_POINTS (first, last, lowest and
// highest point per step bucket), so a million-point series costs the page what a few thousand do. While
// the run lives the charts are read again every REFRESH_MS and updated in place (setData), once more after
// it ended. Hovering a chart shows the step and the value under the cursor in its legend.
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from './api.js';
import { ErrorBox } from './ui.js';

const MAX_POINTS = 2000;
const REFRESH_MS = 2000;

interface Series { name: string; steps: number[]; values: number[]; total_points: number; downsampled: boolean }
interface Summary { name: string; value: number }
export interface RunMetricsJson { series: Series[]; summary: Summary[]; dropped_points: number; live: boolean }

function Chart({ s }: { s: Series }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(300, Math.min(560, el.clientWidth || 560));
    plot.current = new uPlot({
      width, height: 200, title: s.name,
      scales: { x: { time: false } },
      axes: [{ label: 'step' }, {}],
      series: [{ label: 'step' }, { label: s.name, stroke: s.name.startsWith('sys/') ? '#7a5af8' : '#1f6feb', width: 1.5, spanGaps: true }],
    }, [s.steps, s.values], el);
    return () => { plot.current?.destroy(); plot.current = null; };
  }, [s.name]);
  useEffect(() => { plot.current?.setData([s.steps, s.values]); }, [s]);
  return (
    <div class="metric-chart" data-testid="metric-chart" data-name={s.name} data-points={s.total_points} data-last-step={s.steps.at(-1) ?? ''} ref={box}>
      <span class="muted">{s.total_points.toLocaleString()} points{s.downsampled ? ` (${s.steps.length.toLocaleString()} drawn)` : ''}</span>
    </div>
  );
}

export function MetricCharts({ runId, live }: { runId: string; live: boolean }) {
  const [m, setM] = useState<RunMetricsJson | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const liveRef = useRef(live);
  liveRef.current = live;
  useEffect(() => {
    const ac = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      try {
        const wasLive = liveRef.current;
        setM(await api<RunMetricsJson>(`/api/runs/${encodeURIComponent(runId)}/metrics?max_points=${MAX_POINTS}`, { signal: ac.signal }));
        setError(null);
        // Once more after the run ended (points stored just before its end), then no more.
        if (wasLive) timer = setTimeout(() => void read(), REFRESH_MS);
      } catch (e) {
        if (ac.signal.aborted) return;
        setError(e instanceof Error ? e : new Error(String(e)));
        timer = setTimeout(() => void read(), REFRESH_MS * 2);
      }
    };
    void read();
    return () => { ac.abort(); clearTimeout(timer); };
  }, [runId]);
  if (!m) return <ErrorBox error={error} />;
  const user = m.series.filter((s) => !s.name.startsWith('sys/'));
  const sys = m.series.filter((s) => s.name.startsWith('sys/'));
  if (!m.series.length && !m.summary.length) return <p class="muted" data-testid="no-metrics">No metrics: train.py logs them with <code>import trainyard; trainyard.log(step=…, loss=…)</code>.</p>;
  return (
    <div data-testid="metrics">
      <ErrorBox error={error} />
      {m.summary.length ? <dl class="facts" data-testid="metric-summary">{m.summary.map((x) => <><dt>{x.name}</dt><dd>{String(x.value)}</dd></>)}</dl> : null}
      <div class="charts">{user.map((s) => <Chart key={s.name} s={s} />)}</div>
      {sys.length ? <><h3>System</h3><div class="charts">{sys.map((s) => <Chart key={s.name} s={s} />)}</div></> : null}
      {m.dropped_points ? <p class="muted">{m.dropped_points} points were dropped: the run reached its cap.</p> : null}
    </div>
  );
}
