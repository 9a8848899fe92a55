// The fleet as the placer sees it: each agent's capacity and what is taken, and what a request asks for.
// Pure: no I/O. The choice itself is FleetIndex's (fleet-index.ts).

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
  /** Run slots (0: no limit) and how many runs hold one. */
  maxRuns: number;
  usedRuns: number;
  /**
   * The registration this was read from (agents.session). The place statement is guarded by it, so a
   * placement computed from an older registration (other GPUs, CPUs or labels) is refused.
   */
  session?: number;
  /** --accept-projects: the only projects whose runs it takes (null or absent: every project's). */
  acceptProjects?: ReadonlySet<string> | null;
}

export interface Request {
  gpus: number;
  gpuModel: string;
  gpuMemoryMb: number;
  cpus: number;
  memoryMb: number;
  selector: Readonly<Record<string, string>>;
  /**
   * The run's project, when the fleet has rules that depend on it (agents that accept only some projects,
   * exclusive projects): requests of different projects are then told apart. Absent: no such rule applies.
   */
  project?: string;
  /**
   * A gang run (scheduler/placement/gang.ts): this many distinct agents, each giving all of the above to
   * one member. Absent or 1: an ordinary run. The index chooses one member at a time and ignores it.
   */
  members?: number;
  /**
   * A gang's --prefer-same LABEL: its members on agents sharing that label's value when some such group
   * fits (placement/gang.ts preferredGroups). Absent or '': no preference. The index ignores it.
   */
  preferSame?: string;
}

export type Choice =
  | { ok: true; agent: string; gpuIndices: number[] }
  | { ok: false; never: boolean; reason: string };

export function gpuMatches(g: GpuInfo, r: Request): boolean {
  return (r.gpuModel === '' || g.name.toLowerCase().includes(r.gpuModel.toLowerCase())) && g.memoryMb >= r.gpuMemoryMb;
}

export function selectorMatches(a: AgentCapacity, r: Request): boolean {
  for (const k in r.selector) if (a.labels[k] !== r.selector[k]) return false;
  return true;
}

/** One text per selector, whatever its key order (the same labels make the same key). */
export function selectorKey(selector: Readonly<Record<string, string>>): string {
  const keys = Object.keys(selector);
  if (keys.length === 0) return '';
  return keys.sort().map((k) => `${k}=${selector[k]}`).join(',');
}

/** Does the agent take this request's project's runs at all (--accept-projects)? */
export function acceptsProject(a: AgentCapacity, r: Request): boolean {
  return !a.acceptProjects || r.project === undefined || a.acceptProjects.has(r.project);
}

/** Could this agent run the request if it were idle? */
export function couldEverFit(a: AgentCapacity, r: Request): boolean {
  return selectorMatches(a, r) && acceptsProject(a, r) && a.cpus >= r.cpus && a.memoryMb >= r.memoryMb && a.gpus.filter((g) => gpuMatches(g, r)).length >= r.gpus;
}

export function describeRequest(r: Request): string {
  const parts: string[] = [];
  if (r.gpus > 0) parts.push(`${r.gpus} GPU${r.gpus > 1 ? 's' : ''}${r.gpuModel ? ` of model ${r.gpuModel}` : ''}${r.gpuMemoryMb ? ` with at least ${r.gpuMemoryMb} MiB each` : ''}`);
  if (r.cpus > 0) parts.push(`${r.cpus} CPUs`);
  if (r.memoryMb > 0) parts.push(`${r.memoryMb} MiB memory`);
  const sel = Object.entries(r.selector).map(([k, v]) => `${k}=${v}`);
  if (sel.length) parts.push(`labels ${sel.join(',')}`);
  if (r.project !== undefined) parts.push(`accepting project ${r.project}'s runs`);
  const what = parts.length ? parts.join(', ') : 'no special resources';
  return (r.members ?? 1) > 1 ? `${r.members} agents, each with ${what}` : what;
}

/** Marks a choice as taken, so the next request in the same pass sees it. */
export function take(a: AgentCapacity, r: Pick<Request, 'cpus' | 'memoryMb'>, gpuIndices: readonly number[]): void {
  for (const g of gpuIndices) a.usedGpus.add(g);
  a.usedCpus += r.cpus;
  a.usedMemoryMb += r.memoryMb;
  a.usedRuns++;
}
