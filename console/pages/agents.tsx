// Agents (admins only, as `trainyard agents`): status, each GPU and the run holding it, labels, last
// heartbeat, and Drain. Read again every 2 s.
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { bytes, time } from '../format.js';
import type { Agent } from '../types.js';
import { ErrorBox, Page, runLink, useLoad } from '../ui.js';

export function AgentsPage() {
  const list = useLoad((signal) => api<{ agents: Agent[] }>('/api/agents', { signal }), 'agents', 2000);
  const [error, setError] = useState<Error | null>(null);
  const drain = (name: string) => api(`/api/agents/${encodeURIComponent(name)}/drain`, { method: 'POST' })
    .then(() => list.reload(), (e: unknown) => setError(e instanceof Error ? e : new Error(String(e))));
  return (
    <Page title="Agents">
      <ErrorBox error={list.error ?? error} />
      <div class="cards" data-testid="agents">
        {list.data?.agents.length === 0 ? <p class="muted">No agents.</p> : null}
        {list.data?.agents.map((a) => (
          <article class="card" key={a.name} data-agent={a.name}>
            <header><h2>{a.name}</h2> <span class={`status status-${a.status}`}>{a.status}</span>
              {a.status === 'online' ? <button type="button" onClick={() => void drain(a.name)} data-testid={`drain-${a.name}`}>Drain</button> : null}</header>
            <p class="muted">{a.hostname} · {a.cpus} CPUs · {bytes(a.memory_mb * 1024 * 1024)} · v{a.version} · last heartbeat <span data-testid="heartbeat">{time(a.last_heartbeat_at)}</span></p>
            <p>Labels: {Object.keys(a.labels).length ? Object.entries(a.labels).map(([k, v]) => <code key={k} class="label">{k}={v}</code>) : <span class="muted">none</span>}</p>
            <table class="grid gpus">
              <thead><tr><th>GPU</th><th>Model</th><th>Memory</th><th>UUID</th><th>Held by</th></tr></thead>
              <tbody>
                {a.gpus.length === 0 ? <tr><td colSpan={5} class="empty">No GPUs.</td></tr> : a.gpus.map((g) => (
                  <tr key={g.index}><td>{g.index}</td><td>{g.name}</td><td>{bytes(g.memory_mb * 1024 * 1024)}</td><td><code>{g.uuid}</code></td><td data-testid="gpu-holder">{g.run_id ? runLink(g.run_id) : 'free'}</td></tr>
                ))}
              </tbody>
            </table>
            {a.run_ids.length ? <p>Runs: {a.run_ids.map((id) => <span key={id}>{runLink(id)} </span>)}</p> : null}
          </article>
        ))}
      </div>
    </Page>
  );
}
