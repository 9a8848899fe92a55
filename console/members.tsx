// A gang run's members on its run page (README, "Multi-agent runs"): node rank, agent, GPUs, the global
// ranks each runs and where it stands, as `trainyard run get` shows them. Each GPU by its UUID where the
// agent registered one, else by index.
import type { RunMember } from './types.js';
import { time } from './format.js';

export const memberGpus = (m: RunMember) => m.gpu_indices.map((g, i) => m.gpu_uuids[i] || `GPU ${g}`).join(', ') || 'none';
export const memberRanks = (m: RunMember) => (m.first_rank === m.last_rank ? `rank ${m.first_rank}` : `ranks ${m.first_rank}-${m.last_rank}`);

export function Members({ members }: { members: RunMember[] }) {
  return (
    <table class="grid members" data-testid="run-members">
      <thead><tr><th>Node</th><th>Agent</th><th>GPUs</th><th>Ranks</th><th>State</th></tr></thead>
      <tbody>
        {members.map((m) => (
          <tr key={m.node_rank} data-testid={`member-${m.node_rank}`}>
            <td>{m.node_rank}</td><td>{m.agent}</td><td>{memberGpus(m)}</td><td>{memberRanks(m)}</td>
            <td><span class={`status status-${m.state.split(' ')[0]!.toLowerCase()}`}>{m.state}</span>{m.ended_at ? <span class="muted"> {time(m.ended_at)}</span> : null}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
