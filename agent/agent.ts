// The agent daemon: registers its capabilities, heartbeats, takes dispatches from NATS and runs each as an
// Attempt. Explicit states, every change logged; SIGTERM drains (no new runs, running ones finish or are
// handed back after the drain deadline), a second SIGTERM stops at once; with --on-stop detach, and on
// SIGUSR2 whatever it says, the agent detaches instead: it leaves its runs to the agent restarted after it
// (agent/detach.ts).
import { parsePortRange } from './gang-env.js';
import os from 'node:os';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection, Subscription } from 'nats';
import type { Logger } from 'pino';
import { agentSettings, type Settings } from '../shared/settings.js';
import type { Dispatch__Output, Gpu } from '../shared/proto.js';
import { subjects as makeSubjects } from '../shared/subjects.js';
import { AttemptOutcome } from '../shared/run-states.js';
import { ErrorCodes, TrainyardError, errorMessage, fromGrpcError } from '../shared/errors.js';
import { readGpus } from './gpus.js';
import { Link } from './link.js';
import { Attempt, type AttemptDeps } from './attempt.js';
import { loadCredential, saveCredential } from './identity.js';
import { prepareContainment, type Containment } from './containment.js';
import { harnessPath } from './run-env.js';
import { connectNats, natsOptions } from '../shared/nats.js';
import { channelCredentials } from '../shared/tls.js';
import { parseDoorbell, validateDispatch, type Doorbell, type ValidDispatch } from './claim.js';
import { serveMetrics, type MetricsServer } from './metrics.js';
import { WarmInterpreters } from './warm-interpreter.js';
import { PackageCache } from './package-cache.js';
import { DataCache } from './data-cache.js';
import { checkName } from '../shared/names.js';
import { after, deadline, type LongTimer } from '../shared/deadline.js';
import { findUv, parseInstaller, type Installer } from './uv.js';
import { VenvCacheCap } from './venv-cache-cap.js';
import { buildsUnderWay, stopBackgroundCompiles, type VenvOptions } from './venv.js';
import { PendingUploads } from './pending-uploads.js';
import { readRecords } from './reattach.js';
import { NextRunPreparer, parsePrepareNext } from './prepare-next.js';
import { parseOnStop, type OnStop } from './detach.js';
import { GpuUseReader } from './run-sampler.js';

export type AgentState = 'STARTING' | 'RUNNING' | 'DRAINING' | 'DETACHING' | 'STOPPED' | 'FAILED';
const VERSION = '0.1.0';
/**
 * Once the agent stops for good, how long the end reports get beyond the kill grace: a scheduler that is
 * there hears how each attempt ended; one that is away finds the attempts through its agent-loss sweep.
 */
const FINAL_REPORT_MS = 3000;

const MIB = 1024 * 1024;
/** What a package zip may unpack to (an attempt's, and a preparation's). */
const ZIP_LIMITS = { maxUnzippedBytes: 4 * 1024 * 1024 * 1024, maxEntries: 100_000 };
/** How long a claim keeps retrying a scheduler that is away; the ack deadline has requeued the run by then. */
const CLAIM_TIMEOUT_MS = 30_000;

export class AgentDaemon {
  #state: AgentState = 'STARTING';
  readonly #abort = new AbortController();
  /** Aborted when the agent stops for good: attempts stop retrying their end reports. */
  readonly #giveUpReports = new AbortController();
  #giveUpTimer: NodeJS.Timeout | null = null;
  /**
   * Attempts this agent runs, by run and lease: an attempt the scheduler took back may still be stopping
   * when the same run's next attempt is placed here, and both must be held, stopped and awaited.
   */
  readonly #attempts = new Map<string, Attempt>();
  /** --max-pending-uploads: finished attempts uploading with their GPUs given back (agent/pending-uploads.ts). */
  readonly #pendingUploads: PendingUploads;
  #session = 0;
  /** This agent's credential (agent/identity.ts), presented on every AgentLink call; null until it joined. */
  #credential: string | null = null;
  #heartbeatMs = 2000;
  #gpus: Gpu[] = [];
  // Shared by every run's sampler; an answer is reused for at most half a sample interval (and 1 s) after
  // it came, so a run's next sample asks again unless nvidia-smi took longer than half an interval.
  readonly #gpuUse: GpuUseReader | null;
  /** Cgroups, the run uids and the helpers (agent/containment.ts), set up at start. */
  #containment: Containment | undefined;
  /** Made at start, once the base interpreter warm interpreters start as is known. */
  #warm: WarmInterpreters;
  readonly #packages: PackageCache;
  readonly #dataCache: DataCache;
  readonly #installer: Installer;
  /** The venv dir's cap (--venv-cache-gb) and what each attempt holds of it. */
  readonly #venvCap: VenvCacheCap;
  /**
   * The uv venvs are built with (agent/uv.ts), looked for (or installed) in the background from the start,
   * so registering never waits on an index; the first build waits for it. null: pip.
   */
  #uv: Promise<string | null> = Promise.resolve(null);
  #link: Link;
  #nats: NatsConnection | null = null;
  #subs: Subscription[] = [];
  #heartbeatLoop: Promise<void> | null = null;
  #drained: Promise<void> | null = null;
  #metrics: MetricsServer | null = null;
  /** --on-stop: what SIGTERM does (agent/detach.ts). */
  readonly onStop: OnStop;
  /** --prepare-next (agent/prepare-next.ts); null: off. */
  readonly #prepare: NextRunPreparer | null;
  /** Where /metrics is served ('' when --metrics-listen is empty). */
  metricsAddress = '';
  /** The process's exit status once stopped: 1 when the scheduler shut this agent out. */
  exitCode = 0;

  constructor(readonly settings: Settings<typeof agentSettings>, readonly log: Logger) {
    this.#link = new Link(settings.scheduler, channelCredentials(settings));
    this.#pendingUploads = new PendingUploads(settings.maxPendingUploads);
    this.#warm = new WarmInterpreters({ max: 0, log, python: settings.python });
    this.#packages = new PackageCache(settings.workDir);
    this.#dataCache = new DataCache(settings.workDir, settings.dataCacheMb * 1024 * 1024, { listingTrustMs: settings.listingTrustSeconds * 1000 });
    this.#gpuUse = settings.nvidiaSmi ? new GpuUseReader(settings.nvidiaSmi, Math.min(1000, settings.sysSampleSeconds * 500)) : null;
    acceptedProjects(settings.acceptProjects); // a malformed name is refused now, not at the first Register
    this.#rendezvous = parsePortRange(settings.rendezvousPorts);
    this.#installer = parseInstaller(settings.installer);
    this.onStop = parseOnStop(settings.onStop);
    this.#venvCap = new VenvCacheCap(settings.venvDir, parseVenvCacheGb(settings.venvCacheGb) * 2 ** 30,
      { busy: (dir) => this.#warm.has(dir), building: buildsUnderWay, removed: (dir) => this.#packages.forgetVenv(dir) });
    this.#prepare = parsePrepareNext(settings.prepareNext) ? new NextRunPreparer({
      agentName: settings.name, link: this.#link, log, minioEndpoint: settings.minioEndpoint, bucket: settings.bucket, workDir: settings.workDir,
      acceptProjects: acceptedProjects(settings.acceptProjects), packages: this.#packages, dataCache: this.#dataCache, venvCap: this.#venvCap,
      venv: () => this.#venvOptions(() => {}), containment: () => this.#containment, zipLimits: ZIP_LIMITS, transferRetries: settings.transferRetries,
      training: () => this.#state === 'RUNNING' && [...this.#attempts.values()].some((a) => a.phase === 'training'),
    }) : null;
  }

  get state(): AgentState { return this.#state; }

  /** Run slots. Every run is at least a Python process: by default, one slot per advertised CPU. */
  get #slots(): number { return this.settings.maxRuns || Math.max(1, this.settings.cpus); }

  #setState(s: AgentState): void {
    this.log.info({ from: this.#state, to: s }, 'agent state');
    this.#state = s;
  }

  async start(): Promise<void> {
    const { settings, log } = this;
    // The join token is held in settings (memory) from here on, and taken out of the environment before
    // the agent spawns anything (nvidia-smi, useradd, pip, a run): no child inherits it. The kernel still
    // shows the environment the agent was started with in /proc/PID/environ, to root and the agent's own
    // uid only: README, "Security" (a one-use token is worth nothing once this agent has joined).
    delete process.env[agentSettings.joinToken.env];
    // NATS settings that cannot work (--nats-creds with --nats-user, an unreadable creds file) are refused
    // before the agent touches anything: its work dir, its cgroup, its containment.
    const natsConnectOptions = natsOptions(settings, `trainyard-agent-${settings.name}`);
    await mkdir(settings.workDir, { recursive: true });
    this.#credential = await loadCredential(settings.workDir);
    this.#gpus = await readGpus(settings.nvidiaSmi);
    this.#containment = await prepareContainment({
      runUids: settings.runUids, sharedUid: settings.sharedUid, runAsUser: settings.runAsUser, slots: this.#slots,
      python: settings.python, workDir: settings.workDir, venvDir: settings.venvDir, harness: harnessPath(),
    }, log);
    // A run with a uid of its own cannot write a file of the agent's: it may be handed the cache's entry itself.
    this.#dataCache.linksForRuns = this.#containment.pool !== null;
    this.#dataCache.spares = this.#containment.pool !== null;
    this.#warm = new WarmInterpreters({ max: settings.warmInterpreters, log, python: this.#containment.helpers.python });
    if (!this.#containment.cgroupBase) {
      log.warn({ onStop: this.onStop }, 'no cgroups: runs here are not under a supervisor and cannot outlive this agent; a detach (SIGUSR2, or SIGTERM with --on-stop detach) drains instead');
    }
    // Before registering: the attempts taken over are listed as held at Register.
    await this.#readopt();
    void this.#venvCap.enforce().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'could not measure the venv dir'));
    if (this.#installer === 'uv') {
      this.#uv = findUv({ workDir: settings.workDir, python: this.#containment.helpers.python, pipIndexUrl: settings.pipIndexUrl, pipFindLinks: settings.pipFindLinks, checkOwner: process.getuid?.() === 0, log })
        .catch((err: unknown) => { log.warn({ err: errorMessage(err) }, 'could not look for uv; venvs are built with pip'); return null; });
      void this.#uv.then((uv) => log.info({ installer: uv ? 'uv' : 'pip', uv }, `venvs are built with ${uv ? 'uv' : 'pip'}`));
    } else {
      log.info({ installer: 'pip' }, 'venvs are built with pip (--installer pip)');
    }
    log.info({ gpus: this.#gpus.map((g) => `${g.index}:${g.name}`), cpus: settings.cpus, memoryMb: settings.memoryMb, labels: settings.labels }, 'capabilities');
    if (settings.metricsListen) {
      this.#metrics = await serveMetrics(settings.metricsListen, {
        attemptsRunning: () => this.#attempts.size, gpus: () => this.#gpus.length, state: () => this.#state,
      }, log);
      this.metricsAddress = this.#metrics.address;
      log.info({ address: this.metricsAddress }, 'metrics listening');
    }
    this.#nats = await connectNats(settings, natsConnectOptions);
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
      await this.#metrics?.close();
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
    this.#resolveRunning();
    this.#prepare?.start();
  }

  /**
   * Resolves once registered and RUNNING. Registering wakes the placer, so a doorbell can ring before the
   * Register answer is processed (the credential a claim presents is only then in place): claims wait.
   */
  #resolveRunning: () => void = () => {};
  readonly #running = new Promise<void>((resolve) => { this.#resolveRunning = resolve; });

  #subscribe(prefix: string): void {
    const subjects = makeSubjects(prefix);
    const name = this.settings.name;
    this.#subs.push(this.#nats!.subscribe(subjects.dispatch(name), { callback: (err, msg) => { if (!err) this.#onDispatch(msg.data); } }));
    this.#subs.push(this.#nats!.subscribe(subjects.control(name), { callback: (err, msg) => { if (!err) this.#onControl(msg.data); } }));
  }

  /**
   * What this agent holds, for Register and every Heartbeat: its attempts, and the claims still in flight
   * (lease 0, the attempt their doorbell named), so an attempt whose claim is being retried is not taken
   * back meanwhile. The scheduler takes back an acknowledged attempt left out of several beats in a row.
   */
  #held() {
    return [
      // An attempt whose end is reported is no longer the scheduler's current one: its teardown is not held.
      ...[...this.#attempts.values()].filter((a) => !a.reported).map((a) => ({ run_id: a.runId, lease: a.lease, attempt: Number(a.dispatch.attempt) })),
      ...[...this.#claiming].filter(([run, attempt]) => !this.#attemptOf(run, attempt)).map(([run, attempt]) => ({ run_id: run, lease: 0, attempt })),
    ];
  }

  /** The attempt of this run with this number that this agent runs, if any. */
  #attemptOf(run: string, attempt: number): Attempt | undefined {
    for (const a of this.#attempts.values()) if (a.runId === run && Number(a.dispatch.attempt) === attempt) return a;
    return undefined;
  }

  /** --rendezvous-ports (multi-agent runs: agent/gang-env.ts). */
  readonly #rendezvous: { lo: number; hi: number };

  /** Runs whose claim is in flight, with the attempt their doorbell named. */
  readonly #claiming = new Map<string, number>();

  /**
   * Registers with the credential kept in the work dir; without one (or if the scheduler no longer knows
   * it, a new database say) with the join token, keeping the credential the scheduler then issues.
   */
  async #register(): Promise<string> {
    const { settings, log } = this;
    const register = () => this.#link.register({
      name: settings.name, hostname: os.hostname(), cpus: settings.cpus, memory_mb: settings.memoryMb,
      max_runs: this.#slots,
      gpus: this.#gpus, labels: { ...settings.labels }, version: VERSION, held: this.#held(), identity: '',
      accept_projects: acceptedProjects(settings.acceptProjects),
      advertise_addr: settings.advertiseAddr, rendezvous_port_lo: this.#rendezvous.lo, rendezvous_port_hi: this.#rendezvous.hi,
    }, this.#abort.signal, (err) => log.warn({ err: errorMessage(err) }, 'scheduler unreachable; retrying registration'));
    let res: Awaited<ReturnType<typeof register>> | null = null;
    if (this.#credential) {
      this.#link.authenticateAs(settings.name, this.#credential);
      try {
        res = await register();
      } catch (err) {
        if (!(err instanceof TrainyardError && err.code === ErrorCodes.Unauthenticated && settings.joinToken)) throw err;
        log.warn({ err: errorMessage(err) }, 'the scheduler refused this agent\'s credential; joining again with the join token');
      }
    }
    if (!res) {
      if (!settings.joinToken) {
        throw new TrainyardError(ErrorCodes.Unauthenticated, `this agent has no credential (${settings.workDir}/identity) and no join token: ` +
          'start it with --join-token or TRAINYARD_JOIN_TOKEN (an admin makes one with: trainyard agents join-token create)');
      }
      this.#link.authenticateAs(settings.name, settings.joinToken, { joining: true });
      res = await register();
      if (!res.credential) throw new TrainyardError(ErrorCodes.Internal, 'the scheduler accepted the join token but issued no credential');
      await saveCredential(settings.workDir, res.credential);
      this.#credential = res.credential;
      this.#link.authenticateAs(settings.name, res.credential);
      log.info({ file: `${settings.workDir}/identity` }, 'joined: the agent credential is kept in the work dir');
    }
    this.#session = res.session;
    this.#heartbeatMs = res.heartbeat_interval_ms || 2000;
    this.#cancel(res.cancel);
    log.info({ session: res.session }, 'registered');
    return res.subject_prefix;
  }

  /** Stops the held attempts the scheduler named (each by run and lease: another attempt is left alone). */
  #stopHeld(list: { run_id: string; lease: number | string }[], reason: string): void {
    for (const c of list) {
      this.#attempts.get(attemptKey(c.run_id, Number(c.lease)))?.stop({ outcome: AttemptOutcome.Killed, reason });
    }
  }

  #cancel(list: { run_id: string; lease: number | string }[]): void {
    this.#stopHeld(list, 'cancelled by the scheduler: no longer the current attempt');
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
        this.#act(res);
      } catch (err) {
        if (signal.aborted) return;
        if (fromGrpcError(err).code === ErrorCodes.Unauthenticated) {
          // The scheduler no longer takes this agent's credential: an admin removed it (`trainyard agents
          // remove --force`). Nothing it runs could be reported or committed any more, so it stops them
          // and exits non-zero rather than beating in vain.
          this.log.error({ err: errorMessage(err) }, 'shut out: the scheduler refuses this agent\'s credential (removed by an admin?); stopping its runs and exiting');
          this.exitCode = 1;
          void this.stop(true);
          return;
        }
        this.log.warn({ err: errorMessage(err) }, 'heartbeat failed');
      }
    }
  }

  #beat(leaving = false) {
    return this.#link.heartbeat({ name: this.settings.name, session: this.#session, held: this.#held(), draining: this.#state === 'DRAINING', leaving,
      cache_use: { venv_bytes: this.#venvCap.usedBytes, venv_cap_bytes: this.#venvCap.capBytes,
        data_bytes: this.#dataCache.size.bytes, data_cap_bytes: this.#dataCache.capBytes, package_bytes: this.#packages.usedBytes } });
  }

  /**
   * A doorbell from NATS: it names a run and nothing an agent acts on. The attempt is claimed from the
   * scheduler over gRPC (which acknowledges it), validated field by field (agent/claim.ts), and only then
   * run; anything refused is logged with the reason and touches nothing on disk.
   */
  #onDispatch(data: Uint8Array): void {
    let bell: Doorbell;
    try {
      bell = parseDoorbell(data);
    } catch (err) {
      this.log.warn({ reason: errorMessage(err) }, 'dispatch refused');
      return;
    }
    if (bell.attempt !== 0 && this.#attemptOf(bell.runId, bell.attempt)) return; // a duplicate delivery
    void this.#claim(bell);
  }

  async #claim(bell: Doorbell): Promise<void> {
    const { settings, log } = this;
    const rungAt = Date.now();
    let claimed: Dispatch__Output;
    await this.#running;
    if (bell.attempt) this.#claiming.set(bell.runId, bell.attempt);
    try {
      const signal = deadline(CLAIM_TIMEOUT_MS, this.#abort.signal);
      // The doorbell's package digest, when this agent has that version and its venv ready: the claim then
      // makes the run Running at once (the scheduler checks the digest against the run).
      const ready = bell.packageSha256 && this.#packages.isReady(bell.packageSha256) ? bell.packageSha256 : '';
      claimed = await this.#link.claimAttempt({ agent: settings.name, run_id: bell.runId, attempt: bell.attempt, ready_package_sha256: ready }, signal);
    } catch (err) {
      log.warn({ run: bell.runId, attempt: bell.attempt, reason: `claim refused: ${errorMessage(err)}` }, 'dispatch refused');
      return;
    } finally {
      // Synchronously up to #attempts.set below: a beat between the two would not list the run.
      if (this.#claiming.get(bell.runId) === bell.attempt) this.#claiming.delete(bell.runId);
    }
    let d: ValidDispatch;
    try {
      d = validateDispatch(claimed, {
        doorbell: bell, bucket: settings.bucket, gpuIndices: this.#gpus.map((g) => Number(g.index)), acceptProjects: acceptedProjects(settings.acceptProjects),
      });
    } catch (err) {
      const reason = `agent ${settings.name} refused the dispatch: ${errorMessage(err)}`;
      log.warn({ run: bell.runId, reason }, 'dispatch refused');
      // The claim acknowledged it, so no deadline would take it back: the attempt ends Failed with the reason.
      const lease = Number(claimed.lease);
      if (Number.isSafeInteger(lease) && lease > 0) {
        this.#link.finishAttempt({ run_id: bell.runId, lease, outcome: AttemptOutcome.Failed, reason }, this.#giveUpReports.signal)
          .catch((e: unknown) => log.warn({ run: bell.runId, err: errorMessage(e) }, 'could not report the refused dispatch'));
      }
      return;
    }
    const key = attemptKey(d.run_id!, Number(d.lease));
    if (this.#attempts.has(key)) return; // claimed twice (two deliveries)
    this.#prepare?.claimed(d.run_id!);
    const venvHolder = this.#venvCap.holder();
    const attempt = new Attempt(d, this.#attemptDeps(venvHolder), rungAt);
    this.log.info({ run: d.run_id, attempt: d.attempt, lease: d.lease, gpus: d.gpu_indices }, 'dispatch received');
    if (this.#state !== 'RUNNING') attempt.stop({ outcome: AttemptOutcome.HandedBack, reason: `agent ${this.settings.name} is draining` });
    this.#hold(key, attempt, venvHolder);
  }

  /** Holds an attempt until it is done (listed at every beat). */
  #hold(key: string, attempt: Attempt, venvHolder: ReturnType<VenvCacheCap['holder']>): void {
    this.#attempts.set(key, attempt);
    void attempt.done.finally(() => {
      venvHolder.releaseAll();
      if (this.#attempts.get(key) === attempt) this.#attempts.delete(key);
    });
  }

  /**
   * The attempts a killed or restarted agent of this work dir left running (agent/reattach.ts): each is
   * held again before the agent registers (so the scheduler neither takes it back nor requeues it) and
   * taken over once it has.
   */
  async #readopt(): Promise<void> {
    const { settings, log } = this;
    const { records, bad } = await readRecords(settings.workDir);
    for (const b of bad) log.warn({ record: b }, 'an attempt left by an earlier agent could not be read; its run is not taken over');
    const kept = new Set(records.map((r) => `${r.dir}.spool`));
    // Spools of attempts that had not started their run when their agent went: nothing to take over.
    for (const name of await readdir(settings.workDir).catch(() => [] as string[])) {
      const file = path.join(settings.workDir, name);
      if (/\.spool(\.pos(\.tmp)?)?$/.test(name) && !kept.has(file.replace(/\.pos(\.tmp)?$/, ''))) await rm(file, { force: true });
    }
    for (const { rec } of records) {
      const d = rec.dispatch;
      const venvHolder = this.#venvCap.holder();
      const attempt = new Attempt(d, { ...this.#attemptDeps(venvHolder), linkReady: this.#running }, Date.now(), rec);
      log.info({ run: d.run_id, attempt: d.attempt, lease: d.lease, pid: rec.pid, cgroup: rec.cgroup }, 'attempt taken over from the agent before this one');
      this.#hold(attemptKey(d.run_id!, Number(d.lease)), attempt, venvHolder);
    }
  }

  #attemptDeps(venvHolder: ReturnType<VenvCacheCap['holder']>): AttemptDeps {
    return {
      agentName: this.settings.name, link: this.#link, minioEndpoint: this.settings.minioEndpoint, log: this.log, workDir: this.settings.workDir,
      venv: this.#venvOptions(venvHolder.hold),
      killGraceMs: this.settings.killGraceMs, packagingTimeoutMs: this.settings.packagingTimeoutS * 1000,
      downloadTimeoutMs: this.settings.downloadTimeoutS * 1000, uploadTimeoutMs: this.settings.uploadTimeoutS * 1000, reportTimeoutMs: this.settings.reportTimeoutS * 1000,
      transferRetries: this.settings.transferRetries,
      zipLimits: ZIP_LIMITS,
      runDiskBytes: this.settings.runDiskMb * MIB, maxOutputBytes: this.settings.maxOutputMb * MIB, logSpillBytes: this.settings.logSpillMb * MIB,
      reportSignal: this.#giveUpReports.signal,
      sysSample: { gpuUse: this.#gpuUse, everyMs: this.settings.sysSampleSeconds * 1000 },
      gpus: this.#gpus, containment: this.#containment, warm: this.#warm, packages: this.#packages, dataCache: this.#dataCache,
      pendingUploads: this.#pendingUploads,
    };
  }

  /** How venvs are built here; `hold` marks the one handed out in use (an attempt's holder). */
  #venvOptions(hold: (dir: string) => void): VenvOptions {
    const s = this.settings;
    return { venvDir: s.venvDir, python: s.python, pythonVersion: '', pipIndexUrl: s.pipIndexUrl, pipFindLinks: s.pipFindLinks, installer: this.#installer, uv: this.#uv, cap: this.#venvCap, hold, warn: (msg) => this.log.warn(msg) };
  }

  /**
   * A control message from NATS: a doorbell saying an attempt here was killed or the agent is to drain. It
   * carries no authority: the agent beats now, and acts on the scheduler's answer (what to stop, whether to
   * drain), as at every heartbeat. Messages arriving while that beat is out share it.
   */
  #onControl(data: Uint8Array): void {
    try { JSON.parse(new TextDecoder().decode(data)); } catch { return; }
    if (this.#asking) { this.#askAgain = true; return; }
    this.#asking = true;
    void (async () => {
      do {
        this.#askAgain = false;
        try {
          this.#act(await this.#beat());
        } catch (err) {
          if (!this.#abort.signal.aborted) this.log.warn({ err: errorMessage(err) }, 'could not ask the scheduler about a control message; the next heartbeat will');
        }
      } while (this.#askAgain && !this.#abort.signal.aborted);
      this.#asking = false;
    })();
  }

  #asking = false;
  #askAgain = false;

  /** What a heartbeat's answer says to stop, kill or drain. */
  #act(res: { cancel: { run_id: string; lease: number | string }[]; kill: { run_id: string; lease: number | string }[]; drain: boolean }): void {
    this.#cancel(res.cancel);
    this.#stopHeld(res.kill, 'killed');
    if (res.drain && this.#state === 'RUNNING') this.#remoteDrain();
  }

  /** Takes no new runs; lets running ones finish until the drain deadline, then hands them back. */
  drain(why: string): Promise<void> {
    if (this.#drained) return this.#drained;
    this.#setState('DRAINING');
    const prepared = this.#prepare?.stop();
    this.log.info({ why, running: this.#attempts.size }, 'draining');
    // Tell the scheduler at once, so it places nothing more here.
    this.#beat().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not tell the scheduler about the drain'));
    this.#drained = (async () => {
      const all = Promise.all([...this.#attempts.values()].map((a) => a.done));
      let timer: LongTimer | undefined;
      const late = new Promise<'deadline'>((resolve) => { timer = after(this.settings.drainTimeoutMs, () => resolve('deadline')); });
      const outcome = await Promise.race([all.then(() => 'done' as const), late]);
      timer?.cancel();
      if (outcome === 'deadline') {
        for (const a of this.#attempts.values()) a.stop({ outcome: AttemptOutcome.HandedBack, reason: `agent ${this.settings.name} drained` });
        this.#giveUpReportsSoon('drain deadline');
        await Promise.all([...this.#attempts.values()].map((a) => a.done));
      }
      await prepared;
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

  /** SIGTERM or SIGINT (a second one: force): drains and stops, or detaches with --on-stop detach. */
  onSignal(force: boolean): Promise<void> {
    // A second signal while a drain is under way (one that could not detach, or a remote drain) forces it, as ever.
    const draining = this.#stopping !== null && !this.#detaching;
    return this.onStop === 'detach' && !(force && draining) ? this.detach(force) : this.stop(force);
  }

  /** First call: drain, then stop. force: stop now (runs are handed back). */
  async stop(force = false): Promise<void> {
    if (force) {
      for (const a of this.#attempts.values()) a.stop({ outcome: AttemptOutcome.HandedBack, reason: `agent ${this.settings.name} stopped` });
      this.#giveUpReportsSoon('stopping now');
    }
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  #detaching = false;

  /**
   * SIGUSR2, or SIGTERM with --on-stop detach (agent/detach.ts): leaves now, its runs going on, without
   * telling the scheduler (which then sees a restart). force (a second signal): gives up the log flush and
   * end reports still pending now. An agent already draining or stopping goes on doing so.
   */
  detach(force = false): Promise<void> {
    if (this.#stopping) {
      if (!this.#detaching) this.log.warn({ state: this.#state }, 'already draining or stopping: not detached');
      else if (force) this.#giveUpReports.abort();
      return this.#stopping;
    }
    this.#stopping = this.#detach();
    return this.#stopping;
  }

  async #detach(): Promise<void> {
    const attempts = [...this.#attempts.values()].map((a) => ({ a, what: a.onDetach }));
    const orphans = attempts.filter((x) => x.what === 'drain').map((x) => x.a.runId);
    if (orphans.length) {
      this.log.warn({ runs: orphans }, 'cannot detach: these runs are not under a supervisor (no cgroups) and would be orphaned; draining instead');
      return this.#stop();
    }
    this.#detaching = true;
    this.#setState('DETACHING');
    // No new claim, no heartbeat, no registration from here: the scheduler hears nothing more from this agent.
    this.#abort.abort();
    const prepared = this.#prepare?.stop();
    this.log.info({ leave: attempts.filter((x) => x.what === 'leave').map((x) => x.a.runId) }, 'detaching: runs go on under their supervisors; the agent restarted with this name and work dir takes them over');
    for (const { a, what } of attempts) {
      if (what === 'hand back') a.stop({ outcome: AttemptOutcome.HandedBack, reason: `agent ${this.settings.name} detached before the run started` });
    }
    this.#giveUpReportsSoon('detaching');
    await Promise.all(attempts.map(({ a, what }) => (what === 'leave' ? a.detach(this.#giveUpReports.signal) : a.done)));
    await prepared;
    await this.#heartbeatLoop;
    await this.#letGo();
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
    await this.#letGo();
  }

  /** The last of a stop or a detach: connections, interpreters and the metrics server go; STOPPED. */
  async #letGo(): Promise<void> {
    for (const s of this.#subs) s.unsubscribe();
    await this.#nats?.drain().catch(() => {});
    this.#link.close();
    // Idle interpreters end; a run forked from one (detached, not stopped) is its own supervisor (setsid) and goes on.
    await this.#warm.close();
    await stopBackgroundCompiles();
    // No spare folder for a next run that will not come here, and none made after (prepare-next drops its own).
    await this.#dataCache.close().catch(() => {});
    await this.#metrics?.close();
    if (this.#giveUpTimer) clearTimeout(this.#giveUpTimer);
    this.#setState('STOPPED');
    this.#resolveStopped();
  }
}

/**
 * --accept-projects as sent at Register: the only projects whose runs this agent takes (the scheduler's
 * placer and its place statement hold to it); empty: every project's. A malformed name is refused at start.
 */
export function acceptedProjects(text: string): string[] {
  return [...new Set(text.split(',').map((s) => s.trim()).filter(Boolean).map((p) => checkName('project', p)))];
}

const attemptKey = (run: string, lease: number) => `${run}:${lease}`;

/** `--venv-cache-gb`: GiB, decimals allowed, 0 for no cap. */
export function parseVenvCacheGb(text: string): number {
  const gb = Number(text);
  if (text.trim() === '' || !Number.isFinite(gb) || gb < 0) throw new TrainyardError(ErrorCodes.InvalidArgument, `--venv-cache-gb "${text}": expected a number of GiB, 0 or more (0: no cap)`);
  return gb;
}
