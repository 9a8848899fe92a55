// One run, as AI Center's pipeline details page shows it: status and phase timeline (kept up to date by
// the run's change stream), agent and GPUs (a gang's members: console/members.tsx), reason, score, _results.json and lineage, the live log, the
// outputs tree with previews and downloads, and Kill for a member or admin of the run's project (the
// server checks again).
import { useEffect, useState } from 'preact/hooks';
import { api, follow } from '../api.js';
import { duration, score, time } from '../format.js';
import type { Run } from '../types.js';
import { LogView } from '../log-view.js';
import { MetricCharts } from '../metric-charts.js';
import { Artifacts } from '../artifacts.js';
import { Members } from '../members.js';
import { ErrorBox, Link, Page, Status } from '../ui.js';

const terminal = new Set(['Successful', 'Failed', 'Killed']);

function pretty(json: string): string {
  try { return JSON.stringify(JSON.parse(json), null, 2); } catch { return json; }
}

/** Harness phases carry Unix times (seconds, maybe fractional). */
const phaseIso = (t: number) => (t ? new Date(t < 1e12 ? t * 1000 : t).toISOString() : '');

function Timeline({ run }: { run: Run }) {
  const t = run.times;
  const steps: [string, string, string][] = [
    ['Scheduled', t.scheduled_at, t.waiting_at || t.packaging_at || t.running_at || t.ended_at],
    ['Waiting for resources', t.waiting_at, t.packaging_at || t.running_at || t.ended_at],
    ['Packaging', t.packaging_at, t.running_at || t.ended_at],
    ['Running', t.running_at, t.ended_at],
  ];
  return (
    <ul class="timeline" data-testid="timeline">
      {steps.filter(([, at]) => at).map(([name, at, end]) => (
        <li key={name}><b>{name}</b> <span class="muted">{time(at)}</span> {duration(at, end || (terminal.has(run.status) ? at : ''))}</li>
      ))}
      {run.phases.map((p) => (
        <li key={p.name} class="phase"><b>{p.name}</b> <span class="muted">{time(phaseIso(p.started_at))}</span> {duration(phaseIso(p.started_at), phaseIso(p.ended_at))}</li>
      ))}
      {t.ended_at ? <li><b>{run.status}</b> <span class="muted">{time(t.ended_at)}</span></li> : null}
    </ul>
  );
}

function KillButton({ run, onKilled }: { run: Run; onKilled: (r: Run) => void }) {
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  if (terminal.has(run.status)) return null;
  if (run.kill_requested) return <span class="muted" data-testid="kill-requested">kill requested</span>;
  const kill = () => api<{ run: Run }>(`/api/runs/${encodeURIComponent(run.id)}/kill`, { method: 'POST' })
    .then((r) => { setAsking(false); onKilled(r.run); }, (e: unknown) => setError(e instanceof Error ? e : new Error(String(e))));
  return (
    <span class="kill">
      {asking
        ? <><button type="button" class="danger" onClick={() => void kill()} data-testid="kill-confirm">Kill {run.id}</button> <button type="button" onClick={() => setAsking(false)}>Cancel</button></>
        : <button type="button" class="danger" onClick={() => setAsking(true)} data-testid="kill">Kill</button>}
      <ErrorBox error={error} />
    </span>
  );
}

export function RunPage({ id }: { id: string }) {
  const [run, setRunState] = useState<Run | null>(null);
  // Two sources answer about this run: its change stream and the kill call's reply. The reply is read
  // after the kill was accepted and may arrive after the stream already said Killed (and ended): an
  // ended run never comes back to life, so an older, live snapshot never replaces an ended one.
  const setRun = (next: Run | null) => setRunState((cur) => (next && cur && cur.id === next.id && terminal.has(cur.status) && !terminal.has(next.status) ? cur : next));
  const [canKill, setCanKill] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  useEffect(() => {
    setRun(null);
    setError(null);
    const ac = new AbortController();
    api<{ run: Run; can_kill: boolean }>(`/api/runs/${encodeURIComponent(id)}`, { signal: ac.signal }).then((r) => {
      setRun(r.run);
      setCanKill(r.can_kill);
      // Then every change, as it happens, until the run ends.
      return follow(() => `/api/runs/${encodeURIComponent(id)}/watch`, (e) => { if (e.event === 'run') setRun(e.data as Run); }, ac.signal,
        (err) => setError(err instanceof Error ? err : new Error(String(err))));
    }).catch((e: unknown) => { if (!ac.signal.aborted) setError(e instanceof Error ? e : new Error(String(e))); });
    return () => ac.abort();
  }, [id]);
  if (!run) return <Page title={`Run ${id}`}><ErrorBox error={error} />{error ? null : <p class="muted">Loading…</p>}</Page>;
  const gpus = run.gpu_indices.length ? run.gpu_indices.map((g) => `GPU ${g}`).join(', ') : 'none';
  const reason = run.failure_reason || run.status_detail;
  return (
    <Page title={`Run ${run.id}`} actions={<>{<Status status={run.status} />} {canKill ? <KillButton run={run} onKilled={setRun} /> : null}</>}>
      <ErrorBox error={error} />
      <div class="columns">
        <dl class="facts" data-testid="run-facts">
          <dt>Package</dt><dd><Link to={`/packages/${encodeURIComponent(run.package)}`}>{run.package}</Link> {run.version}</dd>
          <dt>Pipeline</dt><dd>{run.pipeline}</dd>
          <dt>Project</dt><dd>{run.project}</dd>
          <dt>Dataset</dt><dd>{run.dataset}{run.eval_dataset ? ` (evaluation: ${run.eval_dataset})` : ''}</dd>
          <dt>Agent</dt><dd data-testid="run-agent">{run.agent || '—'}</dd>
          <dt>GPUs</dt><dd data-testid="run-gpus">{gpus}</dd>
          <dt>Attempt</dt><dd>{run.attempt} of {run.max_attempts}</dd>
          <dt>Reason</dt><dd data-testid="run-reason">{reason || '—'}</dd>
          <dt>Score</dt><dd data-testid="run-score">{score(run.has_score, run.score) || '—'}</dd>
          <dt>New version</dt><dd>{run.output_version || '—'}</dd>
          {run.resumed_from ? <><dt>Resumed from</dt><dd data-testid="run-resumed-from">checkpoint {String(run.resumed_from.seq)} of {run.resumed_from.run_id} attempt {run.resumed_from.attempt}, {new Date(run.resumed_from.committed_at * 1000).toISOString()}, {String(run.resumed_from.bytes)} bytes</dd></> : null}
          {run.schedule ? <><dt>Schedule</dt><dd>{run.schedule}</dd></> : null}
          {run.secret_names.length ? <><dt>Secrets</dt><dd>{run.secret_names.join(', ')}</dd></> : null}
        </dl>
        <div><h2>Timeline</h2><Timeline run={run} /></div>
      </div>
      {run.members?.length ? <><h2>Members</h2><Members members={run.members} /></> : null}
      <h2>Metrics</h2>
      <MetricCharts runId={run.id} live={!terminal.has(run.status)} />
      <h2>Logs</h2>
      <LogView runId={run.id} />
      <h2>Outputs</h2>
      <Artifacts runId={run.id} version={`${run.attempt}|${run.status}`} />
      {run.results_json ? <><h2>_results.json</h2><pre class="json" data-testid="results-json">{pretty(run.results_json)}</pre></> : null}
      {run.lineage_json ? <details><summary><h2>Lineage</h2></summary><pre class="json" data-testid="lineage-json">{pretty(run.lineage_json)}</pre></details> : null}
    </Page>
  );
}
