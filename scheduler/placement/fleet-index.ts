// The fleet indexed for placement at scale: agents bucketed by free GPU count, so a best-fit choice looks
// at the smallest bucket that can hold the request first instead of scanning every agent, and answers
// for a request shape are cached within a pass ("could any agent ever take this?", "is nothing free?").
// Per-run cost stays flat as the fleet grows from tens to thousands of agents.
import { couldEverFit, describeRequest, gpuMatches, selectorMatches, take, type AgentCapacity, type Choice, type Request } from './fleet.js';

const freeGpus = (a: AgentCapacity) => a.gpus.length - a.usedGpus.size;

export class FleetIndex {
  readonly #buckets: Set<AgentCapacity>[] = [];
  readonly #byName = new Map<string, AgentCapacity>();
  readonly #ever = new Map<string, boolean>();
  /** Shapes found unplaceable in this pass: nothing frees up within a pass, so they stay unplaceable. */
  readonly #full = new Set<string>();
  /** Agents held back for a blocked bigger request, so smaller ones cannot keep fragmenting them. */
  readonly #reserved = new Set<string>();

  constructor(agents: Iterable<AgentCapacity>) {
    for (const a of agents) {
      this.#byName.set(a.name, a);
      if (a.status === 'online') this.#bucket(freeGpus(a)).add(a);
    }
  }

  #bucket(n: number): Set<AgentCapacity> {
    while (this.#buckets.length <= n) this.#buckets.push(new Set());
    return this.#buckets[n]!;
  }

  #couldEver(key: string, r: Request): boolean {
    let ever = this.#ever.get(key);
    if (ever === undefined) {
      ever = false;
      for (const a of this.#byName.values()) if (couldEverFit(a, r)) { ever = true; break; }
      this.#ever.set(key, ever);
    }
    return ever;
  }

  choose(r: Request): Choice {
    const key = shapeKey(r);
    if (this.#byName.size === 0) return { ok: false, never: false, reason: 'no agent has registered yet' };
    if (!this.#couldEver(key, r)) return { ok: false, never: true, reason: `no registered agent could ever satisfy this request (${describeRequest(r)})` };
    const waiting: Choice = { ok: false, never: false, reason: `waiting for a free agent with ${describeRequest(r)}` };
    if (this.#full.has(key)) return waiting;
    let best: { a: AgentCapacity; gpus: number[]; cpusLeft: number } | null = null;
    for (let f = r.gpus; f < this.#buckets.length && !best; f++) {
      for (const a of this.#buckets[f]!) {
        if (this.#reserved.has(a.name)) continue;
        const pick = fits(a, r);
        if (!pick) continue;
        const cpusLeft = a.cpus - a.usedCpus - r.cpus;
        if (!best || cpusLeft < best.cpusLeft) best = { a, gpus: pick, cpusLeft };
        // Within the tightest bucket, any agent will do once CPUs are not requested: stop looking.
        if (r.cpus === 0) break;
      }
    }
    if (!best) {
      this.#full.add(key);
      return waiting;
    }
    return { ok: true, agent: best.a.name, gpuIndices: best.gpus };
  }

  take(name: string, r: Request, gpuIndices: number[]): void {
    const a = this.#byName.get(name)!;
    this.#bucket(freeGpus(a)).delete(a);
    take(a, r, gpuIndices);
    this.#bucket(freeGpus(a)).add(a);
  }

  /**
   * A multi-GPU request that cannot be placed now holds back the agent closest to fitting it (the most
   * free GPUs among those that could ever take it), so later small requests do not keep it fragmented.
   */
  reserveFor(r: Request): string | null {
    if (r.gpus < 2) return null;
    for (let f = this.#buckets.length - 1; f >= 0; f--) {
      for (const a of this.#buckets[f]!) {
        if (!this.#reserved.has(a.name) && couldEverFit(a, r)) {
          this.#reserved.add(a.name);
          this.#full.clear(); // what fits elsewhere has changed
          return a.name;
        }
      }
    }
    return null;
  }
}

function fits(a: AgentCapacity, r: Request): number[] | null {
  if (a.cpus - a.usedCpus < r.cpus || a.memoryMb - a.usedMemoryMb < r.memoryMb || !selectorMatches(a, r)) return null;
  // Every run takes a slot, whatever it asks for: a burst of 0-CPU runs waits for slots.
  if (a.maxRuns > 0 && a.usedRuns >= a.maxRuns) return null;
  if (r.gpus === 0) return [];
  const out: number[] = [];
  for (const g of a.gpus) {
    if (a.usedGpus.has(g.index) || !gpuMatches(g, r)) continue;
    out.push(g.index);
    if (out.length === r.gpus) return out;
  }
  return null;
}

function shapeKey(r: Request): string {
  const sel = Object.entries(r.selector).sort().map(([k, v]) => `${k}=${v}`).join(',');
  return `${r.gpus}|${r.gpuModel.toLowerCase()}|${r.gpuMemoryMb}|${r.cpus}|${r.memoryMb}|${sel}`;
}
