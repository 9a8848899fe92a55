// Preemption within one placement pass (placer.ts): agents held for preempting runs are kept from every
// other run, a run that nothing free can take may choose victims (preemption.ts), and once the pass's
// statuses are written its choices are made (transitions.ts `preempt`, all or nothing per run) and the
// victims' agents are told to stop them, the way a kill is told (the agent beats and is answered "kill").
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import type { AgentCapacity, Request } from './fleet.js';
import type { FleetIndex } from './fleet-index.js';
import type { RunTransitions } from '../runs/transitions.js';
import type { ControlMessage, Subjects } from '../../shared/subjects.js';
import { chooseVictims, type Candidate, type PreemptionPlan } from './preemption.js';
import { readCandidates, readHolds, type Hold } from './preemption-reads.js';

/** How the waiting detail of a run that has just chosen victims begins. */
export const PREEMPTING = 'preempting ';

export interface PreemptionDeps { db: Db; nats: NatsConnection; subjects: Subjects; log: Logger; minRuntimeS: number }

/**
 * Whether agents may be held for preempting runs: one per leadership (placer.ts), true at its start (an
 * earlier leader may have made holds), false once a read finds none, true again when this leader preempts.
 */
export interface HoldsSeen { mayExist: boolean }

export class PreemptionPass {
  /** Read at the first run that could preempt (most passes never need it). */
  #candidates: Map<string, Candidate[]> | null = null;
  readonly #heldAgents = new Set<string>();
  readonly #plans: { run: string; plan: PreemptionPlan }[] = [];
  readonly #letGo: Hold[] = [];

  private constructor(private readonly deps: PreemptionDeps, private readonly index: FleetIndex, readonly holds: ReadonlyMap<string, Hold>,
    private readonly enabled: boolean, private readonly seen: HoldsSeen) {
    for (const h of holds.values()) this.#hold(h.agent);
  }

  /**
   * The pass's start: the holds are read and their agents kept from other runs. `enabled`: some project is
   * preemptible. `holds.mayExist` false (the leader's last read found none and it has made none since: only
   * the leader's own passes make holds) skips the read, one round trip off every placement's path.
   */
  static async begin(deps: PreemptionDeps, index: FleetIndex, enabled: boolean, holds: HoldsSeen): Promise<PreemptionPass> {
    const read = holds.mayExist ? await readHolds(deps.db) : new Map<string, Hold>();
    holds.mayExist = read.size > 0;
    return new PreemptionPass(deps, index, read, enabled, holds);
  }

  #hold(agent: string): void {
    this.#heldAgents.add(agent);
    this.index.holdBack(agent);
  }

  /** The run held its agent, its victims have left, and it still does not fit there: the hold goes. */
  letGo(h: Hold): void { this.#letGo.push(h); }

  /**
   * A queued run nothing free can take: chooses the runs to preempt for it, if any may be. Returns why
   * it waits now, or null when it preempts nothing.
   */
  async consider(runId: string, priority: number, r: Request, admit?: (a: AgentCapacity) => boolean): Promise<string | null> {
    if (!this.enabled) return null;
    this.#candidates ??= await readCandidates(this.deps.db, this.deps.minRuntimeS);
    if (this.#candidates.size === 0) return null;
    const agents: AgentCapacity[] = [];
    for (const name of this.#candidates.keys()) {
      const a = this.index.get(name);
      if (a && !this.#heldAgents.has(name)) agents.push(a);
    }
    const plan = chooseVictims(r, priority, agents, this.#candidates, Date.now(), admit);
    if (!plan) return null;
    // Taken for this run: no other run of the pass preempts them or is placed on the agent.
    const taken = new Set(plan.victims.map((v) => v.id));
    this.#candidates.set(plan.agent, this.#candidates.get(plan.agent)!.filter((c) => !taken.has(c.id)));
    this.#hold(plan.agent);
    this.#plans.push({ run: runId, plan });
    return `${PREEMPTING}${plan.victims.length} run${plan.victims.length > 1 ? 's' : ''} on agent ${plan.agent}`;
  }

  /** Makes the pass's choices (after its statuses were written). True when something changed (another pass is worth it). */
  async finish(runs: RunTransitions): Promise<boolean> {
    let changed = false;
    for (const h of this.#letGo) {
      if (await runs.releaseHold(h.run, h.agent)) {
        this.deps.log.info({ run: h.run, agent: h.agent }, 'preemption: the run lets its held agent go (its victims left and it still does not fit there)');
        changed = true;
      }
    }
    for (const { run, plan } of this.#plans) {
      // Set before the statement: a hold it made and a reply lost must still be read by the next pass.
      this.seen.mayExist = true;
      const marked = await runs.preempt(run, plan.agent, plan.victims, this.deps.minRuntimeS);
      if (marked.length === 0) {
        this.deps.log.info({ run, agent: plan.agent }, 'preemption refused by the database (a victim or the run changed); choosing again');
        changed = true;
        continue;
      }
      for (const v of marked) {
        this.deps.log.info({ run: v.id, attempt: v.attempt, by: run, agent: plan.agent }, 'run preempted');
        const msg: ControlMessage = { type: 'kill', runId: v.id, lease: v.lease };
        try {
          this.deps.nats.publish(this.deps.subjects.control(plan.agent), JSON.stringify(msg));
        } catch (err) {
          // Its next heartbeat is answered "kill" all the same (agents/reconcile.ts).
          this.deps.log.warn({ run: v.id, err: String(err) }, 'preemption: could not tell the agent now; its next heartbeat learns it');
        }
      }
    }
    return changed;
  }
}
