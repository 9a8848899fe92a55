import type { Db } from '../db/database.js';
import type { AgentCapacity } from './fleet.js';

export type PlacedRun = Awaited<ReturnType<typeof placedRuns>>[number];

/** What every placed run holds: read once per pass, for the fleet and for the projects' usage. */
export function placedRuns(db: Db) {
  return db.selectFrom('runs').select(['agent', 'project', 'cpus', 'memory_mb', 'gpus', 'gpu_indices']).where('agent', 'is not', null).execute();
}

/** Every known agent, with what the placed runs on it hold: two queries, whatever the fleet size. */
export async function loadFleet(db: Db, used: readonly PlacedRun[]): Promise<Map<string, AgentCapacity>> {
  const [agents, gpus] = await Promise.all([
    db.selectFrom('agents').select(['name', 'status', 'cpus', 'memory_mb', 'labels', 'unresponsive_since', 'max_runs']).where('status', '<>', 'offline').execute(),
    db.selectFrom('agent_gpus').selectAll().execute(),
  ]);
  const fleet = new Map<string, AgentCapacity>();
  for (const a of agents) {
    fleet.set(a.name, {
      // An agent that missed a dispatch takes nothing until it is heard from, but still counts for "ever".
      name: a.name, status: a.unresponsive_since ? 'unresponsive' : a.status, cpus: a.cpus, memoryMb: a.memory_mb, labels: a.labels,
      gpus: [], usedGpus: new Set(), usedCpus: 0, usedMemoryMb: 0, maxRuns: a.max_runs, usedRuns: 0,
    });
  }
  for (const g of gpus) fleet.get(g.agent)?.gpus.push({ index: g.index, uuid: g.uuid, name: g.name, memoryMb: g.memory_mb });
  for (const u of used) {
    const a = fleet.get(u.agent!);
    if (!a) continue;
    a.usedCpus += u.cpus;
    a.usedMemoryMb += u.memory_mb;
    a.usedRuns++;
    for (const g of u.gpu_indices) a.usedGpus.add(g);
  }
  return fleet;
}
