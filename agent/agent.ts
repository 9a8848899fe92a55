// The agent daemon: registers its capabilities, heartbeats, takes dispatches from NATS and runs each as an
// Attempt. Explicit states, every change logged; SIGTERM drains (no new runs, running ones finish or are
// handed back after the drain deadline), a second SIGTERM stops at once.
import os from 'node:os';
import { mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from 'pino';
import type * as Minio from 'minio';
import type { Settings, agentSettings } from '../shared/settings.js';
import type { Dispatch, Gpu } from '../shared/proto.js';
import { createMinioClient } from '../shared/storage.js';
import { subjects as makeSubjects, type ControlMessage } from '../shared/subjects.js';
import { AttemptOutcome } from '../shared/run-states.js';
import { errorMessage } from '../shared/errors.js';
import { readGpus } from './gpus.js';
import { Link } from './link.js';
import { Attempt, type AttemptDeps } from './attempt.js';
import { loadIdentity } from './identity.js';

export type AgentState = 'STARTING' | 'RUNNING' | 'DRAINING' | 'STOPPED' | 'FAILED';
const VERSION = '0.1.0';
/**
 * Once the agent stops for good, how long the end reports get beyond the kill grace: a scheduler that is
 * there hears how each attempt ended; one that is away finds the attempts through its agent-loss sweep.
 */
const FINAL_REPORT_MS = 3000;

export class AgentDaemon {
  #state: AgentState = 'STARTING';
  readonly #abort = new AbortController();
  /** Aborted when the agent stops for good: attempts stop retrying their end reports. */
  readonly #giveUpReports = new AbortController();
  #giveUpTimer: NodeJS.Timeout | null = null;
  readonly #attempts = new Map<string, Attempt>();
  #session = 0;
  /** This agent's identity (agent/identity.ts), sent with every Register. */
  #identity = '';
  #heartbeatMs = 2000;
  #gpus: Gpu[] = [];
  #link: Link;
  #minio: Minio.Client;
  #nats: NatsConnection | null = null;
  #subs: Subscription[] = [];
  #heartbeatLoop: Promise<void> | null = null;
  #drained: Promise<void> | null = null;

  constructor(readonly settings: Settings<typeof agentSettings>, readonly log: Logger) {
    this.#link = new Link(settings.scheduler);
    this.#minio = createMinioClient(settings);
  }

  get state(): AgentState { return this.#state; }

  #setState(s: AgentState): void {
    this.log.info({ from: this.#state, to: s }, 'agent state');
    this.#state = s;
  }

  async start(): Promise<void> {
    const { settings, log } = this;
    await mkdir(settings.workDir, { recursive: true });
    this.#identity = await loadIdentity(settings.workDir);
    this.#gpus = await readGpus(settings.nvidiaSmi);
    log.info({ gpus: this.#gpus.map((g) => `${g.index}:${g.name}`), cpus: settings.cpus, memoryMb: settings.memoryMb, labels: settings.labels }, 'capabilities');
    this.#nats = await connect({ servers: settings.natsUrl.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 500, name: `trainyard-agent-${settings.name}` });
    // Subscribed before registering: registering wakes the placer, whose first dispatch must find us listening.
    this.#subscribe(settings.subjectPrefix);
    await this.#nats.flush();
    let prefix: string;
    try {
      prefix = await this.#register();
    } catch (err) {
      // Refused for good (another live agent holds this name: ALREADY_EXISTS, naming it): nothing runs
      // here yet, so the agent lets go of its connections and the error ends the process non-zero.
      log.error({ err: errorMessage(err) }, 'registration refused');
      this.#setState('FAILED');
      for (const s of this.#subs.splice(0)) s.unsubscribe();
      await this.#nats.close().catch(() => {});
      this.#link.close();
      throw err;
    }
    if (prefix !== settings.subjectPrefix) {
      log.warn({ ours: settings.subjectPrefix, scheduler: prefix }, 'subject prefix differs from the scheduler\'s; using the scheduler\'s');
      for (const s of this.#subs.splice(0)) s.unsubscribe();
      this.#subscribe(prefix);
      await this.#nats.flush();
    }
    this.#heartbeatLoop = this.#heartbeat();
    this.#setState('RUNNING');
  }

  #subscribe(prefix: string): void {
    const subjects = makeSubjects(prefix);
    const name = this.settings.name;
    this.#subs.push(this.#nats!.subscribe(subjects.dispatch(name), { callback: (err, msg) => { if (!err) this.#onDispatch(msg.data); } }));
    this.#subs.push(this.#nats!.subscribe(subjects.control(name), { callback: (err, msg) => { if (!err) this.#onControl(msg.data); } }));
  }

  #held() {
    return [...this.#attempts.values()].map((a) => ({ run_id: a.runId, lease: a.lease }));
  }

  async #register(): Promise<string> {
    const { settings, log } = this;
    const res = await this.#link.register({
      name: settings.name, hostname: os.hostname(), cpus: settings.cpus, memory_mb: settings.memoryMb,
      gpus: this.#gpus, labels: { ...settings.labels }, version: VERSION, held: this.#held(), identity: this.#identity,
    }, this.#abort.signal, (err) => log.warn({ err: errorMessage(err) }, 'scheduler unreachable; retrying registration'));
    this.#session = res.session;
    this.#heartbeatMs = res.heartbeat_interval_ms || 2000;
    this.#cancel(res.cancel);
    log.info({ session: res.session }, 'registered');
    return res.subject_prefix;
  }

  #cancel(list: { run_id: string; lease: number }[]): void {
    for (const c of list) {
      const a = this.#attempts.get(c.run_id);
      if (a && a.lease === Number(c.lease)) a.stop({ outcome: AttemptOutcome.Killed, reason: 'cancelled by the scheduler: no longer the current attempt' });
    }
  }

  async #heartbeat(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      await sleep(this.#heartbeatMs, undefined, { signal }).catch(() => {});
      if (signal.aborted) return;
      try {
        const res = await this.#beat();
        if (res.reregister) {
          this.log.warn('scheduler asked to register again');
          await this.#register();
        }
        this.#cancel(res.cancel);
        if (res.drain && this.#state === 'RUNNING') this.#remoteDrain();
      } catch (err) {
        if (!signal.aborted) this.log.warn({ err: errorMessage(err) }, 'heartbeat failed');
      }
    }
  }

  #beat(leaving = false) {
    return this.#link.heartbeat({ name: this.settings.name, session: this.#session, held: this.#held(), draining: this.#state === 'DRAINING', leaving });
  }

  #onDispatch(data: Uint8Array): void {
    let d: Dispatch;
    try {
      d = JSON.parse(new TextDecoder().decode(data)) as Dispatch;
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'unreadable dispatch ignored');
      return;
    }
    const existing = this.#attempts.get(d.run_id!);
    if (existing && existing.lease === Number(d.lease)) return; // a duplicate delivery
    const deps: AttemptDeps = {
      agentName: this.settings.name, link: this.#link, minio: this.#minio, log: this.log, workDir: this.settings.workDir,
      venv: { venvDir: this.settings.venvDir, python: this.settings.python, pipIndexUrl: this.settings.pipIndexUrl, pipFindLinks: this.settings.pipFindLinks },
      killGraceMs: this.settings.killGraceMs, transferRetries: this.settings.transferRetries,
      zipLimits: { maxUnzippedBytes: 4 * 1024 * 1024 * 1024, maxEntries: 100_000 },
      reportSignal: this.#giveUpReports.signal,
    };
    const attempt = new Attempt(d, deps);
    this.log.info({ run: d.run_id, attempt: d.attempt, lease: d.lease, gpus: d.gpu_indices }, 'dispatch received');
    if (this.#state !== 'RUNNING') attempt.stop({ outcome: AttemptOutcome.HandedBack, reason: `agent ${this.settings.name} is draining` });
    this.#attempts.set(d.run_id!, attempt);
    void attempt.done.finally(() => {
      if (this.#attempts.get(d.run_id!) === attempt) this.#attempts.delete(d.run_id!);
    });
  }

  #onControl(data: Uint8Array): void {
    let msg: ControlMessage;
    try { msg = JSON.parse(new TextDecoder().decode(data)) as ControlMessage; } catch { return; }
    if (msg.type === 'kill') {
      const a = this.#attempts.get(msg.runId);
      if (a && a.lease === msg.lease) a.stop({ outcome: AttemptOutcome.Killed, reason: 'killed' });
    } else if (msg.type === 'drain') {
      this.#remoteDrain();
    }
  }

  /** Takes no new runs; lets running ones finish until the drain deadline, then hands them back. */
  drain(why: string): Promise<void> {
    if (this.#drained) return this.#drained;
    this.#setState('DRAINING');
    this.log.info({ why, running: this.#attempts.size }, 'draining');
    // Tell the scheduler at once, so it places nothing more here.
    this.#beat().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not tell the scheduler about the drain'));
    this.#drained = (async () => {
      const all = Promise.all([...this.#attempts.values()].map((a) => a.done));
      const deadline = sleep(this.settings.drainTimeoutMs, 'deadline' as const);
      if ((await Promise.race([all.then(() => 'done' as const), deadline])) === 'deadline') {
        for (const a of this.#attempts.values()) a.stop({ outcome: AttemptOutcome.HandedBack, reason: `agent ${this.settings.name} drained` });
        this.#giveUpReportsSoon('drain deadline');
        await Promise.all([...this.#attempts.values()].map((a) => a.done));
      }
    })();
    return this.#drained;
  }

  /** `trainyard agents drain NAME`: the same as SIGTERM, asked remotely; the process exits once drained. */
  #remoteDrain(): void {
    void this.drain('drain requested by the scheduler').then(() => this.stop());
  }

  #resolveStopped: () => void = () => {};
  /** Resolves once the agent has stopped (after a signal or a remote drain). */
  readonly stopped: Promise<void> = new Promise((resolve) => { this.#resolveStopped = resolve; });
  #stopping: Promise<void> | null = null;

  /** First call: drain, then stop. force: stop now (runs are handed back). */
  async stop(force = false): Promise<void> {
    if (force) {
      for (const a of this.#attempts.values()) a.stop({ outcome: AttemptOutcome.HandedBack, reason: `agent ${this.settings.name} stopped` });
      this.#giveUpReportsSoon('stopping now');
    }
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** The attempts' processes get their kill grace, their end reports a little more; then the agent goes. */
  #giveUpReportsSoon(why: string): void {
    if (this.#giveUpTimer || this.#giveUpReports.signal.aborted) return;
    this.#giveUpTimer = setTimeout(() => {
      if (this.#attempts.size) this.log.warn({ why, unreported: [...this.#attempts.keys()] }, 'giving up the end reports still pending');
      this.#giveUpReports.abort();
    }, this.settings.killGraceMs + FINAL_REPORT_MS);
  }

  async #stop(): Promise<void> {
    await this.drain('shutdown');
    this.#abort.abort();
    await this.#heartbeatLoop;
    await this.#beat(true).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not tell the scheduler it leaves'));
    for (const s of this.#subs) s.unsubscribe();
    await this.#nats?.drain().catch(() => {});
    this.#link.close();
    if (this.#giveUpTimer) clearTimeout(this.#giveUpTimer);
    this.#setState('STOPPED');
    this.#resolveStopped();
  }
}
