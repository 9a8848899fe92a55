// The placer: exactly one scheduler at a time holds a Postgres advisory lock and places queued runs; the
// others serve clients and agents and take over within a second if the holder dies (its session ends,
// so the lock is released). A placement pass is event-driven (the kick doorbell), not polled; the timer
// below only catches failures (lost agents, unacknowledged dispatches).
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import type { Request } from './fleet.js';
import { FleetIndex } from './fleet-index.js';
import { queueHead, projectUsage, overLimit } from './queue.js';
import { loadFleet, placedRuns } from './load-fleet.js';
import type { RunTransitions } from '../runs/transitions.js';
import { Invariants } from '../invariants.js';
import { RunStatus } from '../../shared/run-states.js';
import type { Subjects } from '../../shared/subjects.js';
import { doorbellFor } from '../runs/dispatch.js';
import { loseSilent, markUnresponsive } from '../agents/status.js';
import { schedulerMetrics } from '../metrics.js';

const LEADER_LOCK = 7_246_002; // "trainyard placer"
const BATCH = 2000;
const SAFETY_PASS_EVERY = 5; // sweeps, about a second apart

export interface PlacerDeps {
  db: Db;
  runs: RunTransitions;
  databaseUrl: string;
  nats: NatsConnection;
  subjects: Subjects;
  log: Logger;
  agentLostAfterMs: number;
  dispatchAckTimeoutMs: number;
}

export class Placer {
  #dirty = true;
  #wake: (() => void) | null = null;
  #leader = false;
  #leaderSince = 0;
  readonly #abort = new AbortController();
  #done: Promise<void> | null = null;
  readonly #invariants: Invariants;

  constructor(private readonly deps: PlacerDeps) {
    this.#invariants = new Invariants({ db: deps.db, runs: deps.runs, log: deps.log, agentLostAfterMs: deps.agentLostAfterMs });
  }

  get isLeader(): boolean { return this.#leader; }

  start(): void {
    this.#done = this.#lead();
  }

  /** Something changed that may let a run be placed. Cheap; coalesces. */
  kick(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    this.#wake?.();
    await this.#done;
  }

  async #lead(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      const client = new pg.Client({ connectionString: this.deps.databaseUrl });
      client.on('error', () => {});
      try {
        await client.connect();
        while (!signal.aborted) {
          const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LEADER_LOCK]);
          if (rows[0]?.ok) break;
          await sleep(1000, undefined, { signal }).catch(() => {});
        }
        if (signal.aborted) break;
        this.#leader = true;
        this.#leaderSince = Date.now();
        this.deps.log.info('placer: this scheduler now places runs');
        await this.#loop(client);
      } catch (err) {
        if (!signal.aborted) this.deps.log.warn({ err }, 'placer: lost its database session; retrying');
      } finally {
        if (this.#leader) this.deps.log.info('placer: stepped down');
        this.#leader = false;
        await client.end().catch(() => {});
      }
      if (!signal.aborted) await sleep(500, undefined, { signal }).catch(() => {});
    }
  }

  async #loop(leaderClient: pg.Client): Promise<void> {
    const signal = this.#abort.signal;
    let lastSweep = 0;
    let sweeps = 0;
    while (!signal.aborted) {
      if (Date.now() - lastSweep >= 1000) {
        // Proves the leader session is alive: if Postgres restarted, this throws and leadership is retaken.
        await leaderClient.query('SELECT 1');
        await this.#guard('failure sweep', () => this.#sweep());
        lastSweep = Date.now();
        // A doorbell can be missed (NATS down when another scheduler took a submit): a pass every few
        // seconds bounds that delay. The normal path never waits for it. The invariant sweep runs as
        // often, after the failure sweep (so what that one repairs is never counted as impossible).
        if (++sweeps % SAFETY_PASS_EVERY === 0) {
          this.#dirty = true;
          await this.#checkInvariants();
        }
      }
      if (this.#dirty) {
        this.#dirty = false;
        // A pass that throws (a bad row, a query that failed) is logged and tried again on the next
        // tick; it never costs the placer its leadership, and the sweep above keeps running.
        const more = await this.#guard('placement pass', () => this.#pass());
        if (more !== false) this.#dirty = true; // more to place, or a failed pass to try again
        if (more !== undefined) continue;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        this.#wake = () => { clearTimeout(t); resolve(); };
      });
      this.#wake = null;
    }
  }

  /** One placement pass over the queue head. Returns true if it should run again at once. */
  async #pass(): Promise<boolean> {
    const endTimer = schedulerMetrics.placementPass.startTimer();
    const queue = await queueHead(this.deps.db, BATCH);
    if (queue.length === 0) return false;
    try {
      return await this.#place(queue);
    } finally {
      endTimer();
    }
  }

  /** Places what it can of the queue head (timed by #pass). */
  async #place(queue: Awaited<ReturnType<typeof queueHead>>): Promise<boolean> {
    const { db, log } = this.deps;
    const placedNow = await placedRuns(db);
    const [fleet, projects] = await Promise.all([loadFleet(db, placedNow), projectUsage(db, placedNow)]);
    const index = new FleetIndex(fleet.values());
    const chosen: { id: string; agent: string; gpuIndices: number[] }[] = [];
    const waits: { id: string; detail: string }[] = [];
    const details: { id: string; detail: string }[] = [];
    const never: { id: string; reason: string }[] = [];
    for (const run of queue) {
      const req: Request = {
        gpus: run.gpus, gpuModel: run.gpu_model, gpuMemoryMb: run.gpu_memory_mb, cpus: run.cpus, memoryMb: run.memory_mb, selector: run.selector,
      };
      const usage = projects.get(run.project);
      const limited = overLimit(run.project, usage, run.gpus);
      const c = limited ? { ok: false as const, never: false, reason: limited } : index.choose(req);
      if (c.ok) {
        index.take(c.agent, req, c.gpuIndices);
        if (usage) { usage.runs++; usage.gpus += run.gpus; }
        chosen.push({ id: run.id, agent: c.agent, gpuIndices: c.gpuIndices });
        continue;
      }
      if (c.never) { never.push({ id: run.id, reason: c.reason }); continue; }
      if (!limited) index.reserveFor(req);
      if (run.status === RunStatus.Scheduled) waits.push({ id: run.id, detail: c.reason });
      else if (run.status_detail !== c.reason) details.push({ id: run.id, detail: c.reason });
    }
    const { runs: transitions } = this.deps;
    for (const n of never) await transitions.endUnplaced(n.id, RunStatus.Failed, n.reason);
    await transitions.markWaiting(waits);
    await transitions.setWaitingDetail(details);
    if (chosen.length === 0) return false;
    const { placed, failed } = await transitions.assign(chosen);
    schedulerMetrics.placements.inc(placed.length);
    const now = Date.now();
    for (const p of placed) schedulerMetrics.queueWait.observe(Math.max(0, now - p.created_at.getTime()) / 1000);
    for (const p of placed) {
      try {
        this.deps.nats.publish(this.deps.subjects.dispatch(p.agent!), JSON.stringify(doorbellFor(p)));
      } catch (err) {
        // Not sent (NATS closed, or a message over its size limit): the ack deadline requeues this run
        // alone; the rest of the pass goes on.
        log.warn({ run: p.id, agent: p.agent, err: String(err) }, 'dispatch not sent; the ack deadline will requeue it');
      }
    }
    if (failed.length) {
      // One bad placement never stops the others; the invariant sweep repairs what made it fail (a GPU
      // lease its run no longer holds), so the run is placed on a later pass.
      for (const f of failed) log.error({ run: f.id, err: String(f.error) }, 'placement failed; the run stays queued');
      await this.#invariants.recordFailedPlacements(failed);
      // Another pass at once only if the sweep repaired something: a failure it cannot explain waits for
      // the next safety pass rather than spinning.
      if ((await this.#checkInvariants()) > 0) return true;
    }
    log.debug({ placed: placed.length, queued: queue.length }, 'placement pass');
    return queue.length === BATCH;
  }

  /** Failure detection: lost agents and unacknowledged dispatches go back to the queue. */
  async #sweep(): Promise<void> {
    const { db, agentLostAfterMs } = this.deps;
    // A scheduler that just took over heard no heartbeats while nobody led: agents get two full deadlines
    // to reconnect before anyone is called lost.
    if (Date.now() - this.#leaderSince >= 2 * agentLostAfterMs) {
      const lost = await loseSilent(this.deps, agentLostAfterMs); // logs each agent it calls lost
      // Runs on an agent that is lost, or that left without handing them back (its last report never
      // arrived), go back to the queue.
      const stranded = await db.selectFrom('runs').innerJoin('agents', 'agents.name', 'runs.agent')
        .select(['runs.id', 'runs.lease', 'agents.status']).where('agents.status', 'in', ['lost', 'offline']).execute();
      for (const r of stranded) await this.deps.runs.requeue(r.id, r.lease!, r.status === 'lost' ? 'agent lost' : 'agent left without reporting', true);
      if (stranded.length > 0 || lost.length > 0) this.kick();
    }
    await this.#sweepUnacked();
  }

  async #sweepUnacked(): Promise<void> {
    const { db, dispatchAckTimeoutMs } = this.deps;
    const stale = await db.selectFrom('runs').select(['id', 'lease', 'agent'])
      .where('agent', 'is not', null).where('acked_at', 'is', null)
      .where('dispatched_at', '<', new Date(Date.now() - dispatchAckTimeoutMs)).execute();
    for (const r of stale) {
      await this.deps.runs.requeue(r.id, r.lease!, `dispatch not acknowledged by ${r.agent} within ${dispatchAckTimeoutMs} ms`, false);
    }
    const silent = [...new Set(stale.map((r) => r.agent!))];
    if (silent.length) {
      await markUnresponsive(this.deps, silent); // logs each agent it marks
    }
    if (stale.length > 0) this.kick();
  }

  /** Impossible states: found, repaired where safe, logged and recorded (never fatal to placement). */
  /** Runs one unit of the leader's work; an error is logged, not thrown (undefined = it failed). */
  async #guard<T>(what: string, work: () => Promise<T>): Promise<T | undefined> {
    try {
      return await work();
    } catch (err) {
      if (!this.#abort.signal.aborted) this.deps.log.error({ err: String(err) }, `${what} failed; trying again shortly`);
      return undefined;
    }
  }

  /** Returns how many findings it repaired. */
  async #checkInvariants(): Promise<number> {
    // Right after a takeover nobody has heard the agents for a while: silence means nothing yet.
    const settled = Date.now() - this.#leaderSince >= 2 * this.deps.agentLostAfterMs;
    try {
      const found = await this.#invariants.sweep({ repair: true, judgeSilence: settled });
      return found.filter((v) => v.repaired).length;
    } catch (err) {
      this.deps.log.warn({ err: String(err) }, 'invariant sweep failed; will try again');
      return 0;
    }
  }
}
