// Projects: what each runs now, the GPUs it holds, what it has queued, and its caps.
import type { Project } from '../types.js';
import { ListPage } from '../ui.js';

const cap = (n: number) => (n < 0 ? 'none' : String(n));

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
    ]} />
  );
}
