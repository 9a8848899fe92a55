// The web console: sign in with a token (kept in sessionStorage, sent as a bearer header), then the pages.
// Everything the pages show is rendered as text by Preact (no innerHTML), so a log line, name or reason
// cannot inject markup.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, token } from './api.js';
import { useRoute } from './route.js';
import type { Me } from './types.js';
import { ErrorBox } from './ui.js';
import { RunsPage } from './pages/runs.js';
import { RunPage } from './pages/run.js';
import { PackagePage, PackagesPage } from './pages/packages.js';
import { DatasetPage, DatasetsPage } from './pages/datasets.js';
import { AgentsPage } from './pages/agents.js';
import { ProjectsPage } from './pages/projects.js';
import { UsagePage } from './pages/usage.js';
import { SchedulesPage } from './pages/schedules.js';
import { EventsPage } from './pages/events.js';
import { ComparePage } from './pages/compare.js';

const nav: [string, string][] = [
  ['runs', 'Runs'], ['packages', 'Packages'], ['datasets', 'Datasets'], ['agents', 'Agents'], ['projects', 'Projects'], ['usage', 'Usage'], ['schedules', 'Schedules'], ['events', 'Events'],
];

function SignIn({ error, onToken }: { error: Error | null; onToken: (t: string) => void }) {
  const [value, setValue] = useState('');
  return (
    <main class="signin">
      <h1>Trainyard</h1>
      <form onSubmit={(e) => { e.preventDefault(); if (value.trim()) onToken(value.trim()); }}>
        <label>Token <input type="password" name="token" autocomplete="off" placeholder="tyt_…" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} /></label>
        <button type="submit">Sign in</button>
      </form>
      <ErrorBox error={error} />
      <p class="muted">A token from <code>trainyard tokens create</code>. It is kept in this tab only (sessionStorage) and sent as a bearer header.</p>
    </main>
  );
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [signedIn, setSignedIn] = useState(token.get() !== '');
  useEffect(() => {
    if (!signedIn) return;
    api<Me>('/api/me').then(setMe, (e: unknown) => {
      if (e instanceof ApiError && e.status === 401) { token.clear(); setSignedIn(false); }
      setError(e instanceof Error ? e : new Error(String(e)));
    });
  }, [signedIn]);
  if (!signedIn) return <SignIn error={error} onToken={(t) => { token.set(t); setError(null); setSignedIn(true); }} />;
  if (!me) return <main><ErrorBox error={error} /></main>;
  const [page = 'runs', arg] = route.parts;
  let body;
  switch (page) {
    case 'runs': body = arg ? <RunPage id={arg} /> : <RunsPage me={me} route={route} />; break;
    case 'packages': body = arg ? <PackagePage name={arg} route={route} /> : <PackagesPage />; break;
    case 'datasets': body = arg ? <DatasetPage name={arg} /> : <DatasetsPage />; break;
    case 'agents': body = <AgentsPage />; break;
    case 'projects': body = <ProjectsPage />; break;
    case 'usage': body = <UsagePage route={route} />; break;
    case 'schedules': body = <SchedulesPage />; break;
    case 'compare': body = <ComparePage route={route} />; break;
    case 'events': body = <EventsPage me={me} route={route} />; break;
    default: body = <p class="error">No page "{page}".</p>;
  }
  return (
    <>
      <nav class="top">
        <b class="brand">Trainyard</b>
        {nav.map(([p, label]) => <a key={p} href={`#/${p}`} class={page === p ? 'active' : ''}>{label}</a>)}
        <span class="who" data-testid="who">{me.role} {me.role === 'admin' ? '' : `of ${me.project ?? ''}`}</span>
        <button type="button" onClick={() => { token.clear(); setMe(null); setSignedIn(false); }}>Sign out</button>
      </nav>
      <main>{body}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
