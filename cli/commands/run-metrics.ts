// `trainyard run metrics RUN [--name N]... [--csv|--json] [--follow]`: what train.py logged with
// `import trainyard` and the agent's samples of the run (sys/...), per name on the run's one step axis.
// Without --csv or --json: one line per series (points, last step and value, lowest, highest) and the
// summary. --csv and --json give every point; --follow then prints new points as they are stored, until the
// run ends.
import { Api } from '../client.js';
import { flags, type Parsed } from '../verb.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import type { MetricSeries__Output, RunMetrics__Output } from '../../shared/proto.js';

/** How often --follow asks for new points. */
const FOLLOW_MS = 1000;

export const runMetricsFlags = flags({
  name: { type: 'string', multiple: true, value: 'NAME', description: 'only this series (repeat for several); default: all' },
  csv: { type: 'boolean', description: 'every point as CSV: name,step,value,attempt,time (unix seconds)' },
  json: { type: 'boolean', description: 'every point and the summary as JSON (with --follow: one JSON object per point and line)' },
  follow: { type: 'boolean', short: 'f', description: 'keep printing new points as they are stored until the run ends' },
});

/** One point per row, in series then step order. */
function* rows(series: MetricSeries__Output[]): Generator<{ name: string; step: number; value: number; attempt: number; time: number }> {
  for (const s of series) {
    for (let i = 0; i < s.steps.length; i++) yield { name: s.name, step: Number(s.steps[i]), value: s.values[i]!, attempt: s.attempts[i]!, time: s.times[i]! };
  }
}

const num = (v: number) => String(v);

/** The summary lines `run get` and `run diff` print too. */
export function summaryText(m: RunMetrics__Output): string[] {
  return m.summary.map((x) => `  ${safeText(x.name).padEnd(16)} ${num(x.value)}`);
}

function overview(m: RunMetrics__Output): string {
  const out = [table(['NAME', 'POINTS', 'LAST STEP', 'LAST', 'MIN', 'MAX'], m.series.map((s) => {
    const finite = s.values.filter((v) => !Number.isNaN(v));
    return [safeText(s.name), String(s.total_points), String(s.steps.at(-1) ?? '-'), s.values.length ? num(s.values.at(-1)!) : '-',
      finite.length ? num(Math.min(...finite)) : '-', finite.length ? num(Math.max(...finite)) : '-'];
  }))];
  if (m.summary.length) out.push('summary', ...summaryText(m));
  if (Number(m.dropped_points)) out.push(color.yellow(`${m.dropped_points} points were dropped: the run reached its cap (TRAINYARD_MAX_METRIC_POINTS)`));
  if (!m.series.length && !m.summary.length) out.push(color.dim('no metrics (train.py logs them with `import trainyard; trainyard.log(step=..., loss=...)`)'));
  return out.join('\n');
}

export async function runMetrics({ values, positionals }: Parsed<typeof runMetricsFlags>, address: string): Promise<number> {
  const id = positionals[0] ?? '';
  if (!id) throw invalid('run metrics: give the run id');
  if (values.csv && values.json) throw invalid('run metrics: --csv and --json are two formats; give one');
  const names = values.name ?? [];
  const api = await Api.connect(address);
  try {
    const points = values.csv || values.json || values.follow;
    // The table needs each series' last, lowest and highest point: a downsample keeps all three.
    const first = await api.getRunMetrics({ run_id: id, names, max_points: points ? 0 : 8 });
    if (!values.follow) {
      if (values.csv) {
        console.log('name,step,value,attempt,time');
        for (const r of rows(first.series)) console.log(`${r.name},${r.step},${num(r.value)},${r.attempt},${r.time}`);
      } else if (values.json) {
        console.log(JSON.stringify({ run_id: first.run_id, series: first.series.map((s) => ({ ...s, steps: s.steps.map(Number), total_points: Number(s.total_points) })),
          summary: first.summary, dropped_points: Number(first.dropped_points), live: first.live }, null, 2));
      } else {
        console.log(overview(first));
      }
      return 0;
    }
    if (values.csv) console.log('name,step,value,attempt,time');
    const after = new Map<string, number>();
    const print = (m: RunMetrics__Output) => {
      for (const r of rows(m.series)) {
        if (values.csv) console.log(`${r.name},${r.step},${num(r.value)},${r.attempt},${r.time}`);
        else if (values.json) console.log(JSON.stringify(r));
        else console.log(`${safeText(r.name)}  step ${r.step}  ${num(r.value)}`);
        after.set(r.name, r.step);
      }
    };
    print(first);
    let live = first.live;
    // One more read after the run ended: points stored just before its end.
    for (let last = !live; ; last = !live) {
      await new Promise((r) => setTimeout(r, FOLLOW_MS));
      const m = await api.getRunMetrics({ run_id: id, names, max_points: 0, after: [...after].map(([name, step]) => ({ name, after_step: step })) });
      print(m);
      live = m.live;
      if (last) break;
    }
    return 0;
  } finally {
    api.close();
  }
}
