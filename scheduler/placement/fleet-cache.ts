// The leader's model of the fleet, kept from pass to pass instead of read again for each: every agent that
// is not offline with its capacity (indexed for placement: fleet-index.ts), what every placed run holds,
// and what each project runs. Reading it all costs time in proportion to the fleet and to the placed runs;
// keeping it makes a pass cost only the queue it places.
//
// How it stays right (the README's Architecture says the same):
// - It is read whole when its scheduler becomes the leader (a new model for each leadership), after a pass
//   failed, and before a run is ended as "no agent could ever" take it.
// - The leader changes it itself as it places (a provisional holding as each run is chosen, confirmed with
//   its lease when the place statement returns it, given back when the statement refused or failed it).
// - Every other change arrives as the placer's doorbell (NATS), from whichever scheduler made it, after it
//   committed: a run's capacity given back (run and lease: a holding is released only if that attempt
//   still holds it, so a doorbell heard twice, late, or after a reread changes nothing), or an agent whose
//   registration or status changed (it is read again, with its runs). They are applied at the start of a
//   pass, never while a place statement is in flight.
// - A missed doorbell can only make it think capacity is still taken (a run waits longer): when runs were
//   left waiting, the safety pass (every few seconds) has it read whole again.
// - It never needs to be right for safety: the place statement is guarded in the database (run still
//   queued, agent online and responsive in the registration this model read, GPU leases unique) and runs
//   on the session that holds the placer's lock. A refusal drops the provisional holding and has the
//   agent read again.
import { memberKey } from './gang.js';
import type { Db } from '../db/database.js';
import type { Request } from './fleet.js';
import { FleetIndex } from './fleet-index.js';
import { loadFleet, type Holding } from './load-fleet.js';

export interface ProjectRunning { runs: number; gpus: number }

export class FleetCache {
  #index = new FleetIndex();
  #holdings = new Map<string, Holding>();
  #byAgent = new Map<string, Set<Holding>>();
  #projects = new Map<string, ProjectRunning>();
  #whole = false;
  #changedAgents = new Set<string>();
  #freed: { run: string; lease: number }[] = [];

  get index(): FleetIndex { return this.#index; }

  /** The next sync reads the whole fleet. */
  invalidate(): void { this.#whole = false; }

  /** An agent's registration or status changed (register, heartbeat, drain, lost, unresponsive). */
  agentChanged(name: string): void { this.#changedAgents.add(name); }

  /** A run's attempt gave its capacity back (it ended, or went back to the queue). */
  freed(run: string, lease: number): void { this.#freed.push({ run, lease }); }

  /** Brings the model up to date with what was told since the last pass. True when it read the whole fleet. */
  async sync(db: Db): Promise<boolean> {
    let whole = false;
    if (!this.#whole) {
      // Changes told from now on are applied after this read; those told before are in it.
      this.#changedAgents.clear();
      const read = await loadFleet(db);
      this.#index = new FleetIndex(read.agents);
      this.#holdings = new Map();
      this.#byAgent = new Map();
      this.#projects = new Map();
      for (const h of read.holdings) this.#add(h);
      this.#whole = whole = true;
    }
    if (this.#changedAgents.size > 0) {
      const names = [...this.#changedAgents];
      this.#changedAgents.clear();
      const read = await loadFleet(db, names);
      for (const name of names) {
        for (const h of this.#byAgent.get(name) ?? []) this.#remove(h);
        this.#index.remove(name);
      }
      // The agents' usage in `read` already counts these holdings.
      for (const a of read.agents) this.#index.upsert(a);
      for (const h of read.holdings) this.#add(h);
    }
    const freed = this.#freed;
    this.#freed = [];
    for (const f of freed) {
      const h = this.#holdings.get(f.run);
      if (h && h.lease === f.lease) this.release(h);
      // A gang's other members (placement/gang.ts) were freed by the same statement.
      for (let rank = 1; ; rank++) {
        const m = this.#holdings.get(memberKey(f.run, rank));
        if (!m) break;
        if (m.lease === f.lease) this.release(m);
      }
    }
    return whole;
  }

  /** What each project runs now (placed runs, and those chosen in this pass). */
  running(project: string): ProjectRunning | undefined { return this.#projects.get(project); }

  /** Every project's running count, for the queue's fair-share order. */
  runningByProject(): ReadonlyMap<string, ProjectRunning> { return this.#projects; }

  /** A run chosen for an agent: its capacity is taken now, provisionally (lease 0) until the statement commits. */
  hold(run: string, project: string, agent: string, r: Request, gpuIndices: readonly number[]): Holding {
    const h: Holding = { run, lease: 0, agent, project, cpus: r.cpus, memoryMb: r.memoryMb, gpus: r.gpus, gpuIndices };
    this.#add(h);
    this.#index.take(agent, r, gpuIndices);
    return h;
  }

  /** Gives a holding's capacity back: its run ended or was requeued, or its placement did not commit. */
  release(h: Holding): void {
    if (this.#holdings.get(h.run) !== h) return;
    this.#remove(h);
    this.#index.release(h.agent, h, h.gpuIndices);
  }

  holding(run: string): Holding | undefined { return this.#holdings.get(run); }

  /**
   * Whether a run of `project` may join what the agent holds now: never beside another project's run when
   * either project is exclusive (`projects set P --exclusive true`). The place statement checks the same.
   */
  admits(agent: string, project: string, exclusive: (project: string) => boolean): boolean {
    const held = this.#byAgent.get(agent);
    if (!held) return true;
    const mine = exclusive(project);
    for (const h of held) if (h.project !== project && (mine || exclusive(h.project))) return false;
    return true;
  }

  /** Counts a holding (the agent's usage is the index's business). */
  #add(h: Holding): void {
    const old = this.#holdings.get(h.run);
    if (old) this.release(old);
    this.#holdings.set(h.run, h);
    let set = this.#byAgent.get(h.agent);
    if (!set) this.#byAgent.set(h.agent, (set = new Set()));
    set.add(h);
    let p = this.#projects.get(h.project);
    if (!p) this.#projects.set(h.project, (p = { runs: 0, gpus: 0 }));
    p.runs++;
    p.gpus += h.gpus;
  }

  #remove(h: Holding): void {
    this.#holdings.delete(h.run);
    const set = this.#byAgent.get(h.agent);
    set?.delete(h);
    if (set?.size === 0) this.#byAgent.delete(h.agent);
    const p = this.#projects.get(h.project)!;
    p.runs--;
    p.gpus -= h.gpus;
    if (p.runs === 0) this.#projects.delete(h.project);
  }
}
