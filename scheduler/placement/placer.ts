// The placer: exactly one scheduler at a time holds a Postgres advisory lock and places queued runs; the
// others serve clients and agents and take over within a second if the holder dies (its session ends,
// so the lock is released). A placement pass is event-driven (the kick doorbell), not polled; the timer
// below only catches failures (lost agents, unacknowledged dispatches).
import { setTimeout as sleep, setImmediate as yieldToIo } from 'node:timers/promises';
import { sql } from 'kysely';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import type { Request } from './fleet.js';
import { FleetCache } from './fleet-cache.js';
import type { Holding } from './load-fleet.js';
import { queueHead, projectCaps, overLimit, outsideBinding, requestOf, type ProjectCaps, type QueuedRun } from './queue.js';
import { LEADER_LOCK, connectLeaderSession, type LeaderSession } from './leader-session.js';
import type { Placed, Placement, RunTransitions } from '../runs/transitions.js';
import type { KickMessage } from '../../shared/subjects.js';
import { Invariants } from '../invariants.js';
import { RunStatus } from '../../shared/run-states.js';
import type { Subjects } from '../../shared/subjects.js';
import { doorbellFor } from '../runs/dispatch.js';
import { loseSilent, markUnresponsive } from '../agents/status.js';
import { requeueStranded } from '../agents/reconcile.js';
import { requeueStrandedMembers } from '../runs/gang-member.js';
import { schedulerMetrics } from '../metrics.js';
import { PREEMPTING, PreemptionPass, type HoldsSeen } from './preemption-pass.js';
import { chooseGang, memberKey, reserveGang, reservingGang, reservingText } from './gang.js';

/** Queued runs read per pass: the head of the queue, in its order. */
const BATCH = 5000;
/**
 * How long a placer keeps the projects' caps it read, at most (#projectCaps). Tests make it long, to show
 * that `projects set` reaches every placer by its doorbell and not by this time running out.
 */
const CAPS_KEPT_MS = ((v) => (Number.isFinite(v) && v >= 0 ? v : 5000))(Number(process.env.TRAINYARD_PLACER_CAPS_KEPT_MS ?? 'x'));
/**
 * Placements per statement. A pass sends each chunk as soon as it is chosen and goes on choosing while the
 * database writes it, so the scheduler's CPU and Postgres's work at the same time.
 */
const CHUNK = 1000;
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
  /** An attempt in Packaging longer than this ends Failed (0: no deadline). */
  packagingDeadlineMs?: number;
  /** For the invariant sweep's stranded-attempt check (the heartbeats requeue such attempts themselves). */
  attemptLeaseBeats?: number;
  /** A run is never preempted within this many seconds of its start (--min-runtime; default: the setting's). */
  preemptMinRuntimeS?: number;
  /** A gang waiting this many seconds has agents reserved for it (--gang-reserve-after; default: the setting's). */
  gangReserveAfterS?: number;
  /** Told of each attempt placed, just before its doorbell rings (its storage credentials may start being issued). */
  onPlaced?: (run: Placed) => void;
}

export class Placer {
  #dirty = true;
  #wake: (() => void) | null = null;
  #leader = false;
  #leaderSince = 0;
  readonly #abort = new AbortController();
  #done: Promise<void> | null = null;
  readonly #invariants: Invariants;
  /** The leader's model of the fleet: one per leadership (null while not leading). */
  #cache: FleetCache | null = null;
  #caps: { caps: Map<string, ProjectCaps>; at: number } | null = null; // at: performance.now()
  #capsEpoch = 0;
  /** Whether agents may be held for preempting runs (preemption-pass.ts): one per leadership. */
  #holds: HoldsSeen = { mayExist: true };
  /** The last pass left runs unplaced: the safety pass then has the model read whole (a doorbell may be lost). */
  #leftWaiting = false;
  /** The gang agents are reserved for (--gang-reserve-after), from pass to pass: one per leadership. */
  #reservation: Reservation | null = null;

  constructor(private readonly deps: PlacerDeps) {
    this.#invariants = new Invariants({ db: deps.db, runs: deps.runs, log: deps.log, agentLostAfterMs: deps.agentLostAfterMs, dispatchAckTimeoutMs: deps.dispatchAckTimeoutMs, attemptLeaseBeats: deps.attemptLeaseBeats, packagingDeadlineMs: deps.packagingDeadlineMs });
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

  /**
   * The placer's doorbell with what changed (shared/subjects.ts), from this scheduler or another: the
   * leader's model of the fleet takes it in at its next pass. An empty or unknown message is a plain kick.
   */
  doorbell(m: KickMessage | null): void {
    if (m && 'limits' in m) this.#forgetCaps();
    const cache = this.#cache;
    if (cache && m) {
      if ('freed' in m) cache.freed(m.freed.run, m.freed.lease);
      else if ('agent' in m) cache.agentChanged(m.agent);
    }
    this.kick();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    this.#wake?.();
    await this.#done;
  }

  async #lead(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      let session: LeaderSession | null = null;
      try {
        session = await connectLeaderSession(this.deps.databaseUrl);
        while (!signal.aborted) {
          const { rows } = await session.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LEADER_LOCK]);
          if (rows[0]?.ok) break;
          await sleep(1000, undefined, { signal }).catch(() => {});
        }
        if (signal.aborted) break;
        this.#leader = true;
        this.#leaderSince = Date.now();
        // A new model for each leadership: another leader may have placed runs meanwhile.
        this.#cache = new FleetCache();
        this.#forgetCaps(); // a doorbell may have been missed while it did not lead
        this.#holds = { mayExist: true };
        this.#reservation = null;
        this.deps.log.info('placer: this scheduler now places runs');
        await this.#loop(session);
      } catch (err) {
        if (!signal.aborted) this.deps.log.warn({ err }, 'placer: lost its database session; retrying');
      } finally {
        if (this.#leader) this.deps.log.info('placer: stepped down');
        this.#leader = false;
        this.#cache = null;
        await session?.close();
      }
      if (!signal.aborted) await sleep(500, undefined, { signal }).catch(() => {});
    }
  }

  async #loop(session: LeaderSession): Promise<void> {
    const signal = this.#abort.signal;
    let lastSweep = 0;
    let sweeps = 0;
    while (!signal.aborted) {
      if (Date.now() - lastSweep >= 1000) {
        // Proves the leader session is alive: if Postgres restarted, this throws and leadership is retaken.
        await session.query('SELECT 1');
        await this.#guard('failure sweep', () => this.#sweep());
        lastSweep = Date.now();
        // A doorbell can be missed (NATS down when another scheduler took a submit): a pass every few
        // seconds bounds that delay. The normal path never waits for it. The invariant sweep runs as
        // often, after the failure sweep (so what that one repairs is never counted as impossible).
        if (++sweeps % SAFETY_PASS_EVERY === 0) {
          this.#dirty = true;
          if (this.#leftWaiting) this.#cache?.invalidate();
          await this.#checkInvariants();
        }
      }
      if (this.#dirty) {
        this.#dirty = false;
        // A pass that throws (a bad row, a query that failed) is logged and tried again on the next
        // tick; it never costs the placer its leadership, and the sweep above keeps running.
        const more = await this.#guard('placement pass', () => this.#pass(session));
        if (more !== false) this.#dirty = true; // more to place, or a failed pass to try again
        // A pass that failed may have left provisional holdings or a half-read model: read it whole.
        if (more === undefined) this.#cache?.invalidate();
        if (more !== undefined) continue;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        this.#wake = () => { clearTimeout(t); resolve(); };
      });
      this.#wake = null;
    }
  }

  /**
   * The projects' caps and rules, kept for up to CAPS_KEPT_MS: every pass read them (a statement, twice a
   * run in a burst), and they change only by `projects set`, which rings every placer's doorbell saying so
   * (#forgetCaps); the time bounds a doorbell lost with NATS. A read in flight when they changed is not kept.
   */
  #projectCaps(): Promise<{ caps: Map<string, ProjectCaps>; read: boolean }> {
    const kept = this.#caps;
    if (kept && performance.now() - kept.at < CAPS_KEPT_MS) return Promise.resolve({ caps: kept.caps, read: false });
    const epoch = this.#capsEpoch;
    return projectCaps(this.deps.db).then((caps) => {
      if (epoch === this.#capsEpoch) this.#caps = { caps, at: performance.now() };
      return { caps, read: true };
    });
  }

  #forgetCaps(): void {
    this.#caps = null;
    this.#capsEpoch++;
  }

  /** One placement pass over the queue head. Returns true if it should run again at once. */
  async #pass(session: LeaderSession): Promise<boolean> {
    const cache = this.#cache!;
    const fresh = await cache.sync(session.db);
    // The caps are read beside the queue head, on the pool: the leader session runs one statement at a time,
    // and they need none of its consistency (an operator's change applies from the next pass either way).
    const caps = this.#projectCaps();
    caps.catch(() => {}); // awaited below when there is a queue; an empty one does not need them
    const queue = await queueHead(session.db, BATCH, cache.runningByProject());
    if (queue.length === 0) {
      this.#leftWaiting = false;
      return false;
    }
    const endTimer = schedulerMetrics.placementPass.startTimer();
    try {
      const { caps: kept, read } = await caps;
      return await this.#place(session, cache, queue, kept, fresh, read);
    } finally {
      endTimer();
    }
  }

  /**
   * Places what it can of the queue head (timed by #pass). `fresh`: the model was read whole for this pass;
   * `capsRead`: so were the projects' caps (not kept from an earlier one).
   */
  async #place(session: LeaderSession, cache: FleetCache, queue: QueuedRun[], caps: Map<string, ProjectCaps>, fresh: boolean, capsRead: boolean): Promise<boolean> {
    const { log } = this.deps;
    const transitions = this.deps.runs.on(session.db);
    const index = cache.index;
    index.beginPass();
    const requests = new Map<string, Request | null>();
    const waits: { id: string; detail: string }[] = [];
    const details: { id: string; detail: string }[] = [];
    const never: { id: string; reason: string }[] = [];
    const outcome: Outcome = { placed: 0, refused: 0, failed: [] };
    const sent: Promise<void>[] = [];
    let chunk: Placement[] = [];
    let holdings: Holding[] = [];
    // Exclusive projects and agents that take only some projects' runs make a choice depend on the run's
    // project; without them (the common case) requests of every project share their answers.
    const exclusive = (p: string) => caps.get(p)?.exclusive === true;
    const anyExclusive = [...caps.values()].some((p) => p.exclusive);
    const perProject = anyExclusive || index.restrictsProjects;
    // Agents held for preempting runs are kept from every other run; a run nothing free can take may preempt.
    const preemption = await PreemptionPass.begin({ db: session.db, nats: this.deps.nats, subjects: this.deps.subjects, log,
      minRuntimeS: this.deps.preemptMinRuntimeS ?? 600 }, index, [...caps.values()].some((p) => p.preemptible), this.#holds);
    // The gang that has waited --gang-reserve-after (the oldest of the highest priority) keeps the agents it
    // reserved in the last pass from every other run from the start of this pass, whatever the queue's
    // order; only the gang itself may use them (placement/gang.ts reserveGang). Any other gang: none held.
    const reserver = reservingGang(queue, Date.now() - (this.deps.gangReserveAfterS ?? 300) * 1000);
    const last = this.#reservation?.run === reserver ? this.#reservation : null;
    const held = last ? last.agents.filter((a) => index.holdBack(a)) : [];
    this.#reservation = null;
    for (const run of queue) {
      const cap = caps.get(run.project);
      const req = requestOf(run, requests, cap?.agents ?? null, perProject);
      const admit = anyExclusive ? (a: { name: string }) => cache.admits(a.name, run.project, exclusive) : undefined;
      const limited = req === null ? outsideBinding(run.project, JSON.parse(run.selector) as Record<string, string>, cap!.agents!)
        : overLimit(run.project, cache.running(run.project), cap, run.gpus);
      if (run.agents > 1 && req !== null && !limited) {
        // A gang: all its members now or none (placement/gang.ts); it never preempts, and holds no GPU while
        // it waits: the one that has waited long enough only keeps other runs off the agents it reserves.
        const reserving = run.id === reserver;
        if (reserving) index.letGo(held);
        const greq: Request = { ...req, members: run.agents, preferSame: run.prefer_same };
        const gang = await this.#placeGang(transitions, cache, run, greq, admit);
        if (gang === true) { outcome.placed++; continue; }
        if (gang.never) { never.push({ id: run.id, reason: gang.reason }); continue; }
        let reason = gang.reason;
        if (reserving) {
          const agents = reserveGang(index, greq, admit, last?.agents ?? []);
          for (const a of agents) index.holdBack(a);
          this.#reservation = { run: run.id, agents, since: last?.since ?? Date.now() };
          reason = `${reason}; ${reservingText(agents, this.#reservation.since)}`;
        }
        if (run.status === RunStatus.Scheduled) waits.push({ id: run.id, detail: reason });
        else if (run.status_detail !== reason) details.push({ id: run.id, detail: reason });
        continue;
      }
      const hold = preemption.holds.get(run.id);
      let c = limited || req === null ? { ok: false as const, never: false, reason: limited! }
        : hold ? index.chooseOn(hold.agent, req) : index.choose(req, admit);
      // Held by a run its own project's caps now hold back: the agent is not kept idle for it.
      if (hold && limited) preemption.letGo(hold);
      else if (!c.ok && !c.never && !limited && req !== null) {
        if (hold) { if (!hold.pending) preemption.letGo(hold); }
        else {
          const preempting = await preemption.consider(run.id, run.priority, req, admit);
          if (preempting) c = { ok: false, never: false, reason: preempting };
        }
      }
      if (c.ok) {
        holdings.push(cache.hold(run.id, run.project, c.agent, req!, c.gpuIndices));
        chunk.push({ id: run.id, agent: c.agent, gpuIndices: c.gpuIndices, session: index.get(c.agent)!.session ?? 0 });
        if (chunk.length === CHUNK) {
          sent.push(this.#send(transitions, cache, chunk, holdings, outcome));
          chunk = [];
          holdings = [];
          // Lets the statement go out (and an earlier one's answer in) before choosing the next chunk.
          await yieldToIo();
        }
        continue;
      }
      if (c.never) { never.push({ id: run.id, reason: c.reason }); continue; }
      // A run that preempts, or holds an agent already, needs no other agent held back for it.
      if (!limited && !hold && !c.reason.startsWith(PREEMPTING)) index.reserveFor(req!);
      if (run.status === RunStatus.Scheduled) waits.push({ id: run.id, detail: c.reason });
      else if (run.status_detail !== c.reason) details.push({ id: run.id, detail: c.reason });
    }
    if (chunk.length) sent.push(this.#send(transitions, cache, chunk, holdings, outcome));
    await Promise.all(sent);
    let again = outcome.refused > 0; // the refused runs are still queued, and their agents were read again
    // The database refused what this pass chose: the caps it kept may be older than the database's (a
    // projects set whose doorbell was lost), so the next pass reads them again rather than choose the same.
    if (outcome.refused > 0) this.#forgetCaps();
    // "Never" is decided only on a model and caps read whole for this pass: an agent that registered a
    // moment ago may be the one that fits, and a project's agents may have changed since the caps were read.
    if (never.length > 0 && !(fresh && capsRead)) {
      if (!fresh) cache.invalidate();
      if (!capsRead) this.#forgetCaps();
      again = true;
    } else {
      for (const n of never) await transitions.endUnplaced(n.id, RunStatus.Failed, n.reason);
    }
    await transitions.markWaiting(waits);
    await transitions.setWaitingDetail(details);
    if (await preemption.finish(transitions)) again = true;
    this.#leftWaiting = waits.length + details.length > 0 || outcome.placed < queue.length - never.length;
    if (outcome.failed.length) {
      // A lost session is not a refusal by the database: this throws, and the placer steps down.
      await session.query('SELECT 1');
      // One bad placement never stops the others; the invariant sweep repairs what made it fail (a GPU
      // lease its run no longer holds), so the run is placed on a later pass.
      for (const f of outcome.failed) log.error({ run: f.id, err: String(f.error) }, 'placement failed; the run stays queued');
      await this.#invariants.recordFailedPlacements(outcome.failed);
      // Another pass at once only if the sweep repaired something: a failure it cannot explain waits for
      // the next safety pass rather than spinning.
      if ((await this.#checkInvariants()) > 0) again = true;
    }
    log.debug({ placed: outcome.placed, refused: outcome.refused, queued: queue.length }, 'placement pass');
    return again || (outcome.placed > 0 && queue.length === BATCH);
  }

  /**
   * Sends one chunk's place statement, then its doorbells. What the database did not place (refused by the
   * guard, or failed) gives its capacity back, and its agent is read again before the next pass.
   */
  async #send(transitions: RunTransitions, cache: FleetCache, chunk: Placement[], holdings: Holding[], outcome: Outcome): Promise<void> {
    const { placed, failed } = await transitions.assign(chunk);
    outcome.placed += placed.length;
    outcome.failed.push(...failed);
    schedulerMetrics.placements.inc(placed.length);
    const now = Date.now();
    const byRun = new Map<string, number>();
    for (const p of placed) {
      byRun.set(p.id, p.lease);
      schedulerMetrics.queueWait.observe(Math.max(0, now - p.created_at.getTime()) / 1000);
      this.deps.onPlaced?.(p);
      try {
        this.deps.nats.publish(this.deps.subjects.dispatch(p.agent), JSON.stringify(doorbellFor(p)));
      } catch (err) {
        // Not sent (NATS closed, or a message over its size limit): the ack deadline requeues this run
        // alone; the rest of the pass goes on.
        this.deps.log.warn({ run: p.id, agent: p.agent, err: String(err) }, 'dispatch not sent; the ack deadline will requeue it');
      }
    }
    for (const h of holdings) {
      const lease = byRun.get(h.run);
      if (lease !== undefined) { h.lease = lease; continue; }
      cache.release(h);
      cache.agentChanged(h.agent);
      if (!failed.some((f) => f.id === h.run)) outcome.refused++;
    }
  }

  /**
   * A gang run: its members chosen on distinct agents in the model (each held as soon as chosen), then
   * placed by one statement; a member that does not fit, or a statement that refuses, gives every holding
   * back at once. True when placed; otherwise why it waits (or never fits).
   */
  async #placeGang(transitions: RunTransitions, cache: FleetCache, run: QueuedRun, req: Request,
    admit: ((a: { name: string }) => boolean) | undefined): Promise<true | { never: boolean; reason: string }> {
    const holdings: Holding[] = [];
    const giveBack = () => { for (const h of holdings.splice(0)) cache.release(h); };
    const c = chooseGang(cache.index, req, admit,
      (rank, m) => holdings.push(cache.hold(memberKey(run.id, rank), run.project, m.agent, req, m.gpuIndices)), giveBack);
    if (!c.ok) return c;
    const index = cache.index;
    let placed: Placed | null = null;
    try {
      placed = await transitions.assignGang(run.id, c.members.map((m) => ({ agent: m.agent, gpuIndices: m.gpuIndices, session: index.get(m.agent)?.session ?? 0 })));
    } catch (err) {
      this.deps.log.error({ run: run.id, err: String(err) }, 'gang placement failed; the run stays queued');
    }
    if (!placed) {
      giveBack();
      for (const m of c.members) cache.agentChanged(m.agent);
      return { never: false, reason: `waiting for ${req.members} agents at once (a member's agent changed)` };
    }
    for (const h of holdings) h.lease = Number(placed.lease);
    schedulerMetrics.placements.inc(1);
    this.deps.onPlaced?.(placed);
    const bell = JSON.stringify(doorbellFor(placed));
    for (const m of c.members) {
      try { this.deps.nats.publish(this.deps.subjects.dispatch(m.agent), bell); } catch (err) {
        this.deps.log.warn({ run: run.id, agent: m.agent, err: String(err) }, 'gang doorbell not sent; the ack deadline or the member heartbeats will requeue it');
      }
    }
    return true;
  }

  /** Failure detection: lost agents and unacknowledged dispatches go back to the queue. */
  async #sweep(): Promise<void> {
    const { db, agentLostAfterMs } = this.deps;
    // A scheduler that just took over heard no heartbeats while nobody led: agents get two full deadlines
    // to reconnect before anyone is called lost.
    if (Date.now() - this.#leaderSince >= 2 * agentLostAfterMs) {
      const lost = await loseSilent(this.#agentDeps(), agentLostAfterMs); // logs each agent it calls lost
      const stranded = await requeueStranded({ db, runs: this.deps.runs });
      const gangs = await requeueStrandedMembers(db, this.deps.runs, this.deps.dispatchAckTimeoutMs);
      if (stranded.found > 0 || lost.length > 0 || gangs > 0) this.kick();
    }
    await this.#sweepUnacked();
    await this.#sweepPackaging();
  }

  /**
   * The scheduler's own deadline for the Packaging phase (package, environment, data), whatever the agent
   * believes: an attempt still there past --packaging-deadline ends Failed, and its agent is told to stop
   * it at its next heartbeat (the lease is no longer current). The agent's --packaging-timeout, shorter,
   * normally ends it first with a precise reason; this is the backstop for an agent that never does.
   */
  async #sweepPackaging(): Promise<void> {
    const { db, packagingDeadlineMs } = this.deps;
    if (!packagingDeadlineMs) return;
    const late = await db.selectFrom('runs').select(['id', 'lease', 'agent'])
      .where('status', '=', RunStatus.Packaging).where('agent', 'is not', null)
      .where(sql<boolean>`packaging_at < now() - make_interval(secs => ${packagingDeadlineMs / 1000})`).execute();
    for (const r of late) {
      const c = await this.deps.runs.endAttempt(r.id, Number(r.lease), r.agent!, RunStatus.Failed, `packaging did not finish within ${packagingDeadlineMs / 1000} s (the scheduler's --packaging-deadline)`);
      if (c) this.deps.log.warn({ run: r.id, agent: r.agent }, 'packaging past its deadline; the attempt failed');
    }
  }

  async #sweepUnacked(): Promise<void> {
    const { db, dispatchAckTimeoutMs } = this.deps;
    const stale = await db.selectFrom('runs').select(['id', 'lease', 'agent'])
      .where('agent', 'is not', null).where('acked_at', 'is', null)
      // The database's clock, which wrote dispatched_at: a scheduler whose clock runs ahead takes back nothing early.
      .where(sql<boolean>`dispatched_at < now() - make_interval(secs => ${dispatchAckTimeoutMs / 1000})`).execute();
    for (const r of stale) {
      await this.deps.runs.requeue(r.id, r.lease!, `dispatch not acknowledged by ${r.agent} within ${dispatchAckTimeoutMs} ms`, false, null, { unacked: true });
    }
    const silent = [...new Set(stale.map((r) => r.agent!))];
    if (silent.length) {
      await markUnresponsive(this.#agentDeps(), silent); // logs each agent it marks
    }
    if (stale.length > 0) this.kick();
  }

  /** The agent status changes the placer makes itself (lost, unresponsive) reach its model directly. */
  #agentDeps() {
    return { db: this.deps.db, log: this.deps.log, agentChanged: (name: string) => this.#cache?.agentChanged(name) };
  }

  /** Runs one unit of the leader's work; an error is logged, not thrown (undefined = it failed). */
  async #guard<T>(what: string, work: () => Promise<T>): Promise<T | undefined> {
    try {
      return await work();
    } catch (err) {
      if (!this.#abort.signal.aborted) this.deps.log.error({ err: String(err) }, `${what} failed; trying again shortly`);
      return undefined;
    }
  }

  /** Impossible states: found, repaired where safe, logged and recorded (never fatal to placement). Returns how many it repaired. */
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

interface Outcome { placed: number; refused: number; failed: { id: string; error: unknown }[] }

/** Agents reserved for a waiting gang (--gang-reserve-after): which, and since when (ms, this leader's clock). */
interface Reservation { run: string; agents: string[]; since: number }
