// Schedules: what each submits, when, its state, last firing and run, misses and its last error.
import { time } from '../format.js';
import type { Schedule } from '../types.js';
import { ListPage, runLink } from '../ui.js';

export function SchedulesPage() {
  return (
    <ListPage title="Schedules" url="/api/schedules" everyMs={5000} rows={(a: { schedules: Schedule[] }) => a.schedules} rowKey={(s) => s.name} testid="schedules" empty="No schedules." columns={[
      { label: 'Schedule', sort: (s) => s.name, cell: (s) => <a href={`#/runs?schedule=${encodeURIComponent(s.name)}`}>{s.name}</a> },
      { label: 'Project', sort: (s) => s.project, cell: (s) => s.project },
      { label: 'State', sort: (s) => s.state, cell: (s) => s.state },
      { label: 'When', cell: (s) => (s.cron ? `${s.cron} (${s.timezone})` : `at ${time(s.at)}`) },
      { label: 'Runs', cell: (s) => `${s.run.pipeline ?? ''} ${s.run.package ?? ''} ${s.run.version ?? ''} on ${s.run.dataset ?? ''}` },
      { label: 'Next', sort: (s) => s.next_fire_at, cell: (s) => time(s.next_fire_at) },
      { label: 'Last fired', sort: (s) => s.last_fired_at, cell: (s) => time(s.last_fired_at) },
      { label: 'Last run', cell: (s) => (s.last_run_id ? runLink(s.last_run_id) : '') },
      { label: 'Fired / failed / missed', cell: (s) => `${s.fired} / ${s.failed} / ${s.missed_total}` },
      { label: 'Last error', cell: (s) => s.last_error },
    ]} />
  );
}
