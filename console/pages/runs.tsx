// Runs: every run the token sees, newest first, filtered by status, package, project, pipeline kind and
// schedule (kept in the URL), sortable by any column; the list is read again every 2 s, so statuses move
// without a reload. Runs ticked in the Compare column open the Compare page (pages/compare.tsx).
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { duration, score, time } from '../format.js';
import { currentRoute, navigate, type Route } from '../route.js';
import type { Me, Run } from '../types.js';
import { ErrorBox, Page, Status, Table, runLink, useLoad, type Column } from '../ui.js';

const REFRESH_MS = 2000;
const filters = ['status', 'package', 'project', 'pipeline', 'schedule'] as const;

const columns: Column<Run>[] = [
  { label: 'Run', sort: (r) => r.id, cell: (r) => runLink(r.id) },
  { label: 'Status', sort: (r) => r.status, cell: (r) => <Status status={r.status} /> },
  { label: 'Package', sort: (r) => r.package, cell: (r) => r.package },
  { label: 'Version', sort: (r) => r.version, cell: (r) => r.version },
  { label: 'Pipeline', sort: (r) => r.pipeline, cell: (r) => r.pipeline },
  { label: 'Project', sort: (r) => r.project, cell: (r) => r.project },
  { label: 'Dataset', sort: (r) => r.dataset, cell: (r) => r.dataset },
  { label: 'Agent', sort: (r) => r.agent, cell: (r) => r.agent },
  { label: 'Score', sort: (r) => (r.has_score ? r.score : -Infinity), cell: (r) => score(r.has_score, r.score) },
  { label: 'Schedule', sort: (r) => r.schedule, cell: (r) => r.schedule },
  { label: 'Created', sort: (r) => r.times.scheduled_at, cell: (r) => time(r.times.scheduled_at) },
  { label: 'Duration', sort: (r) => (r.times.running_at ? (new Date(r.times.ended_at || Date.now()).getTime() - new Date(r.times.running_at).getTime()) : -1), cell: (r) => duration(r.times.running_at, r.times.ended_at) },
];

export function RunsPage({ me, route }: { me: Me; route: Route }) {
  const q = new URLSearchParams();
  for (const f of filters) { const v = route.query.get(f); if (v) q.set(f, v); }
  q.set('limit', '500');
  const [picked, setPicked] = useState<string[]>([]);
  const pick = (id: string, on: boolean) => setPicked((p) => (on ? [...p.filter((x) => x !== id), id] : p.filter((x) => x !== id)));
  const pickColumn: Column<Run> = {
    label: 'Compare',
    cell: (r) => <input type="checkbox" data-testid="compare-pick" value={r.id} aria-label={`compare ${r.id}`} checked={picked.includes(r.id)}
      onChange={(e) => pick(r.id, (e.target as HTMLInputElement).checked)} />,
  };
  const runs = useLoad((signal) => api<{ runs: Run[] }>(`/api/runs?${q.toString()}`, { signal }), q.toString(), REFRESH_MS);
  const set = (name: string, value: string) => {
    // From the URL as it is now, not as last drawn: a second change before the redraw (which waits for
    // hashchange) would otherwise put back what the first one changed.
    const next = new URLSearchParams(currentRoute().query);
    if (value) next.set(name, value); else next.delete(name);
    navigate('/runs', next);
  };
  const text = (name: (typeof filters)[number], placeholder: string) => (
    // Uncontrolled: the list is read again every 2 s, and a re-render must not undo what is being typed.
    <label>{name}<input name={name} defaultValue={route.query.get(name) ?? ''} placeholder={placeholder}
      onChange={(e) => set(name, (e.target as HTMLInputElement).value.trim())} /></label>
  );
  const choice = (name: (typeof filters)[number], options: string[]) => (
    <label>{name}<select name={name} value={route.query.get(name) ?? ''} onChange={(e) => set(name, (e.target as HTMLSelectElement).value)}>
      <option value="">any</option>{options.map((o) => <option key={o} value={o}>{o}</option>)}
    </select></label>
  );
  return (
    <Page title="Runs" actions={
      <button type="button" data-testid="compare" disabled={picked.length < 2}
        onClick={() => navigate('/compare', new URLSearchParams({ runs: picked.join(',') }))}>Compare{picked.length ? ` (${picked.length})` : ''}</button>}>
      <form class="filters" onSubmit={(e) => e.preventDefault()} data-testid="run-filters">
        {choice('status', me.statuses)}
        {text('package', 'any package')}
        {me.role === 'admin' ? text('project', 'any project') : choice('project', me.project ? [me.project] : [])}
        {choice('pipeline', me.pipelines)}
        {text('schedule', 'any schedule')}
      </form>
      <ErrorBox error={runs.error} />
      {runs.data ? <Table rows={runs.data.runs} columns={[...columns, pickColumn]} rowKey={(r) => r.id} testid="runs" empty="No runs match." /> : null}
    </Page>
  );
}
