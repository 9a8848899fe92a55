// Packages and their versions: where each version came from (upload or the run that trained it, and the
// version it was trained from), its score, size and sha256, and a version's lineage back to the upload.
import { api } from '../api.js';
import { bytes, score, time } from '../format.js';
import { navigate, type Route } from '../route.js';
import type { LineageStep, PackageSummary, PackageVersion } from '../types.js';
import { ErrorBox, Link, ListPage, Page, Table, runLink, useLoad } from '../ui.js';

const pkgLink = (name: string) => <Link to={`/packages/${encodeURIComponent(name)}`}>{name}</Link>;

export function PackagesPage() {
  return (
    <ListPage title="Packages" url="/api/packages" rows={(a: { packages: PackageSummary[] }) => a.packages} rowKey={(p) => p.name} testid="packages" empty="No packages." initialSort={{ col: 0, desc: false }} columns={[
      { label: 'Package', sort: (p) => p.name, cell: (p) => pkgLink(p.name) },
      { label: 'Project', sort: (p) => p.project, cell: (p) => p.project },
      { label: 'Versions', sort: (p) => p.versions, cell: (p) => p.versions },
      { label: 'Latest', sort: (p) => p.latest, cell: (p) => p.latest },
      { label: 'Latest score', sort: (p) => p.latest_score ?? -Infinity, cell: (p) => score(p.latest_score !== null, p.latest_score) },
      { label: 'Created', sort: (p) => p.created_at, cell: (p) => time(p.created_at) },
    ]} />
  );
}

function Lineage({ name, version }: { name: string; version: string }) {
  const chain = useLoad((signal) => api<{ steps: LineageStep[] }>(`/api/packages/${encodeURIComponent(name)}/lineage?version=${encodeURIComponent(version)}`, { signal }), `${name}@${version}`);
  if (chain.error) return <ErrorBox error={chain.error} />;
  if (!chain.data) return <p class="muted">Loading…</p>;
  return (
    <ol class="lineage" data-testid="lineage">
      {chain.data.steps.map((s) => (
        <li key={s.version}>
          <b>{name} {s.version}</b> {s.source === 'upload' ? 'uploaded' : <>made by {runLink(s.run_id)} ({s.pipeline}) from {s.trained_from} on {s.dataset}{s.eval_dataset ? `, evaluated on ${s.eval_dataset}` : ''}{s.agent ? `, agent ${s.agent}` : ''}</>}
          {s.has_score ? `, score ${score(true, s.score)}` : ''} <code class="sha">{s.sha256}</code>
          {s.data_manifest_sha256 ? <> data manifest <code class="sha">{s.data_manifest_sha256}</code></> : null}
        </li>
      ))}
    </ol>
  );
}

export function PackagePage({ name, route }: { name: string; route: Route }) {
  const versions = useLoad((signal) => api<{ versions: PackageVersion[] }>(`/api/packages/${encodeURIComponent(name)}/versions`, { signal }), name);
  const chosen = route.query.get('version');
  return (
    <Page title={`Package ${name}`}>
      <ErrorBox error={versions.error} />
      {versions.data ? <Table rows={versions.data.versions} rowKey={(v) => v.version} testid="versions" initialSort={{ col: 0, desc: true }} columns={[
        { label: 'Version', sort: (v) => v.version, cell: (v) => <a href={`#/packages/${encodeURIComponent(name)}?version=${encodeURIComponent(v.version)}`}>{v.version}</a> },
        { label: 'Source', sort: (v) => v.source, cell: (v) => (v.run_id ? runLink(v.run_id) : v.source) },
        { label: 'Trained from', sort: (v) => v.trained_from, cell: (v) => v.trained_from },
        { label: 'Score', sort: (v) => (v.has_score ? v.score : -Infinity), cell: (v) => score(v.has_score, v.score) },
        { label: 'Size', sort: (v) => v.size_bytes, cell: (v) => bytes(v.size_bytes) },
        { label: 'sha256', cell: (v) => <code class="sha">{v.sha256}</code> },
        { label: 'Created', sort: (v) => v.created_at, cell: (v) => time(v.created_at) },
        { label: 'Lineage', cell: (v) => <button type="button" onClick={() => navigate(`/packages/${encodeURIComponent(name)}`, new URLSearchParams({ version: v.version }))}>Lineage</button> },
      ]} /> : null}
      {chosen ? <><h2>Lineage of {name} {chosen}</h2><Lineage name={name} version={chosen} /></> : null}
    </Page>
  );
}
