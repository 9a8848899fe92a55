// The fleet as the placer sees it: each agent's capacity and what is taken, and the best-fit choice of an
// agent and specific GPUs for a request. Pure: no I/O, so the placement rules are tested directly.

export interface GpuInfo { index: number; uuid: string; name: string; memoryMb: number }

export interface AgentCapacity {
  name: string;
  status: string; // only 'online' agents take new runs
  cpus: number;
  memoryMb: number;
  labels: Readonly<Record<string, string>>;
  gpus: GpuInfo[];
  usedGpus: Set<number>;
  usedCpus: number;
  usedMemoryMb: number;
}

export interface Request {
  gpus: number;
  gpuModel: string;
  gpuMemoryMb: number;
  cpus: number;
  memoryMb: number;
  selector: Readonly<Record<string, string>>;
}

export type Choice =
  | { ok: true; agent: string; gpuIndices: number[] }
  | { ok: false; never: boolean; reason: string };

function gpuMatches(g: GpuInfo, r: Request): boolean {
  return (r.gpuModel === '' || g.name.toLowerCase().includes(r.gpuModel.toLowerCase())) && g.memoryMb >= r.gpuMemoryMb;
}

function selectorMatches(a: AgentCapacity, r: Request): boolean {
  return Object.entries(r.selector).every(([k, v]) => a.labels[k] === v);
}

/** Could this agent run the request if it were idle? */
export function couldEverFit(a: AgentCapacity, r: Request): boolean {
  return selectorMatches(a, r) && a.cpus >= r.cpus && a.memoryMb >= r.memoryMb && a.gpus.filter((g) => gpuMatches(g, r)).length >= r.gpus;
}

export function describeRequest(r: Request): string {
  const parts: string[] = [];
  if (r.gpus > 0) parts.push(`${r.gpus} GPU${r.gpus > 1 ? 's' : ''}${r.gpuModel ? ` of model ${r.gpuModel}` : ''}${r.gpuMemoryMb ? ` with at least ${r.gpuMemoryMb} MiB each` : ''}`);
  if (r.cpus > 0) parts.push(`${r.cpus} CPUs`);
  if (r.memoryMb > 0) parts.push(`${r.memoryMb} MiB memory`);
  const sel = Object.entries(r.selector).map(([k, v]) => `${k}=${v}`);
  if (sel.length) parts.push(`labels ${sel.join(',')}`);
  return parts.length ? parts.join(', ') : 'no special resources';
}

/**
 * Best fit: among agents that can take the request now, the one left with the fewest free matching GPUs
 * (then the fewest free CPUs), so big multi-GPU requests still find whole agents free. Within the agent,
 * the lowest free matching GPU indices.
 */
export function choose(agents: Iterable<AgentCapacity>, r: Request): Choice {
  let best: { a: AgentCapacity; gpus: number[]; score: [number, number] } | null = null;
  let anyKnown = false;
  let anyEver = false;
  for (const a of agents) {
    anyKnown = true;
    if (!couldEverFit(a, r)) continue;
    anyEver = true;
    if (a.status !== 'online') continue;
    if (a.cpus - a.usedCpus < r.cpus || a.memoryMb - a.usedMemoryMb < r.memoryMb) continue;
    const free = a.gpus.filter((g) => !a.usedGpus.has(g.index) && gpuMatches(g, r));
    if (free.length < r.gpus) continue;
    const freeAll = a.gpus.length - a.usedGpus.size;
    const score: [number, number] = [freeAll - r.gpus, a.cpus - a.usedCpus - r.cpus];
    if (!best || score[0] < best.score[0] || (score[0] === best.score[0] && score[1] < best.score[1])) {
      best = { a, gpus: free.slice(0, r.gpus).map((g) => g.index), score };
    }
  }
  if (best) return { ok: true, agent: best.a.name, gpuIndices: best.gpus };
  if (anyKnown && !anyEver) {
    return { ok: false, never: true, reason: `no registered agent could ever satisfy this request (${describeRequest(r)})` };
  }
  if (!anyKnown) return { ok: false, never: false, reason: 'no agent has registered yet' };
  return { ok: false, never: false, reason: `waiting for a free agent with ${describeRequest(r)}` };
}

/** Marks a choice as taken, so the next request in the same pass sees it. */
export function take(a: AgentCapacity, r: Request, gpuIndices: number[]): void {
  for (const g of gpuIndices) a.usedGpus.add(g);
  a.usedCpus += r.cpus;
  a.usedMemoryMb += r.memoryMb;
}
