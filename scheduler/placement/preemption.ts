// Which runs to preempt for a queued run that nothing free can take (pure: no I/O; the placer reads the
// candidates and makes the change, scheduler/runs/transitions.ts `preempt`).
//
// The candidates are Running runs of preemptible projects, of a lower priority than the run, started at
// least --min-runtime ago (the read already keeps only those). On each agent that could take the request
// at all, victims are added in order of least work lost (work-lost.ts) until the request fits in what
// is free plus what they hold; then any victim the request can do without is dropped again (the most
// work lost first), so no more runs are stopped than needed. Of the agents where that works, the one
// that loses the least work in total wins (then the fewest victims, then the name, so a choice is stable).
import { acceptsProject, couldEverFit, gpuMatches, selectorMatches, type AgentCapacity, type Request } from './fleet.js';
import { workLostMs, type SavedWork } from './work-lost.js';

export interface Candidate extends SavedWork {
  id: string;
  lease: number;
  agent: string;
  priority: number;
  cpus: number;
  memoryMb: number;
  gpuIndices: readonly number[];
}

export interface PreemptionPlan { agent: string; victims: Candidate[]; lostMs: number }

/** Does the request fit on `a` once `victims` have left? */
function fitsWithout(a: AgentCapacity, r: Request, victims: readonly Candidate[]): boolean {
  let cpus = a.cpus - a.usedCpus;
  let memory = a.memoryMb - a.usedMemoryMb;
  let slots = a.maxRuns > 0 ? a.maxRuns - a.usedRuns : Infinity;
  const freed = new Set<number>();
  for (const v of victims) {
    cpus += v.cpus;
    memory += v.memoryMb;
    slots++;
    for (const g of v.gpuIndices) freed.add(g);
  }
  if (cpus < r.cpus || memory < r.memoryMb || slots < 1) return false;
  if (r.gpus === 0) return true;
  let gpus = 0;
  for (const g of a.gpus) if (gpuMatches(g, r) && (!a.usedGpus.has(g.index) || freed.has(g.index))) gpus++;
  return gpus >= r.gpus;
}

/**
 * The victims that free `r` on one agent with the least work lost, or null if none do. `candidates`: by
 * agent, those the run may preempt (lower priority, preemptible, past --min-runtime). `admit`: a rule of the
 * caller's the agent must also pass (held for another run, exclusive projects).
 */
export function chooseVictims(r: Request, priority: number, agents: Iterable<AgentCapacity>, candidates: ReadonlyMap<string, readonly Candidate[]>,
  now: number, admit: (a: AgentCapacity) => boolean = () => true): PreemptionPlan | null {
  let best: PreemptionPlan | null = null;
  for (const a of agents) {
    const mine = candidates.get(a.name)?.filter((c) => c.priority < priority);
    if (!mine?.length || a.status !== 'online' || !selectorMatches(a, r) || !acceptsProject(a, r) || !couldEverFit(a, r) || !admit(a)) continue;
    const byLoss = [...mine].sort((x, y) => workLostMs(x, now) - workLostMs(y, now) || x.id.localeCompare(y.id));
    const victims: Candidate[] = [];
    for (const c of byLoss) {
      if (fitsWithout(a, r, victims)) break;
      victims.push(c);
    }
    if (!fitsWithout(a, r, victims) || victims.length === 0) continue;
    // Drop whom the request does without, the most work lost first.
    for (let i = victims.length - 1; i >= 0; i--) {
      const rest = victims.filter((_, j) => j !== i);
      if (fitsWithout(a, r, rest)) victims.splice(i, 1);
    }
    const lostMs = victims.reduce((sum, v) => sum + workLostMs(v, now), 0);
    if (!best || lostMs < best.lostMs || (lostMs === best.lostMs && (victims.length < best.victims.length
      || (victims.length === best.victims.length && a.name < best.agent)))) {
      best = { agent: a.name, victims, lostMs };
    }
  }
  return best;
}
