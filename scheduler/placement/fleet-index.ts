// The fleet indexed for placement at scale, kept from pass to pass by the leader's cache (fleet-cache.ts)
// and changed in place as runs are placed and freed, so no pass rebuilds it.
//
// Agents are grouped by the kind of request they can serve (a class: a selector and, for GPU requests, a
// GPU model and memory per GPU), made the first time such a request comes. Within a class, the agents that
// can take a run now sit in levels by free matching GPUs, and within a level by free CPUs. Best fit is then
// the first agent found from the tightest level that can hold the request, at the fewest CPUs left over:
// a choice looks at a handful of agents, never at the whole fleet, so a placement costs the same with 10
// agents or 10,000. Agents that cannot take a run now (not online, run slots full) are in no level.
import { acceptsProject, couldEverFit, describeRequest, gpuMatches, selectorKey, selectorMatches, take, type AgentCapacity, type Choice, type GpuInfo, type Request } from './fleet.js';

/** Classes kept beyond this many are dropped when a pass did not use them (distinct selectors come and go). */
const MAX_CLASSES = 64;
const NO_GPUS: readonly number[] = Object.freeze([]);

interface AgentClass {
  readonly selector: Readonly<Record<string, string>>;
  /** '' and 0 for requests without GPUs or without a model or memory: every GPU matches. */
  readonly gpuModel: string;
  readonly gpuMemoryMb: number;
  readonly levels: Level[];
  usedInPass: number;
}

/** One agent in one class: which of its GPUs match, and where it sits now. */
interface Member {
  readonly entry: Entry;
  readonly cls: AgentClass;
  /** null: all of them. */
  readonly matching: ReadonlySet<number> | null;
  /** The level and CPU key it sits at, or null when it can take nothing now. */
  at: { level: number; cpus: number } | null;
}

interface Entry { readonly a: AgentCapacity; members: Member[] }

/** The agents with the same free matching GPUs, by free CPUs (kept sorted, so a lookup is a binary search). */
class Level {
  readonly #byCpus = new Map<number, Set<Member>>();
  readonly keys: number[] = [];

  add(m: Member, cpus: number): void {
    let set = this.#byCpus.get(cpus);
    if (!set) {
      this.#byCpus.set(cpus, (set = new Set()));
      this.keys.splice(lowerBound(this.keys, cpus), 0, cpus);
    }
    set.add(m);
  }

  delete(m: Member, cpus: number): void {
    const set = this.#byCpus.get(cpus)!;
    set.delete(m);
    if (set.size === 0) {
      this.#byCpus.delete(cpus);
      this.keys.splice(lowerBound(this.keys, cpus), 1);
    }
  }

  at(cpus: number): Set<Member> { return this.#byCpus.get(cpus)!; }
}

function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** What a request is, as keys: its exact shape (for per-pass answers) and its class. */
interface Keys { shape: string; cls: string; waiting: string | null }

export class FleetIndex {
  readonly #entries = new Map<string, Entry>();
  readonly #classes = new Map<string, AgentClass>();
  readonly #keys = new WeakMap<Request, Keys>();
  /** "Could any agent ever take this shape?": kept until an agent is added, changed or removed. */
  readonly #ever = new Map<string, boolean>();
  /** Shapes found unplaceable in this pass: nothing frees up within a pass, so they stay unplaceable. */
  readonly #full = new Set<string>();
  /** Agents held back for a blocked bigger request, so smaller ones cannot keep fragmenting them. */
  readonly #reserved = new Set<string>();
  #pass = 0;
  /** Agents started with --accept-projects: while there are any, requests carry their project. */
  #accepting = 0;

  constructor(agents: Iterable<AgentCapacity> = []) {
    for (const a of agents) this.upsert(a);
  }

  get size(): number { return this.#entries.size; }

  /** Whether some agent takes only some projects' runs (then a request must say its project). */
  get restrictsProjects(): boolean { return this.#accepting > 0; }

  get(name: string): AgentCapacity | undefined { return this.#entries.get(name)?.a; }

  /** A new pass: what the last one reserved or found full no longer holds. */
  beginPass(): void {
    this.#pass++;
    this.#reserved.clear();
    this.#full.clear();
    if (this.#classes.size > MAX_CLASSES) {
      for (const [key, cls] of this.#classes) {
        if (cls.usedInPass >= this.#pass - 1) continue;
        this.#classes.delete(key);
        for (const e of this.#entries.values()) {
          const m = e.members.find((x) => x.cls === cls);
          if (m) { this.#unplace(m); e.members = e.members.filter((x) => x !== m); }
        }
      }
    }
  }

  /** Adds an agent, or replaces what is known of it (its capacity and what it holds). */
  upsert(a: AgentCapacity): void {
    this.remove(a.name);
    this.#ever.clear(); // a shape no agent could take may fit this one
    const entry: Entry = { a, members: [] };
    this.#entries.set(a.name, entry);
    if (a.acceptProjects) this.#accepting++;
    for (const cls of this.#classes.values()) this.#join(entry, cls);
  }

  remove(name: string): void {
    const e = this.#entries.get(name);
    if (!e) return;
    for (const m of e.members) this.#unplace(m);
    this.#entries.delete(name);
    if (e.a.acceptProjects) this.#accepting--;
    this.#reserved.delete(name);
    this.#ever.clear();
  }

  /**
   * The best agent for the request, or why none. `admit`: a rule of the caller's that an agent must also
   * pass now (exclusive projects: placer.ts); the request then carries its project, so what is full for
   * one project is not taken as full for another.
   */
  choose(r: Request, admit?: (a: AgentCapacity) => boolean, except?: ReadonlySet<string>): Choice {
    if (this.#entries.size === 0) return { ok: false, never: false, reason: 'no agent has registered yet' };
    const k = this.#keysOf(r);
    if (!this.#couldEver(k.shape, r)) return { ok: false, never: true, reason: `no registered agent could ever satisfy this request (${describeRequest(r)})` };
    // A gang's later members (placement/gang.ts) skip the agents its earlier ones took: a shape full for
    // them is not full for an ordinary run, so it is not recorded as full.
    if (except?.size) return this.#scan(r, k, admit, except) ?? { ok: false, never: false, reason: `waiting for a free agent with ${describeRequest(r)}` };
    if (!this.#full.has(k.shape)) {
      const c = this.#scan(r, k, admit);
      if (c) return c;
      this.#full.add(k.shape);
    }
    k.waiting ??= `waiting for a free agent with ${describeRequest(r)}`;
    return { ok: false, never: false, reason: k.waiting };
  }

  /** The first agent of the request's class that fits it now (none in `except`), or null. */
  #scan(r: Request, k: Keys, admit: ((a: AgentCapacity) => boolean) | undefined, except?: ReadonlySet<string>): Choice | null {
    if (this.#full.has(k.shape)) return null;
    const cls = this.#classOf(k.cls, r);
    for (let f = r.gpus; f < cls.levels.length; f++) {
      const level = cls.levels[f];
      if (!level) continue;
      const keys = level.keys;
      for (let i = lowerBound(keys, r.cpus); i < keys.length; i++) {
        for (const m of level.at(keys[i]!)) {
          const a = m.entry.a;
          if (except?.has(a.name) || this.#reserved.has(a.name) || a.memoryMb - a.usedMemoryMb < r.memoryMb) continue;
          if (!acceptsProject(a, r) || (admit && !admit(a))) continue;
          const gpus = pickGpus(a, r, m.matching);
          if (gpus) return { ok: true, agent: a.name, gpuIndices: gpus };
        }
      }
    }
    return null;
  }

  /** Marks a choice as taken, so the next request sees it. */
  take(name: string, r: Pick<Request, 'cpus' | 'memoryMb'>, gpuIndices: readonly number[]): void {
    const e = this.#entries.get(name)!;
    for (const m of e.members) this.#unplace(m);
    take(e.a, r, gpuIndices);
    for (const m of e.members) this.#place(m);
  }

  /** Gives back what a run held (it ended, went back to the queue, or its placement was refused). */
  release(name: string, r: Pick<Request, 'cpus' | 'memoryMb'>, gpuIndices: readonly number[]): void {
    const e = this.#entries.get(name);
    if (!e) return;
    for (const m of e.members) this.#unplace(m);
    const a = e.a;
    for (const g of gpuIndices) a.usedGpus.delete(g);
    a.usedCpus -= r.cpus;
    a.usedMemoryMb -= r.memoryMb;
    a.usedRuns--;
    for (const m of e.members) this.#place(m);
  }

  /**
   * A multi-GPU request that cannot be placed now holds back the agent closest to fitting it (the most
   * free GPUs among those that could ever take it), so later small requests do not keep it fragmented.
   */
  reserveFor(r: Request): string | null {
    if (r.gpus < 2) return null;
    const cls = this.#classOf(this.#keysOf(r).cls, r);
    for (let f = cls.levels.length - 1; f >= 0; f--) {
      const level = cls.levels[f];
      if (!level) continue;
      for (let i = level.keys.length - 1; i >= 0; i--) {
        for (const m of level.at(level.keys[i]!)) {
          const a = m.entry.a;
          if (this.#reserved.has(a.name) || !couldEverFit(a, r)) continue;
          this.#reserved.add(a.name);
          this.#full.clear(); // what fits elsewhere has changed
          return a.name;
        }
      }
    }
    return null;
  }

  /**
   * Holds an agent back for this pass: no request chooses it (an agent held for a preempting run, whose
   * victims are leaving it, or reserved for a gang: placer.ts). Only chooseOn places there, or the gang
   * once letGo gives its agents back to it. False when it was held back already (by someone else).
   */
  holdBack(name: string): boolean {
    if (this.#reserved.has(name)) return false;
    this.#reserved.add(name);
    this.#full.clear(); // what fits elsewhere has changed
    return true;
  }

  /** Agents held back (holdBack) are choosable again: a reserving gang tries its own (placer.ts). */
  letGo(names: Iterable<string>): void {
    for (const n of names) this.#reserved.delete(n);
    this.#full.clear(); // more may fit now
  }

  /**
   * The agents that could take one member of the request now (free matching GPUs, CPUs, memory, a run slot),
   * none held back, each with its free matching GPUs: what a gang's preferences group (placement/gang.ts).
   * Walks the request's class from its tightest level, so it costs the agents that fit, not the fleet.
   */
  fitNow(r: Request, admit?: (a: AgentCapacity) => boolean): { a: AgentCapacity; free: GpuInfo[] }[] {
    if (this.#entries.size === 0) return [];
    const cls = this.#classOf(this.#keysOf(r).cls, r);
    const out: { a: AgentCapacity; free: GpuInfo[] }[] = [];
    for (let f = r.gpus; f < cls.levels.length; f++) {
      const level = cls.levels[f];
      if (!level) continue;
      for (let i = lowerBound(level.keys, r.cpus); i < level.keys.length; i++) {
        for (const m of level.at(level.keys[i]!)) {
          const a = m.entry.a;
          if (this.#reserved.has(a.name) || a.memoryMb - a.usedMemoryMb < r.memoryMb) continue;
          if (!acceptsProject(a, r) || (admit && !admit(a))) continue;
          out.push({ a, free: a.gpus.filter((g) => !a.usedGpus.has(g.index) && (m.matching === null || m.matching.has(g.index))) });
        }
      }
    }
    return out;
  }

  /**
   * Every online agent that could ever take one member of the request, none held back by someone else:
   * what a gang's reservation chooses from (placement/gang.ts reserveGang). A walk of the fleet, done for
   * one gang per pass at most.
   */
  couldServe(r: Request, admit?: (a: AgentCapacity) => boolean): AgentCapacity[] {
    const out: AgentCapacity[] = [];
    for (const { a } of this.#entries.values()) {
      if (a.status !== 'online' || this.#reserved.has(a.name) || !couldEverFit(a, r) || (admit && !admit(a))) continue;
      out.push(a);
    }
    return out;
  }

  /** The request on one named agent (the one held for it), held back or not, or why not now. */
  chooseOn(name: string, r: Request): Choice {
    const a = this.#entries.get(name)?.a;
    const waiting: Choice = { ok: false, never: false, reason: `waiting for the runs it preempted to leave agent ${name}` };
    if (!a || a.status !== 'online' || (a.maxRuns > 0 && a.usedRuns >= a.maxRuns)) return waiting;
    if (a.cpus - a.usedCpus < r.cpus || a.memoryMb - a.usedMemoryMb < r.memoryMb || !couldEverFit(a, r)) return waiting;
    const gpus = pickGpus(a, r, new Set(a.gpus.filter((g) => gpuMatches(g, r)).map((g) => g.index)));
    return gpus ? { ok: true, agent: a.name, gpuIndices: gpus } : waiting;
  }

  #keysOf(r: Request): Keys {
    let k = this.#keys.get(r);
    if (!k) {
      const sel = selectorKey(r.selector);
      const model = r.gpus > 0 ? r.gpuModel.toLowerCase() : '';
      const mem = r.gpus > 0 ? r.gpuMemoryMb : 0;
      const project = r.project === undefined ? '' : `|${r.project}`;
      k = { shape: `${r.gpus}|${model}|${mem}|${r.cpus}|${r.memoryMb}|${sel}${project}`, cls: `${model}|${mem}|${sel}`, waiting: null };
      this.#keys.set(r, k);
    }
    return k;
  }

  #couldEver(shape: string, r: Request): boolean {
    let ever = this.#ever.get(shape);
    if (ever === undefined) {
      ever = false;
      for (const e of this.#entries.values()) if (couldEverFit(e.a, r)) { ever = true; break; }
      this.#ever.set(shape, ever);
    }
    return ever;
  }

  #classOf(key: string, r: Request): AgentClass {
    let cls = this.#classes.get(key);
    if (!cls) {
      cls = { selector: r.selector, gpuModel: r.gpus > 0 ? r.gpuModel : '', gpuMemoryMb: r.gpus > 0 ? r.gpuMemoryMb : 0, levels: [], usedInPass: this.#pass };
      this.#classes.set(key, cls);
      for (const e of this.#entries.values()) this.#join(e, cls);
    }
    cls.usedInPass = this.#pass;
    return cls;
  }

  /** Makes the agent a member of the class if it matches it at all. */
  #join(e: Entry, cls: AgentClass): void {
    const probe = { gpus: 1, gpuModel: cls.gpuModel, gpuMemoryMb: cls.gpuMemoryMb, cpus: 0, memoryMb: 0, selector: cls.selector };
    if (!selectorMatches(e.a, probe)) return;
    let matching: Set<number> | null = null;
    if (cls.gpuModel !== '' || cls.gpuMemoryMb > 0) {
      matching = new Set(e.a.gpus.filter((g) => gpuMatches(g, probe)).map((g) => g.index));
      if (matching.size === 0) return; // it has none of the GPUs this class asks for
    }
    const m: Member = { entry: e, cls, matching, at: null };
    e.members.push(m);
    this.#place(m);
  }

  #place(m: Member): void {
    const a = m.entry.a;
    if (a.status !== 'online' || (a.maxRuns > 0 && a.usedRuns >= a.maxRuns)) return;
    let free = 0;
    if (m.matching === null) free = a.gpus.length - a.usedGpus.size;
    else for (const g of m.matching) if (!a.usedGpus.has(g)) free++;
    const cpus = a.cpus - a.usedCpus;
    const levels = m.cls.levels;
    while (levels.length <= free) levels.push(new Level());
    levels[free]!.add(m, cpus);
    m.at = { level: free, cpus };
  }

  #unplace(m: Member): void {
    if (!m.at) return;
    m.cls.levels[m.at.level]!.delete(m, m.at.cpus);
    m.at = null;
  }
}

/** The request's GPUs on this agent (its first free matching ones), or null if it has not enough. */
function pickGpus(a: AgentCapacity, r: Request, matching: ReadonlySet<number> | null): number[] | null {
  if (r.gpus === 0) return NO_GPUS as number[];
  const out: number[] = [];
  for (const g of a.gpus) {
    if (a.usedGpus.has(g.index) || (matching !== null && !matching.has(g.index))) continue;
    out.push(g.index);
    if (out.length === r.gpus) return out;
  }
  return null;
}
