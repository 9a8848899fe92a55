// Datasets: name, files, size; a dataset's files as a tree with their sizes.
import { api } from '../api.js';
import { bytes, time } from '../format.js';
import type { Dataset } from '../types.js';
import { ErrorBox, Link, ListPage, Page, useLoad } from '../ui.js';

export function DatasetsPage() {
  return (
    <ListPage title="Datasets" url="/api/datasets" rows={(a: { datasets: Dataset[] }) => a.datasets} rowKey={(d) => d.name} testid="datasets" empty="No datasets." columns={[
      { label: 'Dataset', sort: (d) => d.name, cell: (d) => <Link to={`/datasets/${encodeURIComponent(d.name)}`}>{d.name}</Link> },
      { label: 'Files', sort: (d) => d.file_count, cell: (d) => d.file_count },
      { label: 'Size', sort: (d) => d.size_bytes, cell: (d) => bytes(d.size_bytes) },
      { label: 'Updated', sort: (d) => d.updated_at, cell: (d) => time(d.updated_at) },
    ]} />
  );
}

interface Folder { files: { name: string; size: number }[]; folders: Map<string, Folder>; size: number }

function treeOf(files: { path: string; size_bytes: number }[]): Folder {
  const root: Folder = { files: [], folders: new Map(), size: 0 };
  for (const f of files) {
    const parts = f.path.split('/');
    let at = root;
    at.size += f.size_bytes;
    for (const dir of parts.slice(0, -1)) {
      let next = at.folders.get(dir);
      if (!next) { next = { files: [], folders: new Map(), size: 0 }; at.folders.set(dir, next); }
      next.size += f.size_bytes;
      at = next;
    }
    at.files.push({ name: parts.at(-1)!, size: f.size_bytes });
  }
  return root;
}

function FolderView({ folder }: { folder: Folder }) {
  return (
    <ul class="tree">
      {[...folder.folders].sort(([a], [b]) => a.localeCompare(b)).map(([name, sub]) => (
        <li key={`d:${name}`} class="folder"><details open><summary>{name}/ <span class="muted">{bytes(sub.size)}</span></summary><FolderView folder={sub} /></details></li>
      ))}
      {folder.files.map((f) => <li key={`f:${f.name}`} data-file={f.name}>{f.name} <span class="muted">{bytes(f.size)}</span></li>)}
    </ul>
  );
}

export function DatasetPage({ name }: { name: string }) {
  const files = useLoad((signal) => api<{ files: { path: string; size_bytes: number }[] }>(`/api/datasets/${encodeURIComponent(name)}/files`, { signal }), name);
  const tree = files.data ? treeOf(files.data.files) : null;
  return (
    <Page title={`Dataset ${name}`}>
      <ErrorBox error={files.error} />
      {tree ? <div data-testid="dataset-tree"><p>{files.data!.files.length} files, {bytes(tree.size)}</p><FolderView folder={tree} /></div> : null}
    </Page>
  );
}
