// Projects: what each runs now, the GPUs it holds, what it has queued, its caps, and its waiting
// multi-agent runs (how long, and what for: the agents reserved for one, --gang-reserve-after).
import type { Project, WaitingGang } from '../types.js';
import { ListPage, runLink } from '../ui.js';

const cap = (n: number) => (n < 0 ? 'none' : String(n));
const minutes = (s: number) => (s < 60 ? `${Math.floor(s)}s` : `${Math.floor(s / 60)}m`);
const gang = (g: WaitingGang) => (
  <div key={g.run_id} data-testid="waiting-gang">{runLink(g.run_id)} {g.agents} agents, waited {minutes(g.waited_seconds)}: {g.waiting_for || 'not looked at yet'}</div>
);

export function ProjectsPage() {
  return (
    <ListPage title="Projects" url="/api/projects" everyMs={2000} rows={(a: { projects: Project[] }) => a.projects} rowKey={(p) => p.name} testid="projects" empty="No projects." columns={[
      { label: 'Project', sort: (p) => p.name, cell: (p) => <a href={`#/runs?project=${encodeURIComponent(p.name)}`}>{p.name}</a> },
      { label: 'Running', sort: (p) => p.running, cell: (p) => p.running },
      { label: 'GPUs held', sort: (p) => p.gpus, cell: (p) => p.gpus },
      { label: 'Queued', sort: (p) => p.queued, cell: (p) => p.queued },
      { label: 'Max runs', sort: (p) => p.max_runs, cell: (p) => cap(p.max_runs) },
      { label: 'Max GPUs', sort: (p) => p.max_gpus, cell: (p) => cap(p.max_gpus) },
      { label: 'Max priority', sort: (p) => p.max_priority, cell: (p) => cap(p.max_priority) },
      { label: 'Waiting multi-agent runs', sort: (p) => p.waiting_gangs?.length ?? 0, cell: (p) => (p.waiting_gangs ?? []).map(gang) },
    ]} />
  );
}
