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
import * as runs from '../runs/transitions.js';
import { RunStatus } from '../../shared/run-states.js';
import type { Subjects } from '../../shared/subjects.js';
import { dispatchFor } from '../runs/dispatch.js';

const LEADER_LOCK = 7_246_002; // "trainyard placer"
const BATCH = 2000;
const SAFETY_PASS_EVERY = 5; // sweeps, about a second apart

export interface PlacerDeps {
  db: Db;
  databaseUrl: string;
  nats: NatsConnection;
  subjects: Subjects;
  log: Logger;
  bucket: string;
  agentLostAfterMs: number;
  dispatchAckTimeoutMs: number;
  onRunChanged: (runId: string) => void;
}

export class Placer {
  #dirty = true;
  #wake: (() => void) | null = null;
  #leader = false;
  #leaderSince = 0;
  readonly #abort = new AbortController();
  #done: Promise<void> | null = null;

  constructor(private readonly deps: PlacerDeps) {}

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
        await this.#sweep();
        lastSweep = Date.now();
        // A doorbell can be missed (NATS down when another scheduler took a submit): a pass every few
        // seconds bounds that delay. The normal path never waits for it.
        if (++sweeps % SAFETY_PASS_EVERY === 0) this.#dirty = true;
      }
      if (this.#dirty) {
        this.#dirty = false;
        const more = await this.#pass();
        if (more) this.#dirty = true;
        continue;
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
    const { db, log } = this.deps;
    const queue = await queueHead(db, BATCH);
    if (queue.length === 0) return false;
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
    for (const n of never) {
      const changed = await runs.endUnplaced(db, n.id, RunStatus.Failed, n.reason);
      if (changed) this.#changed(changed, n.reason);
    }
    for (const w of await runs.markWaiting(db, waits)) this.#changed(w, 'waiting');
    await runs.setWaitingDetail(db, details);
    if (chosen.length === 0) return false;
    const placed = await db.transaction().execute((trx) => runs.assign(trx, chosen));
    for (const p of placed) {
      this.#changed(p, `placed on ${p.agent}`);
      this.deps.nats.publish(this.deps.subjects.dispatch(p.agent!), JSON.stringify(dispatchFor(p, this.deps.bucket)));
    }
    log.debug({ placed: placed.length, queued: queue.length }, 'placement pass');
    return queue.length === BATCH;
  }

  /** Failure detection: lost agents and unacknowledged dispatches go back to the queue. */
  async #sweep(): Promise<void> {
    const { db, log, agentLostAfterMs } = this.deps;
    // A scheduler that just took over heard no heartbeats while nobody led: agents get two full deadlines
    // to reconnect before anyone is called lost.
    if (Date.now() - this.#leaderSince >= 2 * agentLostAfterMs) {
      const lost = await db.updateTable('agents').set({ status: 'lost' })
        .where('status', 'in', ['online', 'draining'])
        .where('last_heartbeat_at', '<', new Date(Date.now() - agentLostAfterMs))
        .returning('name').execute();
      for (const a of lost) log.warn({ agent: a.name }, 'agent lost: no heartbeat');
      const stranded = await db.selectFrom('runs').innerJoin('agents', 'agents.name', 'runs.agent')
        .select(['runs.id', 'runs.lease']).where('agents.status', '=', 'lost').execute();
      for (const r of stranded) {
        const changed = await runs.requeue(db, r.id, r.lease!, 'agent lost', true);
        if (changed) this.#changed(changed, 'agent lost');
      }
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
      const reason = `dispatch not acknowledged by ${r.agent} within ${dispatchAckTimeoutMs} ms`;
      const changed = await runs.requeue(db, r.id, r.lease!, reason, false);
      if (changed) this.#changed(changed, reason);
    }
    const silent = [...new Set(stale.map((r) => r.agent!))];
    if (silent.length) {
      await db.updateTable('agents').set({ unresponsive_since: new Date() }).where('name', 'in', silent).where('unresponsive_since', 'is', null).execute();
      this.deps.log.warn({ agents: silent }, 'agents missed a dispatch: offered nothing until heard from');
    }
    if (stale.length > 0) this.kick();
  }

  #changed(c: runs.Changed, detail: string): void {
    this.deps.log.info({ run: c.id, status: c.status, attempt: c.attempt, agent: c.agent, detail }, 'run status');
    this.deps.onRunChanged(c.id);
  }
}
