// Reading the fleet for the leader's model (fleet-cache.ts): the agents, their GPUs and what every placed
// run holds. Three queries, whatever the fleet's size; the whole fleet when the leader starts (and now and
// then after), only the named agents when they changed.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { AgentCapacity } from './fleet.js';
import { memberKey } from './gang.js';

/** What one placed run holds, and the attempt (lease) that holds it. */
export interface Holding {
  readonly run: string;
  /** 0 while the placement is not committed yet (the leader's own, in flight). */
  lease: number;
  readonly agent: string;
  readonly project: string;
  readonly cpus: number;
  readonly memoryMb: number;
  readonly gpus: number;
  readonly gpuIndices: readonly number[];
}

export interface FleetRead {
  /** Agents that are not offline (an offline one holds nothing and takes nothing). */
  agents: AgentCapacity[];
  /** Every placed run (on the named agents only, when named), whatever its agent's status. */
  holdings: Holding[];
}

/** The whole fleet, or only the named agents; each agent's usage is the sum of its holdings. */
export async function loadFleet(db: Db, only?: readonly string[]): Promise<FleetRead> {
  if (only?.length === 0) return { agents: [], holdings: [] };
  let agentsQ = db.selectFrom('agents').select(['name', 'status', 'cpus', 'memory_mb', 'labels', 'unresponsive_since', 'max_runs', 'session', 'accept_projects'])
    .where('status', '<>', 'offline');
  let gpusQ = db.selectFrom('agent_gpus').select(['agent', 'index', 'uuid', 'name', 'memory_mb']);
  let runsQ = db.selectFrom('runs').select(['id', 'lease', 'agent', 'project', 'cpus', 'memory_mb', 'gpus', 'gpu_indices']).where('agent', 'is not', null)
    // A run whose processes exited and whose agent released its capacity holds nothing while it uploads.
    .where('released_at', 'is', null);
  if (only) {
    const names = [...only];
    agentsQ = agentsQ.where(sql<boolean>`name = any(${names}::text[])`);
    gpusQ = gpusQ.where(sql<boolean>`agent = any(${names}::text[])`);
    runsQ = runsQ.where(sql<boolean>`agent = any(${names}::text[])`);
  }
  // A gang's members of node rank >= 1 (placement/gang.ts) hold the run's resources on their own agents.
  let membersQ = db.selectFrom('run_members as m').innerJoin('runs as r', (j) => j.onRef('r.id', '=', 'm.run_id').onRef('r.lease', '=', 'm.lease'))
    .select(['m.run_id as id', 'm.node_rank', 'm.lease', 'm.agent', 'r.project', 'r.cpus', 'r.memory_mb', 'r.gpus', 'm.gpu_indices']).where('r.agent', 'is not', null);
  if (only) membersQ = membersQ.where(sql<boolean>`m.agent = any(${[...only]}::text[])`);
  const [agents, gpus, runs, members] = await Promise.all([agentsQ.execute(), gpusQ.execute(), runsQ.execute(), membersQ.execute()]);
  const fleet = new Map<string, AgentCapacity>();
  for (const a of agents) {
    fleet.set(a.name, {
      // An agent that missed a dispatch takes nothing until it is heard from, but still counts for "ever".
      name: a.name, status: a.unresponsive_since ? 'unresponsive' : a.status, cpus: a.cpus, memoryMb: a.memory_mb, labels: a.labels,
      gpus: [], usedGpus: new Set(), usedCpus: 0, usedMemoryMb: 0, maxRuns: a.max_runs, usedRuns: 0, session: Number(a.session),
      acceptProjects: a.accept_projects ? new Set(a.accept_projects) : null,
    });
  }
  for (const g of gpus) fleet.get(g.agent)?.gpus.push({ index: g.index, uuid: g.uuid, name: g.name, memoryMb: g.memory_mb });
  const holdings: Holding[] = [];
  for (const r of [...runs, ...members.map((m) => ({ ...m, id: memberKey(m.id, m.node_rank) }))]) {
    const h: Holding = {
      run: r.id, lease: Number(r.lease), agent: r.agent!, project: r.project, cpus: r.cpus, memoryMb: r.memory_mb, gpus: r.gpus, gpuIndices: r.gpu_indices,
    };
    holdings.push(h);
    const a = fleet.get(h.agent);
    if (!a) continue;
    a.usedCpus += h.cpus;
    a.usedMemoryMb += h.memoryMb;
    a.usedRuns++;
    for (const g of h.gpuIndices) a.usedGpus.add(g);
  }
  return { agents: [...fleet.values()], holdings };
}
