// One attempt of a run on this agent, start to end, as named steps: fetch the package and build (or reuse)
// its venv (Packaging), make the data local, run train() and save() through the harness in its own
// process group, upload every output (Running), and only then report the end. Kill, timeout and drain all
// end the attempt the same way: its AbortSignal fires, which stops whatever step is running (a transfer,
// pip, or the process group: SIGTERM, a grace period, then SIGKILL). What the run's code executes is
// contained (agent/containment.ts): its own cgroup, killed whole at the end; a minimal environment; and,
// on a root agent, a uid of its own (agent/run-uids.ts), leased for the attempt and given back once none of
// its processes is left: its folder is root's with the uid's group (0750: no other run may enter), and
// the uid owns only the run's package copy, HOME, TMPDIR, result folder and the folders process_data writes.
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type * as Minio from 'minio';
import { createMinioClient } from '../shared/storage.js';
import { deadline } from '../shared/deadline.js';
import type { Logger } from 'pino';
import type { Dispatch, Gpu } from '../shared/proto.js';
import { AttemptOutcome, RunStatus } from '../shared/run-states.js';
import { diskFullCodes, downloadObject, uploadBuffer, uploadDir, type RetryOptions } from '../shared/storage.js';
import { uploadStream } from '../shared/stream-upload.js';
import { AnchoredDir, NotPlainPath, removeTree, type AnchoredFile } from '../shared/anchored-dir.js';
import { DataCache, type MadeLocal } from './data-cache.js';
import { extractZip, zipAnchored, zipAnchoredStream } from '../shared/zip.js';
import { ErrorCodes, errorMessage, isRetryableGrpc, TrainyardError } from '../shared/errors.js';
import { contained, ensureVenv, PackagingError, type VenvOptions } from './venv.js';
import { LogShipper } from './log-shipper.js';
import { RunMetrics } from './run-metrics.js';
import { startSampler, type GpuUseReader } from './run-sampler.js';
import { SupervisedProcess, type ProcessExit, type SuperviseOptions } from './process.js';
import { needsFreshInterpreter, type ForkedRun, type WarmInterpreters } from './warm-interpreter.js';
import { extractPackage, type PackageCache } from './package-cache.js';
import { planOutputs } from './outputs.js';
import { gangEnv, memberOutputPrefix } from './gang-env.js';
import { memberRanks } from './rank-activity.js';
import { DiskWatch } from './run-disk.js';
import type { Link } from './link.js';
import { RunCgroup } from './cgroup.js';
import { chownTree, type Containment } from './containment.js';
import { asUser, type RunAsUser } from './run-as.js';
import type { RunUidLease } from './run-uids.js';
import { checkRunEnv, gpuUuids, harnessPath, RefusedDispatch, supervisorPath, trainEnv } from './run-env.js';
import { secretMasker, type Redact } from './secrets.js';
import { manifestOf, manifestOfFolder, venvInfo, type DataManifest, type VenvInfo } from './lineage.js';
import { makesVersion, parsePipeline, Pipeline } from '../shared/pipelines.js';
import type { ShippedLine } from './lines.js';
import { agentMetrics, countTransfer, type Direction } from './metrics.js';
import { RunCheckpoints, resumePointer } from './checkpoints.js';
import { resumedFromEnv, type CheckpointPointer } from '../shared/checkpoints.js';
import type { PendingPlace, PendingUploads } from './pending-uploads.js';
import { readPos, Spool } from './spool.js';
import { AdoptedProcess, dropRecord, saveRecord, type ReattachRecord } from './reattach.js';
import type { OnDetach } from './detach.js';

export interface AttemptDeps {
  agentName: string;
  link: Link;
  /** Where storage is; the keys come with each attempt (ClaimAttempt, RenewStorage), scoped to it. */
  minioEndpoint: string;
  log: Logger;
  workDir: string;
  venv: VenvOptions;
  killGraceMs: number;
  /** The most a run may wait for its environment (built, or built for another run); absent or 0: no limit. */
  packagingTimeoutMs?: number;
  /** --download-timeout: the most fetching the package, and making the data local, may each take; absent or 0: no limit. */
  downloadTimeoutMs?: number;
  /** --upload-timeout: the most uploading the outputs may take; absent or 0: no limit. */
  uploadTimeoutMs?: number;
  /** --report-timeout: the most the end report is retried; absent or 0: until reportSignal. */
  reportTimeoutMs?: number;
  transferRetries: number;
  zipLimits: { maxUnzippedBytes: number; maxEntries: number };
  /** --run-disk-mb in bytes: what a run may add to its folder (RLIMIT_FSIZE per file, and measured); 0: no limit. */
  runDiskBytes?: number;
  /** --max-output-mb in bytes: the most one attempt uploads; 0: no limit. */
  maxOutputBytes?: number;
  /** --log-spill-mb in bytes: the most of the run's log lines kept on disk while the scheduler is away; 0: no cap. */
  logSpillBytes?: number;
  /**
   * Fires when the agent stops for good (a second signal, or past its drain deadline): the end report and
   * the log shipping, which otherwise retry for as long as the scheduler is away, give up. Absent: never.
   */
  reportSignal?: AbortSignal;
  /** The agent's samples of a running attempt (agent/run-sampler.ts); absent or everyMs 0: none. */
  sysSample?: { gpuUse: GpuUseReader | null; everyMs: number };
  /** This agent's GPUs (nvidia-smi): a dispatch names indices, train.py gets their UUIDs. */
  gpus?: readonly Gpu[];
  /** How runs are contained (agent/containment.ts); absent: process groups only, the agent's own user. */
  containment?: Containment;
  /** Warm interpreters to fork the run's process from (agent/warm-interpreter.ts); absent: each run spawns one. */
  warm?: WarmInterpreters;
  /** Package versions already extracted on this agent (agent/package-cache.ts); absent: every run downloads. */
  packages?: PackageCache;
  /** Dataset files this agent fetched before (agent/data-cache.ts); absent: every run downloads its data. */
  dataCache?: DataCache;
  /** --max-pending-uploads (agent/pending-uploads.ts): GPUs given back at process exit; absent: held until the end. */
  pendingUploads?: PendingUploads;
  /** An adopted attempt (agent/reattach.ts) waits for this (the agent registered) before it calls the scheduler. */
  linkReady?: Promise<void>;
}

const noDataCache = new DataCache('', 0);

/** The step an attempt is in; a failure's reason names it ("disk full on agent X while <phase>"). */
export type Phase = 'fetching_package' | 'building_env' | 'fetching_data' | 'training' | 'uploading' | 'reporting';

const phaseWords = {
  fetching_package: 'fetching the package',
  building_env: 'building the environment',
  fetching_data: 'making the data local',
  training: 'running train.py',
  uploading: 'uploading the outputs',
  reporting: 'reporting the end',
} as const satisfies Record<Phase, string>;

type EndReason = { outcome: AttemptOutcome; reason: string };

/** How long a checkpoint's report to the scheduler is tried (the checkpoint itself is already safe). */
const CHECKPOINT_REPORT_MS = 30_000;
/** How long the "released" report is tried before the upload goes on without it. */
const RELEASE_REPORT_MS = 30_000;

/** A package version whose files come to at most this is zipped in memory (see #upload). */
const ZIP_IN_MEMORY_BYTES = 8 * 1024 * 1024;

/**
 * The harness's verdict is a few KiB (it caps its own error text): a result file larger than this, or not a
 * regular file at all, fails the run instead of being read.
 */
const RESULT_FILE_MAX_BYTES = 1024 * 1024;

/** How often a run's folder is measured against --run-disk-mb while it runs (and once more at its end). */
const DISK_SAMPLE_MS = 2000;

const MIB = 1024 * 1024;

/** Credentials this close to their expiry are renewed before the next transfer starts. */
const RENEW_BEFORE_MS = 5 * 60_000;
/** How long an attempt waits for read-only keys (a pull of many files) before it goes on with its own. */
const READ_KEYS_WITHIN_MS = 10_000;
type PhaseTime = { name: string; started_at: number; ended_at: number };
type Result = EndReason & {
  startAt?: number; endAt?: number; saved?: boolean; savedTest?: boolean; size?: number; sha256?: string;
  score?: number | null; phases?: PhaseTime[]; lineage?: object;
};
/** The harness's verdict (agent/harness/trainyard_harness.py, its result file). */
type Verdict = { ok: boolean; error?: { summary?: string; message?: string } | null; score?: number | null; phases?: PhaseTime[] };

/**
 * The run's folders (inside the attempt's folder, which stays the agent's): the input data, and for a full
 * pipeline the training and test folders process_data writes (the evaluation dataset goes to test/, and
 * then process_data's test split to scratch/).
 */
interface Folders { data: string; training: string | null; test: string | null; scratch: string | null }

/** The run's process, set up and not started yet (Attempt.#prepareProcess). */
interface Prepared {
  venv: string;
  pkgDir: string;
  env: Record<string, string>;
  harnessArgs: string[];
  resultFile: string;
  /** A warm interpreter's child waiting for its environment; null: a fresh interpreter is spawned at the start. */
  forked: ForkedRun | null;
}

/** Makes a folder of the agent's (0700) that may already be there. */
async function mkdirOnce(dir: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
}

/** The end was decided by stop() (a kill, a timeout, a drain), not by the steps. */
class Stopped extends Error {}

export class Attempt {
  readonly #abort = new AbortController();
  #end: EndReason | null = null;
  #phase: Phase = 'fetching_package';
  /** The data download, which runs beside the package's steps: a failure there happened while it ran too. */
  #data: 'not_started' | 'fetching' | 'local' = 'not_started';
  /** The dataset as made local (whole) in its folder: DataCache.recycle may keep that folder once the run is over. */
  #dataMade: { made: MadeLocal; dir: string } | null = null;
  readonly #dir: string;
  /** When each step began (ms since the epoch), logged with the end: where an attempt's time went. */
  readonly #marks: Record<string, number> = { claimed: Date.now() };
  #cgroup: RunCgroup | null = null;
  /** The attempt's run uid (null: runs as the agent's own); given back at the very end of #run. */
  #uid: RunUidLease | null = null;
  /** The run's process was set up beside the package's copy (a run claimed ready), not after it. */
  #setUpEarly = false;
  /** A warm child set up for this run that has not been started: called off if the attempt ends first. */
  #unstarted: ForkedRun | null = null;
  readonly done: Promise<void>;
  readonly logs: LogShipper;
  /** What train.py logs with `import trainyard` (agent/run-metrics.ts). */
  readonly metrics: RunMetrics;
  /** The attempt's storage client and when its keys expire (renewed through the scheduler). */
  #storageClient: Minio.Client | null = null;
  #readKeys: { client: Promise<Minio.Client>; expiresAt: number | null } | null = null;
  /** Why read-only keys could not be had: asked once per attempt, not once per file. */
  #readKeysRefused: Error | null = null;
  #storageExpiresAt = 0;
  readonly #redact: Redact;
  /** The run's pipeline kind (the dispatch was validated: agent/claim.ts). */
  readonly #pipeline: Pipeline;
  /** checkpoint_directory, its uploads and the stall watch (agent/checkpoints.ts). */
  readonly #checkpoints: RunCheckpoints;
  /** The checkpoint this attempt starts from (the dispatch's pointer, checked in #steps); null: a fresh start. */
  #resume: CheckpointPointer | null = null;
  /** Its place among the agent's pending uploads once its GPUs were given back at process exit (#releaseCapacity). */
  #pendingPlace: PendingPlace | null = null;
  /**
   * The attempt's spool (agent/spool.ts): every line of its log goes there first, the run's output and exit
   * status too (its supervisor's), so the run outlives the agent (agent/reattach.ts). Null without a
   * cgroup: a restarted agent could not tell whether the run still lives, so nothing is kept for one.
   */
  readonly #spool: Spool | null = null;
  /** Taken over from an agent that was restarted (agent/reattach.ts); null: claimed by this agent. */
  readonly #adopted: ReattachRecord | null;
  /** The spool is being read and shipped (an adopted attempt's only once the agent has registered). */
  #spoolRead = false;
  /** The run's process was started here. */
  #spawned = false;
  /** Written down for an agent that takes it over (agent/reattach.ts): taken over, or its record saved. */
  #recorded: boolean;
  /** Learnt before the run's start, written down for an agent that takes it over. */
  #startAt = 0;
  #lineageObj: object = {};
  /** The lineage's data manifest is still being hashed (deferred hashes): written down so, then again once in. */
  #dataPending = false;
  /** What the record for a restarted agent holds besides the lineage, once the run's process is started. */
  #recordBase: Omit<ReattachRecord, 'lineage' | 'dataPending'> | null = null;
  /** The record's writes, one after another (each writes the same temporary file). */
  #recordWrites: Promise<void> = Promise.resolve();
  /**
   * The end report is done (or given up on): the scheduler no longer counts this attempt as current, so
   * no agent takes it over (its record is dropped, and no write may bring it back), and the teardown after
   * it (processes, folders, the uid) is neither listed as held nor stopped by a cancel.
   */
  #reported = false;

  /** `rungAt`: when its doorbell rang (before the claim), for the record of where the time went. */
  constructor(readonly dispatch: Dispatch, private readonly deps: AttemptDeps, rungAt: number, adopted: ReattachRecord | null = null) {
    this.#adopted = adopted;
    this.#recorded = adopted !== null;
    this.#marks.doorbell = rungAt;
    this.#dir = path.join(deps.workDir, `${dispatch.run_id}-a${dispatch.attempt}`);
    this.#redact = secretMasker(dispatch.secrets ?? {});
    this.#pipeline = parsePipeline(dispatch.pipeline);
    // The attempt's parts warn in the agent's log under its run; `err` only when there is one.
    const warn = (msg: string, err?: unknown) => deps.log.warn({ run: dispatch.run_id, ...(err === undefined ? {} : { err: errorMessage(err) }) }, msg);
    this.#checkpoints = new RunCheckpoints({
      runId: dispatch.run_id!, attempt: Number(dispatch.attempt), bucket: dispatch.bucket!, attemptDir: this.#dir, folderName: 'checkpoint',
      storage: () => this.#storage(),
      retry: (signal) => ({ ...this.#transfers('upload'), signal }),
      say: (line) => this.logs.line('system', line),
      warn,
      committed: (p, signal) => this.#reportCheckpoint(p, signal),
      // A gang's member: each of its ranks is watched for silence (--stall-timeout: one silent rank stalls the gang).
      ranks: memberRanks(dispatch.gang ? { nodeRank: dispatch.gang.node_rank!, procs: dispatch.gang.procs_per_agent! } : null),
    });
    this.logs = new LogShipper({
      redact: this.#redact,
      sink: {
        append: async (lines, signal) => {
          const res = await deps.link.appendLogs({ run_id: dispatch.run_id, lease: dispatch.lease, lines }, signal);
          // The scheduler acknowledges the highest seq it stored, 0 for an attempt it no longer holds.
          return { stop: res.stop, taken: Number(res.acked_seq) >= lines.at(-1)!.seq };
        },
      },
      // Beside the attempt's folder, which the first step empties.
      spillFile: `${this.#dir}.log-spill.jsonl`,
      ...(deps.logSpillBytes ? { maxSpillBytes: deps.logSpillBytes } : {}),
      // Lines keep going out after a kill (the last ones say why it ended), until the agent gives up.
      signal: deps.reportSignal ?? new AbortController().signal,
      isRetryable: isRetryableGrpc,
      onStop: () => this.stop({ outcome: AttemptOutcome.Killed, reason: 'killed' }),
      onWarn: warn,
      onAcked: (seq) => this.#spool?.acked(seq),
    });
    if (deps.containment?.cgroupBase) {
      this.#spool = new Spool({
        file: `${this.#dir}.spool`,
        give: (stream, text) => { this.logs.give(stream, text); return this.logs.lastSeq; },
        onRunOutput: (line) => this.#checkpoints.activity(line),
        onWarn: warn,
      });
      // An adopted attempt's spool is read on from its position once the agent has registered (#adopt).
      if (!adopted) {
        this.#spool.create();
        this.#spool.start();
        this.#spoolRead = true;
      }
      const spool = this.#spool;
      this.logs.tee = (stream, text) => spool.write(stream, text);
    }
    this.metrics = new RunMetrics({
      sink: {
        append: async (records, signal) => {
          const res = await deps.link.appendMetrics({ run_id: dispatch.run_id, lease: dispatch.lease, records: records.map((r) => ({ seq: r.seq, points_json: r.text })) }, signal);
          return { stop: res.stop };
        },
      },
      spillFile: `${this.#dir}.metrics-spill.jsonl`,
      signal: deps.reportSignal ?? new AbortController().signal,
      isRetryable: isRetryableGrpc,
      onStop: () => this.stop({ outcome: AttemptOutcome.Killed, reason: 'killed' }),
      onWarn: (msg, err) => warn(`metrics: ${msg}`, err),
      onRunWarning: (msg) => this.logs.line('system', msg),
    });
    this.done = this.#run();
  }

  get runId(): string { return this.dispatch.run_id!; }
  /** The run's copy of its package (it need not be there yet: see #prepareProcess). */
  get #pkgDir(): string { return path.join(this.#dir, 'package'); }
  get lease(): number { return Number(this.dispatch.lease); }
  get phase(): Phase { return this.#phase; }

  #enter(phase: Phase): void {
    this.#phase = phase;
    this.#mark(phase);
  }

  #mark(step: string): void {
    this.#marks[step] = Date.now();
  }

  /** Ends the attempt for the given reason (first reason wins): whatever step runs is aborted. */
  stop(end: EndReason): void {
    // Once reported there is nothing left to stop: the teardown goes on either way, and a "stopping" line
    // (with a cancel's "killed") would be logged for a run that had ended as reported.
    if (this.#end || this.#reported) return;
    this.#end = end;
    this.deps.log.info({ run: this.runId, outcome: end.outcome, reason: end.reason, phase: this.#phase }, 'stopping attempt');
    // The run gets SIGTERM now: what it commits in the grace, and the folder as it leaves it, still go up.
    this.#checkpoints.stopping(this.deps.killGraceMs);
    this.#abort.abort(new Stopped(end.reason));
  }

  /** Whether its end report is done (or given up on): only its teardown is left. */
  get reported(): boolean { return this.#reported; }

  /** What a detaching agent does with this attempt (agent/detach.ts). */
  get onDetach(): OnDetach {
    if (this.#phase === 'reporting') return 'finish';
    if (this.#recorded) return 'leave';
    return this.#spawned ? 'drain' : 'hand back';
  }

  /**
   * The agent detaches (agent/detach.ts), leaving this attempt's run to the agent restarted after it: what
   * was read of the spool is shipped (until `giveUp`), then nothing more. Every line this agent shipped
   * is one of the spool's, numbered by its place there, and the position the scheduler acknowledged is
   * written down: the next agent reads on from it, so no line is lost or stored twice. Nothing is stopped:
   * the run, its supervisor and its cgroup go on, and the process ends with the agent's.
   */
  async detach(giveUp: AbortSignal): Promise<void> {
    const spool = this.#spool;
    // Not read yet (taken over, the agent not registered): spool and position are left as they are.
    if (!spool || !this.#spoolRead) return;
    // The agent's own lines from here on go only to the spool, never straight to the shipper.
    this.logs.tee = (stream, text) => { spool.write(stream, text); return true; };
    await spool.pause();
    const gaveUp = new Promise<boolean>((resolve) => {
      if (giveUp.aborted) resolve(false);
      giveUp.addEventListener('abort', () => resolve(false), { once: true });
    });
    // The metric points read so far too: the next agent does not read the run's metrics file again.
    const [shipped, points] = await Promise.all([Promise.race([this.logs.flush(), gaveUp]), Promise.race([this.metrics.flush(), gaveUp])]);
    if (!shipped) this.deps.log.warn({ run: this.runId, lastSeq: this.logs.lastSeq, ackedSeq: this.logs.ackedSeq }, 'detaching: not every log line read was shipped; the agent that takes the run over ships them from the spool');
    if (!points) this.deps.log.warn({ run: this.runId, ...this.metrics.stats() }, 'detaching: the last metric points of the attempt were not shipped');
    this.logs.close();
    this.metrics.close();
    await spool.close(false);
  }

  /**
   * A phase's own deadline (issue 20: every phase has one): `work` past `limitMs` ends the attempt Failed,
   * saying which limit, as a kill would (whatever step is running is aborted). Retries of a transfer are
   * bounded in number, not in time: a store that accepts connections and never answers would otherwise
   * hold the run, its slot and its GPUs for ever.
   */
  async #within<T>(limitMs: number | undefined, flag: string, words: string, work: () => Promise<T>): Promise<T> {
    if (!limitMs) return work();
    const timer = setTimeout(() => this.stop({ outcome: AttemptOutcome.Failed, reason: `${words} did not finish within --${flag} (${limitMs / 1000} s)` }), limitMs);
    try {
      return await work();
    } finally {
      clearTimeout(timer);
    }
  }

  async #run(): Promise<void> {
    let result: Result;
    try {
      result = this.#adopted ? await this.#adopt(this.#adopted) : await this.#steps();
    } catch (err) {
      result = this.#failure(err);
    }
    if (this.#end && result.outcome !== AttemptOutcome.Succeeded) result = { ...result, ...this.#end };
    if (result.reason && result.outcome !== AttemptOutcome.Succeeded) this.logs.line('system', `[trainyard] ${result.outcome}: ${result.reason}`);
    this.#enter('reporting');
    agentMetrics.attempts.inc({ outcome: result.outcome });
    await this.#finish(result);
    this.#reported = true;
    this.#pendingPlace?.release();
    this.logs.close();
    this.metrics.close();
    await this.#recordWrites;
    await dropRecord(this.#dir, this.#cgroup?.dir ?? this.#adopted?.cgroup ?? null).catch(() => {});
    await this.#spool?.close(true);
    await this.#releaseProcess();
    // Its processes gone, its data folder (which its uid could not write) may be the next run's spare
    // rather than thousands of unlinks now beside that run's start, and as many links after it.
    if (this.#dataMade && await this.deps.dataCache?.recycle(this.#dataMade.made, this.#dataMade.dir)) {
      this.deps.log.info({ run: this.runId, files: this.#dataMade.made.files }, 'the run\'s data folder is kept for the next run of its dataset');
    }
    // From descriptors: another run of the same user may still swap a folder in it for a link.
    await removeTree(this.#dir).catch((err: unknown) => this.deps.log.warn({ run: this.runId, err: errorMessage(err) }, 'could not remove the attempt\'s folder'));
    // Last: its cgroup is empty and its folder gone; what is left of the uid elsewhere dies with the lease.
    await this.#uid?.release().catch((err: unknown) => this.deps.log.warn({ run: this.runId, err: errorMessage(err) }, 'could not give back the run uid'));
  }

  /** The uid the run's code runs as; null: the agent's own. */
  get #user(): RunAsUser | null { return this.#uid?.user ?? null; }

  async #steps(): Promise<Result> {
    const d = this.dispatch;
    // The claim made the run Packaging (scheduler/runs/claim.ts): nothing to report until Running.
    this.logs.line('system', `[trainyard] attempt ${d.attempt} on agent; package ${d.package} ${d.version}, dataset ${d.dataset}`);
    // Checked again here, before anything is fetched or spawned: a dispatch is not trusted.
    const runEnv = checkRunEnv(d.env, this.#pipeline);
    const gpus = gpuUuids((d.gpu_indices ?? []).map(Number), this.deps.gpus ?? []);
    try {
      this.#resume = resumePointer(d.resume_pointer_json);
    } catch (err) {
      throw new RefusedDispatch(`refused by the agent: the checkpoint to resume from: ${errorMessage(err)}`);
    }
    await removeTree(this.#dir);
    const pool = this.deps.containment?.pool;
    if (pool) this.#uid = await pool.lease();
    await mkdir(this.#dir, { recursive: true });
    // The attempt's folder stays the agent's (the run cannot rename data/ or swap in links beside it), and
    // only the run's own group may enter it: no other run, whatever its project, can reach its data,
    // package or outputs.
    await chmod(this.#dir, this.#user ? 0o750 : 0o700);
    if (this.#user) await chown(this.#dir, 0, this.#user.gid);
    // Empty on a fresh start; a resumed attempt finds its checkpoint there (filled beside the data).
    await mkdirOnce(this.#checkpoints.folder);
    const folders = folderPaths(this.#dir, this.#pipeline, Boolean(d.eval_dataset));
    const startAt = Date.now() / 1000;
    // Claimed ready (an earlier run here found this version's venv ready), the run's process is set up and
    // primed at once, beside the package's copy, instead of after it: the interpreter's start is then done
    // by the time the data is local. Never rejects (null: set up after the package, as otherwise).
    const early = this.#earlyProcess(folders, runEnv, gpus);
    // Two branches at once: the data is made local while the package is fetched, its venv found (or
    // built) and the run's process set up; Running is reported as soon as the venv is there. The run's code
    // starts only when both are done and Running was acknowledged.
    const [made, ready] = await this.#together(
      this.#within(this.deps.downloadTimeoutMs, 'download-timeout', phaseWords.fetching_data, () => this.#fetchData(folders)).then(async (made) => {
        if (this.#resume) await this.#checkpoints.restore(this.#resume, this.#abort.signal);
        return made;
      }).catch((err: unknown) => { if (!this.#abort.signal.aborted) this.#phase = 'fetching_data'; throw err; }),
      (async () => {
        try {
          const pkgDir = await this.#within(this.deps.downloadTimeoutMs, 'download-timeout', phaseWords.fetching_package, () => this.#fetchPackage());
          const venv = await this.#buildEnv(pkgDir);
          const env = await venvInfo(venv);
          this.deps.packages?.markReady(d.package_sha256 ?? '', venv);
          // Claimed ready, the claim already made the run Running.
          const running = d.running ? Promise.resolve() : this.#report(RunStatus.Running).then(() => this.#mark('running_reported'));
          running.catch(() => {}); // awaited below; a failure first must not leave it unhandled
          const user = this.#user;
          if (user) await chownTree(pkgDir, user.uid, user.gid);
          let proc = await early;
          if (proc) this.#setUpEarly = true;
          if (proc && proc.venv !== venv) {
            // The venv is not the one the earlier run found (rebuilt elsewhere): that child is called off.
            this.deps.log.info({ run: this.runId, expected: proc.venv, venv }, 'the run\'s process was set up for another venv; setting it up again');
            await this.#releaseProcess();
            this.#setUpEarly = false;
            proc = null;
          }
          proc ??= await this.#prepareProcess(venv, folders, runEnv, gpus);
          return { pkgDir, venv, env, running, proc };
        } finally {
          // Settled before the attempt can end: what it set up is then known to #run, which removes it.
          await early;
        }
      })(),
    );
    // The lineage is of exactly what was made local: hashed as it was written, or (a large file pulled into
    // the cache, deferred hashes) from the cache's entry, which the run cannot write, while the run starts.
    const pending = made.data instanceof Promise ? made.data : null;
    this.#lineageObj = this.#lineage(ready.env, pending ? null : made.data as DataManifest, made.evalData, gpus);
    this.#dataPending = pending !== null;
    const lineageIn = pending?.then((m) => {
      this.#lineageObj = this.#lineage(ready.env, m, made.evalData, gpus);
      this.#dataPending = false;
    }, (err: unknown) => {
      // Neither the cache's entries nor the run's own folder could be read (the agent's disk): the run's
      // outcome stands, its lineage has no data manifest, and says why in the log.
      this.logs.line('system', `[trainyard] the lineage's data manifest could not be made: ${errorMessage(err)}`);
      this.#dataPending = false;
    }).then(() => {
      void this.#writeRecord(false).catch((err: unknown) => this.deps.log.warn({ run: this.runId, err: errorMessage(err) }, 'could not write the run\'s lineage down for a restarted agent; one would hash its data folder again'));
    });
    lineageIn?.catch(() => {}); // awaited below; a run that fails first does not wait for it
    this.#startAt = startAt;
    await ready.running;
    const ran = await this.#train(ready.proc, folders);
    if (!ran.ok) return { outcome: AttemptOutcome.Failed, reason: ran.reason, phases: ran.phases };
    await this.#releaseCapacity();
    const up = await this.#within(this.deps.uploadTimeoutMs, 'upload-timeout', phaseWords.uploading, () => this.#upload(folders, ran.phases));
    await lineageIn;
    return { outcome: AttemptOutcome.Succeeded, reason: '', startAt, endAt: Date.now() / 1000, score: ran.score, phases: ran.phases, lineage: this.#lineageObj, ...up };
  }

  /**
   * An attempt taken over from an agent that was restarted (agent/reattach.ts): its run went on under its
   * supervisor meanwhile. Its log is shipped on from where the scheduler had acknowledged it, the run is
   * watched until its cgroup is empty (it may have ended already: its exit is in the spool), and the rest
   * is as for a run started here: the result file, the uploads, the end report. A stop (a kill asked
   * while the agent was away, the lease lost) stops the run as any.
   */
  async #adopt(rec: ReattachRecord): Promise<Result> {
    const d = this.dispatch;
    await this.deps.linkReady;
    this.#enter('training');
    this.#startAt = rec.startAt;
    this.#lineageObj = rec.lineage;
    const spool = this.#spool;
    if (!spool) throw new TrainyardError(ErrorCodes.FailedPrecondition, 'the agent restarted without cgroups: the run it had started cannot be watched, and was not taken over');
    const pos = await readPos(spool.file);
    this.logs.resumeAt(pos.seq);
    spool.reopen(pos);
    spool.start();
    this.#spoolRead = true;
    const cgroup = RunCgroup.existing(rec.cgroup);
    this.#cgroup = cgroup;
    this.logs.line('system', `[trainyard] agent ${this.deps.agentName} restarted; the run went on meanwhile and is taken over (attempt ${d.attempt})`);
    const timeoutMs = Number(d.timeout_seconds ?? 0) * 1000;
    const proc = new AdoptedProcess(cgroup, spool, {
      killGraceMs: this.deps.killGraceMs, signal: this.#abort.signal,
      deadlineMs: timeoutMs > 0 ? rec.startedAtMs + timeoutMs : 0,
      onTimeout: () => this.stop({ outcome: AttemptOutcome.TimedOut, reason: 'timed out' }),
      onWarn: (msg) => this.deps.log.warn({ run: this.runId }, msg),
    });
    const interval = Number(d.checkpoint_interval_seconds ?? 0);
    this.#checkpoints.watch({
      intervalMs: interval > 0 ? interval * 1000 : 0,
      stallMs: Number(d.stall_timeout_seconds ?? 0) * 1000,
      onStall: (reason) => this.stop({ outcome: AttemptOutcome.Stalled, reason }),
    });
    let exit: ProcessExit;
    try {
      exit = await proc.exited;
      this.#mark('exited');
      if (this.#end && this.#end.outcome !== AttemptOutcome.Failed) await this.#checkpoints.afterStop();
    } finally {
      await this.#checkpoints.unwatch();
    }
    this.#checkStopped();
    const ran = await this.#verdict(exit.code, exit.signal);
    if (!ran.ok) return { outcome: AttemptOutcome.Failed, reason: ran.reason, phases: ran.phases };
    // As for a run started here: its GPUs go back before its outputs go up.
    await this.#releaseCapacity();
    const folders = folderPaths(this.#dir, this.#pipeline, Boolean(d.eval_dataset));
    const up = await this.#within(this.deps.uploadTimeoutMs, 'upload-timeout', phaseWords.uploading, () => this.#upload(folders, ran.phases));
    // The agent before stopped while the pull's hashes were still coming: the data folder is hashed here.
    const lineage = !rec.dataPending ? rec.lineage : { ...rec.lineage, data: await manifestOfFolder(folders.data).then(manifestJson, (err: unknown) => {
      this.logs.line('system', `[trainyard] the lineage's data manifest could not be made: ${errorMessage(err)}`);
      return null;
    }) };
    return { outcome: AttemptOutcome.Succeeded, reason: '', startAt: rec.startAt, endAt: Date.now() / 1000, score: ran.score, phases: ran.phases, lineage, ...up };
  }

  /**
   * Both steps' results; the first failure aborts the attempt's work (the other step stops its transfer or
   * pip) and is thrown once both have settled, so nothing is still writing in the attempt's folder.
   */
  async #together<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
    let first: { err: unknown } | null = null;
    const failed = (err: unknown): never => {
      if (!first) {
        first = { err };
        if (!this.#abort.signal.aborted) this.#abort.abort(err);
      }
      throw err;
    };
    const settled = await Promise.allSettled([a.catch(failed), b.catch(failed)]);
    if (first) throw (first as { err: unknown }).err;
    return [(settled[0] as PromiseFulfilledResult<A>).value, (settled[1] as PromiseFulfilledResult<B>).value];
  }

  /**
   * Every process of the run has exited (#train waits for its cgroup to be empty): its GPUs and slot go back
   * to the scheduler now, so the next run starts while this one's outputs upload. Only with a place among
   * the agent's pending uploads (--max-pending-uploads; waited for, GPUs still held, when all are taken).
   * A refused or failed report is not the attempt's failure: it then keeps them until its end, as before.
   */
  async #releaseCapacity(): Promise<void> {
    const place = await this.deps.pendingUploads?.take(this.#abort.signal);
    if (!place) return;
    this.#pendingPlace = place;
    // Beside the upload, not before it: a scheduler that is away (or slow) must not hold the outputs back,
    // nor delay the end report by a round trip. A stop it answers aborts the upload as any stop does.
    // Bounded, and a late one changes nothing (the release is guarded by Running).
    void this.deps.link.reportStatus({ run_id: this.runId, lease: this.lease, status: 'released' },
      deadline(RELEASE_REPORT_MS, this.#abort.signal)).then((res) => {
      if (res.stop) { this.stop({ outcome: AttemptOutcome.Killed, reason: 'killed' }); return; }
      this.#mark('released');
      this.deps.log.info({ run: this.runId, attempt: this.dispatch.attempt, at: Date.now() }, 'GPUs and slot released; uploading');
    }, (err: unknown) => {
      if (this.#abort.signal.aborted) return;
      this.deps.log.warn({ run: this.runId, err: errorMessage(err) }, 'could not release the attempt\'s GPUs before its upload; they go back with its end');
    });
  }


  /** A checkpoint is complete in the bucket: the scheduler learns its time and size (checkpoint-report.ts). Best effort. */
  async #reportCheckpoint(p: CheckpointPointer, signal: AbortSignal): Promise<void> {
    try {
      await this.deps.link.reportStatus({ run_id: this.runId, lease: this.lease, status: 'checkpointed', checkpoint_at: p.committed_at, checkpoint_bytes: p.bytes },
        deadline(CHECKPOINT_REPORT_MS, signal));
    } catch (err) {
      this.deps.log.warn({ run: this.runId, seq: p.seq, err: errorMessage(err) }, 'could not report a committed checkpoint to the scheduler');
    }
  }

  /** Tells the scheduler the attempt's status; throws Stopped when the scheduler says it is no longer current. */
  async #report(status: string): Promise<void> {
    const res = await this.deps.link.reportStatus({ run_id: this.runId, lease: this.lease, status }, this.#abort.signal);
    if (res.stop) this.stop({ outcome: AttemptOutcome.Killed, reason: 'killed' });
    this.#checkStopped();
  }

  #checkStopped(): void {
    if (this.#end) throw new Stopped(this.#end.reason);
  }

  #transfers(direction: Direction): RetryOptions {
    return {
      retries: this.deps.transferRetries,
      signal: this.#abort.signal,
      onRetry: (err, n, ms) => {
        agentMetrics.transferErrors.inc({ direction });
        this.logs.line('system', `[trainyard] storage error, retry ${n} in ${Math.round(ms)} ms: ${errorMessage(err)}`);
      },
    };
  }

  /** A transfer, counted in the agent's metrics (bytes moved, or a failure). */
  #counted<T>(direction: Direction, work: Promise<T>, bytesOf: (r: T) => number): Promise<T> {
    return countTransfer(direction, work, bytesOf, this.#abort.signal);
  }

  /**
   * The attempt's storage client: built from the keys the claim brought, and rebuilt with fresh ones from
   * the scheduler when they near their expiry (a long run). The scheduler issues none once the attempt has
   * ended, so a stale attempt cannot keep writing.
   */
  async #storage(): Promise<Minio.Client> {
    const d = this.dispatch;
    if (!this.#storageClient) {
      this.#storageClient = this.#clientFor(d.storage!);
    } else if (this.#storageExpiresAt - Date.now() < RENEW_BEFORE_MS) {
      const fresh = await this.deps.link.renewStorage({ run_id: this.runId, lease: this.lease }, this.#abort.signal);
      this.#storageClient = this.#clientFor(fresh);
      this.logs.line('system', '[trainyard] storage credentials renewed');
    }
    return this.#storageClient;
  }

  /**
   * Read-only keys for the GETs of a pull of many files (DataCache READ_KEYS_FROM_FILES): asked for once
   * (the files in flight share the answer), again when they near their expiry, as #storage's are.
   */
  #readStorage(): Promise<Minio.Client> {
    if (this.#readKeysRefused) return Promise.reject(this.#readKeysRefused);
    const held = this.#readKeys;
    // null: still being asked for (the files in flight share that one call).
    if (held && (held.expiresAt === null || held.expiresAt - Date.now() >= RENEW_BEFORE_MS)) return held.client;
    // Bounded: the link retries a scheduler that is away for as long as the attempt lasts, and a pull that
    // can go on with the attempt's own keys must not wait on it.
    const asked = this.deps.link.renewStorage({ run_id: this.runId, lease: this.lease, read_only: true }, deadline(READ_KEYS_WITHIN_MS, this.#abort.signal));
    const entry: { client: Promise<Minio.Client>; expiresAt: number | null } = {
      client: asked.then((c) => {
        entry.expiresAt = Number(c.expires_at_ms);
        return this.#newClient(c);
      }),
      expiresAt: null,
    };
    entry.client.catch((err: unknown) => {
      if (this.#readKeys !== entry) return;
      // Not asked again by every later file of the pull (thousands): the attempt's keys serve the rest.
      this.#readKeys = null;
      this.#readKeysRefused = err instanceof Error ? err : new Error(String(err));
      if (!this.#abort.signal.aborted) this.deps.log.warn({ run: this.runId, err: errorMessage(err) }, 'no read-only storage keys for a pull of many files; it goes on with the attempt\'s own');
    });
    this.#readKeys = entry;
    return entry.client;
  }

  #clientFor(c: { access_key?: string; secret_key?: string; session_token?: string; expires_at_ms?: number | string | { toString(): string } }): Minio.Client {
    this.#storageExpiresAt = Number(c.expires_at_ms);
    return this.#newClient(c);
  }

  /** A storage client with these keys (the attempt's, or its read-only ones). */
  #newClient(c: { access_key?: string; secret_key?: string; session_token?: string }): Minio.Client {
    return createMinioClient({ minioEndpoint: this.deps.minioEndpoint, minioAccessKey: c.access_key ?? '', minioSecretKey: c.secret_key ?? '', sessionToken: c.session_token ?? '' });
  }

  async #fetchPackage(): Promise<string> {
    this.#enter('fetching_package');
    const d = this.dispatch;
    const pkgDir = this.#pkgDir;
    const extract = async (into: string) => extractPackage({
      client: await this.#storage(), bucket: d.bucket!, key: d.package_object_key!, sha256: d.package_sha256!, zip: path.join(this.#dir, 'input.zip'),
      into, limits: this.deps.zipLimits, retry: this.#transfers('download'), counted: (work) => this.#counted('download', work, (g) => g.bytes),
    });
    if (this.deps.packages) {
      // A version this agent ran before is copied from its cache (agent/package-cache.ts), keyed by that digest.
      const hit = await this.deps.packages.copyTo(d.package_sha256!, pkgDir, extract);
      if (hit) this.logs.line('system', `[trainyard] package ${d.package} ${d.version} from this agent's cache (SHA-256 ${d.package_sha256!.slice(0, 12)}…)`);
    } else {
      await extract(pkgDir);
    }
    this.#checkStopped();
    return pkgDir;
  }

  async #buildEnv(pkgDir: string): Promise<string> {
    this.#enter('building_env');
    const c = this.deps.containment;
    const uid = this.#uid;
    // Its own deadline: a pip that hangs on an index, or a build lock that is never released, fails the
    // run saying so (issue 20 #3); train.py's --timeout starts only once the environment is there.
    const limitMs = this.deps.packagingTimeoutMs ?? 0;
    const limit = limitMs > 0 ? deadline(limitMs) : null;
    const signal = limit ? AbortSignal.any([this.#abort.signal, limit]) : this.#abort.signal;
    try {
      const venv = await ensureVenv(contained(this.deps.venv, c, uid), path.join(pkgDir, 'requirements.txt'), (l) => this.logs.line('system', l), signal);
      this.#checkStopped();
      return venv;
    } catch (err) {
      if (limit?.aborted && !this.#abort.signal.aborted) throw new PackagingError(`the environment was not ready within --packaging-timeout (${limitMs / 1000} s)`);
      throw err;
    }
  }

  /**
   * Makes the dataset (and a full pipeline's evaluation dataset) local in `folders` (folderPaths), each file
   * hashed as it is written: what it returns is the lineage's manifest of exactly what was made local.
   */
  async #fetchData(folders: Folders): Promise<{ data: DataManifest | Promise<DataManifest>; evalData: DataManifest | null }> {
    // Not #enter: this step runs beside the package's, whose phase a failure there must name.
    this.#mark('fetching_data');
    this.#data = 'fetching';
    const d = this.dispatch;
    const cache = this.deps.dataCache ?? noDataCache;
    const fetch = async (prefix: string, into: string, deferHashes: boolean, generation: number) => this.#counted('download',
      cache.makeLocal(await this.#storage(), d.bucket!, prefix, into, this.#transfers('download'), {}, { readClient: () => this.#readStorage(), deferHashes, generation, claimedAfter: this.#marks.doorbell }), (r: MadeLocal) => r.bytes - r.hitBytes);
    const said = (r: MadeLocal) => `${r.files} files, ${r.bytes} bytes made local${r.spare ? ' (linked ahead from this agent\'s cache after the last run of it)' : r.staged ? ' (prepared while the run before it trained)' : r.hits ? ` (${r.hits} from this agent's cache)` : ''}${r.readKeys ? ' with read-only keys' : ''}${r.listingTrusted ? ', as this agent listed this generation of it shortly before' : ''}`;
    // The dataset's large files may be hashed after the pull (MakeLocalOptions deferHashes); the evaluation
    // dataset's never: its folder is the test folder, which process_data writes beside.
    const got = await fetch(d.dataset_prefix!, folders.data, true, Number(d.dataset_generation ?? 0));
    await mkdir(folders.data, { recursive: true, mode: 0o755 });
    this.#dataMade = { made: got, dir: folders.data };
    const relisted = (r: MadeLocal, what: string) => {
      if (r.relisted) this.logs.line('system', `[trainyard] ${what}: this agent's listing of a moment ago was out of date (${r.relisted}); listed it again`);
    };
    relisted(got, `dataset ${d.dataset}`);
    this.logs.line('system', `[trainyard] dataset ${d.dataset}: ${said(got)}`);
    for (const f of [folders.training, folders.test, folders.scratch]) if (f) await mkdir(f);
    let ev: MadeLocal | null = null;
    if (d.eval_dataset && folders.test) {
      ev = await fetch(d.eval_dataset_prefix!, folders.test, false, Number(d.eval_dataset_generation ?? 0));
      relisted(ev, `evaluation dataset ${d.eval_dataset}`);
      this.logs.line('system', `[trainyard] evaluation dataset ${d.eval_dataset}: ${said(ev)} at test_data_directory (process_data's test split goes elsewhere)`);
    }
    this.#mark('data_local');
    this.#data = 'local';
    this.#checkStopped();
    const data = this.#manifestOf(got, folders.data, 'the pull');
    if (data instanceof Promise) data.catch(() => {}); // the attempt may end before it is asked for
    // The evaluation dataset's own downloads are hashed as they come, but a file it shares with a pull whose
    // hash is still coming (the same dataset, say) waits for that hash: its manifest is whole before
    // process_data can write beside it.
    // (At most the hashing of the files it shares, on the hasher's thread: about a second per GiB.)
    let evalData: DataManifest | null = null;
    if (ev) {
      evalData = await this.#manifestOf(ev, folders.test!, 'the evaluation data');
      this.#checkStopped();
    }
    return { data, evalData };
  }

  /**
   * The manifest of what a make-local put in `folder`: at once, or once the hashes that come after it are in
   * (MadeLocal.hashed); if one of those cannot be had, the folder hashed from disk instead.
   */
  #manifestOf(made: MadeLocal, folder: string, what: string): DataManifest | Promise<DataManifest> {
    // Kept on `made`: a folder kept for the next run (DataCache.recycle) carries its manifest along.
    if (!made.hashed) return made.manifest ??= manifestOf(made.entries);
    const from = Date.now();
    return made.hashed.then(() => {
      this.deps.log.info({ run: this.runId, files: made.hashedAfter, ms: Date.now() - from, what }, 'the hashes of the pull\'s large files are in (hashed after it, for the lineage)');
      return made.manifest ??= manifestOf(made.entries);
    }, (err: unknown) => {
      this.deps.log.warn({ run: this.runId, err: errorMessage(err), what }, 'a file could not be hashed from the cache; hashing its folder');
      return manifestOfFolder(folder);
    });
  }

  /**
   * Writes the record a restarted agent takes the run over from (agent/reattach.ts), with the lineage as it
   * is now: `first` when the run's process has just started; again once the pull's hashes are in, if that
   * first write was made. Never after the attempt has ended (its record is dropped then).
   */
  #writeRecord(first: boolean): Promise<void> {
    const write = this.#recordWrites.then(async () => {
      if (this.#reported || !this.#recordBase || (!first && !this.#recorded)) return;
      await saveRecord(this.#dir, { ...this.#recordBase, lineage: this.#lineageObj, ...(this.#dataPending ? { dataPending: true } : {}) });
      this.#recorded = true;
    });
    this.#recordWrites = write.catch(() => {});
    return write;
  }

  /** The agent's part of the run's lineage: data manifests, the venv's Python and packages, the GPUs. */
  #lineage(env: VenvInfo, data: DataManifest | null, evalData: DataManifest | null, gpuUuidList: string[]): object {
    const gpus = (this.deps.gpus ?? []).filter((g) => gpuUuidList.includes(g.uuid ?? '')).map((g) => ({ index: g.index, name: g.name, uuid: g.uuid }));
    return {
      // A full pipeline's evaluation dataset was made local in the test folder (before process_data runs).
      // data: null only in a record written while its hashes were still coming (#dataPending).
      data: data ? manifestJson(data) : null, eval_data: evalData ? manifestJson(evalData) : null,
      environment: { python: env.python, packages: env.packages }, agent: { name: this.deps.agentName, gpus },
    };
  }

  /** #prepareProcess before the package is in place, for a run claimed ready; null when it cannot be. */
  async #earlyProcess(folders: Folders, runEnv: Record<string, string>, gpus: string[]): Promise<Prepared | null> {
    const d = this.dispatch;
    const venv = d.running ? this.deps.packages?.venvOf(d.package_sha256 ?? '') : null;
    if (!venv || !this.deps.warm || needsFreshInterpreter({ ...runEnv, ...(d.secrets ?? {}) })) return null;
    try {
      return await this.#prepareProcess(venv, folders, runEnv, gpus);
    } catch (err) {
      if (!this.#abort.signal.aborted) this.deps.log.warn({ run: this.runId, err: errorMessage(err) }, 'could not set up the run\'s process early; setting it up after the package');
      await this.#releaseProcess();
      return null;
    }
  }

  /**
   * A process set up for this run and not started is called off (it runs nothing of the package), and the
   * attempt's cgroup removed: at the attempt's end, or when the one set up early cannot be used.
   */
  async #releaseProcess(): Promise<void> {
    this.#unstarted?.cancel();
    this.#unstarted = null;
    const cgroup = this.#cgroup;
    this.#cgroup = null;
    await cgroup?.destroy().catch((err: unknown) => this.deps.log.warn({ run: this.runId, cgroup: cgroup.dir, err: errorMessage(err) }, 'could not remove the attempt\'s cgroup'));
  }

  /**
   * Sets up the run's process ahead of its start, while the data is made local: with a warm interpreter,
   * a child forked and become the run's process (session, cgroup, user, output connected), waiting for its
   * environment; otherwise the cgroup a fresh interpreter will be spawned in. Nothing of the run's code runs.
   */
  async #prepareProcess(venv: string, folders: Folders, runEnv: Record<string, string>, gpus: string[]): Promise<Prepared> {
    const d = this.dispatch;
    const { cgroupBase = null } = this.deps.containment ?? {};
    const runAs = this.#user;
    // The package's folder need not be there yet (a run claimed ready sets this up beside the copy); the
    // harness changes into it before it imports train.py.
    const pkgDir = this.#pkgDir;
    // The harness writes its verdict in a folder of its own: with a run user, the only other one it owns.
    // (Made once: a process set up again after one was called off finds them.)
    const resultDir = path.join(this.#dir, 'result');
    const resultFile = path.join(resultDir, 'result.json');
    await mkdirOnce(resultDir);
    const metricsFile = path.join(resultDir, 'metrics.jsonl');
    await this.metrics.create(metricsFile, runAs);
    // A run uid gets a HOME and a TMPDIR of its own per attempt: nothing one run leaves there (~/.local
    // packages, caches, temp files) reaches another run.
    const home = runAs ? path.join(this.#dir, 'home') : (process.env.HOME ?? this.#dir);
    const tmp = runAs ? path.join(this.#dir, 'tmp') : null;
    if (runAs) {
      for (const dir of [home, tmp!]) await mkdirOnce(dir);
      for (const dir of [resultDir, home, tmp!]) await chown(dir, runAs.uid, runAs.gid);
    }
    const pipeline = this.#pipeline;
    const harnessArgs = ['--package-dir', pkgDir, '--data-dir', folders.data, '--result-file', resultFile, '--pipeline', pipeline];
    if (folders.training) harnessArgs.push('--training-dir', folders.training);
    if (folders.test) harnessArgs.push('--test-dir', folders.test);
    if (folders.scratch) harnessArgs.push('--test-scratch-dir', folders.scratch);
    if (this.deps.runDiskBytes) harnessArgs.push('--max-file-bytes', String(this.deps.runDiskBytes));
    this.#checkStopped();
    const secrets = d.secrets ?? {};
    const env = { ...trainEnv({ venv, home, tmp, user: runAs?.name, runEnv, gpuUuids: gpus, runId: this.runId, attempt: Number(d.attempt), folders: {
      ...folderEnv(pipeline, folders), checkpoint_directory: this.#checkpoints.folder, resumed_from: resumedFromEnv(this.#resume ? { ...this.#resume, files: this.#resume.files.length } : null),
    } }), ...secrets, TRAINYARD_METRICS_FILE: metricsFile, ...this.#gangEnv() };
    const cgroupName = `${this.runId}-a${d.attempt}-${process.pid}`;
    // The run's supervisor writes the spool; with a run uid it is that uid's (a warm child drops privileges first).
    if (this.#spool && runAs) {
      await chown(this.#spool.file, 0, runAs.gid);
      await chmod(this.#spool.file, 0o620);
    }
    // A child of the venv's warm interpreter when one can be had: the same process, minus the interpreter's
    // start (and, with a spare child, minus the move into a cgroup).
    const forked = this.deps.warm && !needsFreshInterpreter({ ...runEnv, ...secrets })
      ? await this.deps.warm.fork(venv, { argv: harnessArgs, env, cwd: this.#dir, cgroupBase, cgroupName, user: runAs, spool: this.#spool?.file ?? null })
      : null;
    if (forked) {
      this.#cgroup = forked.cgroup;
      this.#unstarted = forked;
      // Its interpreter start (site-packages) and the harness's set-up overlap the data's fetch; train.py
      // waits for start().
      forked.prime();
    } else if (cgroupBase) {
      this.#cgroup = await RunCgroup.create(cgroupBase, cgroupName);
    }
    this.#mark('prepared');
    return { venv, pkgDir, env, harnessArgs, resultFile, forked };
  }

  /** A gang run's member (agent/gang-env.ts): torchrun's environment for the harness; none for an ordinary run. */
  #gangEnv(): Record<string, string> {
    const g = this.dispatch.gang;
    return g ? gangEnv({ nodeRank: g.node_rank!, nnodes: g.nnodes!, procs: g.procs_per_agent!, masterAddr: g.master_addr!, masterPort: g.master_port! }, this.runId, Number(this.dispatch.attempt)) : {};
  }

  /** A gang's member of node rank >= 1: it makes no version and copies no data; its artifacts go under node-K/. */
  get #memberRank(): number { return this.dispatch.gang?.node_rank ?? 0; }

  /** Starts the run's process (prepared by #prepareProcess) and resolves with the harness's verdict. */
  async #train(p: Prepared, folders: Folders): Promise<{ ok: true; score: number | null; phases: PhaseTime[] } | { ok: false; reason: string; phases: PhaseTime[] }> {
    this.#enter('training');
    const d = this.dispatch;
    const runAs = this.#user;
    // The folders process_data writes are the run uid's; the input data stays the agent's.
    if (runAs) for (const dir of [folders.training, folders.test, folders.scratch]) if (dir) await chown(dir, runAs.uid, runAs.gid);
    // checkpoint_directory is the run's to write (with what was resumed into it).
    if (runAs) await chownTree(this.#checkpoints.folder, runAs.uid, runAs.gid);
    this.#checkStopped();
    const supervise: SuperviseOptions = {
      cwd: p.pkgDir,
      env: p.env,
      cgroup: this.#cgroup ?? undefined,
      onWarn: (msg) => this.deps.log.warn({ run: this.runId }, msg),
      onStdout: (l) => { this.#checkpoints.activity(l); this.logs.line('stdout', l); },
      onStderr: (l) => { this.#checkpoints.activity(l); this.logs.line('stderr', l); },
      killGraceMs: this.deps.killGraceMs,
      timeoutMs: (d.timeout_seconds ?? 0) * 1000,
      onTimeout: () => this.stop({ outcome: AttemptOutcome.TimedOut, reason: 'timed out' }),
      signal: this.#abort.signal,
    };
    // Measured from now: what the package and the data took is the agent's doing, not the run's.
    const disk = this.deps.runDiskBytes
      ? await DiskWatch.start(this.#dir, this.deps.runDiskBytes, DISK_SAMPLE_MS, (reason) => this.stop({ outcome: AttemptOutcome.Failed, reason }))
      : null;
    let proc: SupervisedProcess;
    if (p.forked) {
      proc = new SupervisedProcess(p.forked.child, supervise);
      this.#unstarted = null;
      p.forked.start();
    } else {
      const python = path.join(p.venv, 'bin', 'python');
      const args = ['-u', harnessPath(), ...p.harnessArgs];
      // setpriv by its absolute path: the run's PATH starts with the venv's bin/, where a wheel may put one.
      const helpers = this.deps.containment?.helpers;
      let cmd = runAs && helpers ? asUser(helpers, runAs, python, args) : { command: python, args };
      // Under its supervisor (agent/reattach.ts), which keeps the output and the exit status in the spool.
      if (this.#spool && helpers) cmd = { command: helpers.python, args: ['-I', '-S', '-u', supervisorPath(), this.#spool.file, '--', cmd.command, ...cmd.args] };
      proc = SupervisedProcess.spawn(cmd.command, cmd.args, supervise);
    }
    this.#spawned = true;
    if (this.#spool && this.#cgroup && proc.pid) {
      // From here the run outlives this agent: a restarted one takes it over from this record.
      this.#recordBase = { version: 1, dispatch: d, cgroup: this.#cgroup.dir, pid: proc.pid, startedAtMs: Date.now(), startAt: this.#startAt, user: runAs };
      await this.#writeRecord(true).catch((err: unknown) => this.deps.log.warn({ run: this.runId, err: errorMessage(err) }, 'could not write the attempt down for a restarted agent; the run ends with this agent'));
    }
    this.deps.log.info({ run: this.runId, attempt: d.attempt, pid: proc.pid, warm: p.forked !== null, early: this.#setUpEarly, at: Date.now() }, 'train.py started');
    this.#mark('spawned');
    this.metrics.start();
    const sys = this.deps.sysSample;
    const stopSampler = sys && sys.everyMs > 0
      ? startSampler({ cgroupDir: this.#cgroup?.dir ?? null, gpuUse: sys.gpuUse, gpuUuids: (p.env.CUDA_VISIBLE_DEVICES ?? '').split(',').filter(Boolean), everyMs: sys.everyMs, onSample: (v) => this.metrics.sample(v) })
      : null;
    proc.exited.catch(() => disk?.finish().catch(() => null));
    const interval = Number(d.checkpoint_interval_seconds ?? 0);
    this.#checkpoints.watch({
      intervalMs: interval > 0 ? interval * 1000 : 0,
      stallMs: Number(d.stall_timeout_seconds ?? 0) * 1000,
      onStall: (reason) => this.stop({ outcome: AttemptOutcome.Stalled, reason }),
    });
    let exit: Awaited<typeof proc.exited>;
    try {
      exit = await proc.exited.finally(() => stopSampler?.());
      this.#mark('exited');
      await this.metrics.finish();
      // Stopped by the agent (kill, drain, stall, timeout): the folder as the run left it, within the grace.
      if (this.#end && this.#end.outcome !== AttemptOutcome.Failed) await this.#checkpoints.afterStop();
    } finally {
      await this.#checkpoints.unwatch();
    }
    const { code, signal } = exit;
    // Every process of the run is gone (proc.exited waits for its cgroup to be empty): one last measure.
    const overDisk = await disk?.finish();
    this.#checkStopped();
    if (overDisk) return { ok: false, reason: overDisk, phases: [] };
    return this.#verdict(code, signal);
  }

  /** What the run's exit and its result file say (once every process of the run is gone). */
  async #verdict(code: number | null, signal: NodeJS.Signals | null): Promise<{ ok: true; score: number | null; phases: PhaseTime[] } | { ok: false; reason: string; phases: PhaseTime[] }> {
    let verdict: Verdict | null = null;
    try {
      verdict = JSON.parse((await this.#readResult())?.toString('utf8') ?? 'null') as Verdict | null;
    } catch (err) {
      if (err instanceof NotPlainPath) return { ok: false, reason: `the result file was refused: ${err.message}`, phases: [] };
      verdict = null; // not JSON: as if there were none
    }
    // What the run's own process wrote: numbers are checked before they go anywhere.
    const phases = (Array.isArray(verdict?.phases) ? verdict.phases : []).slice(0, 8).filter((x) => typeof x?.name === 'string' && typeof x.started_at === 'number' && typeof x.ended_at === 'number')
      .map((x) => ({ name: x.name, started_at: x.started_at, ended_at: x.ended_at }));
    const pipeline = this.#pipeline;
    if (code === 0 && verdict?.ok) {
      const score = typeof verdict.score === 'number' && Number.isFinite(verdict.score) ? verdict.score : null;
      if (pipeline !== Pipeline.Train && score === null) return { ok: false, reason: 'evaluate() returned no score', phases };
      return { ok: true, score, phases };
    }
    if (verdict && !verdict.ok && verdict.error) return { ok: false, reason: this.#redact(verdict.error.summary || verdict.error.message || 'train.py failed'), phases };
    return { ok: false, reason: signal ? `train.py was killed by ${signal}` : `train.py exited with code ${code}`, phases };
  }

  /**
   * The harness's result file (#prepareProcess), which the run's code may have replaced with anything: read
   * from the attempt's folder down without following a link, opened non-blocking (a FIFO cannot hold the
   * agent, or a thread of its pool), only when it is a regular file of at most RESULT_FILE_MAX_BYTES;
   * anything else throws NotPlainPath. Null: there is none.
   */
  async #readResult(): Promise<Buffer | null> {
    const root = await AnchoredDir.open(this.#dir);
    try {
      const dir = await root.openDir('result');
      if (!dir) return null;
      try { return await dir.readSmallFile('result.json', RESULT_FILE_MAX_BYTES); } finally { await dir.close(); }
    } finally {
      await root.close();
    }
  }

  /**
   * Pushes every output to the attempt's prefix (agent/outputs.ts says what goes where). Read only once the
   * run's processes are all gone, and from descriptors (shared/anchored-dir.ts): every folder is opened
   * from the attempt's own folder down, none of the path followed, and every file from its folder's
   * descriptor, non-blocking, checked to be the regular file that was listed. A run of the same user still
   * alive (another attempt here) that swaps a folder for a link meanwhile fails the upload or makes it miss
   * a file; it cannot make the agent send anything from outside the run's folders. Everything is listed
   * before the first byte goes out: over --max-output-mb, nothing does (a large version, zipped as it goes
   * up, is sent first and aborted, nothing stored, if its zip outgrows what the limit leaves it).
   */
  async #upload(folders: Folders, phases: PhaseTime[]): Promise<{ saved: boolean; savedTest: boolean; size: number; sha256: string }> {
    this.#enter('uploading');
    const d = this.dispatch;
    const pipeline = this.#pipeline;
    const member = this.#memberRank;
    const plan = planOutputs(this.#pkgDir, memberOutputPrefix(d.output_prefix!, member), member > 0 ? { ...d.env, save_training_data: 'false', save_test_data: 'false' } : d.env ?? {});
    if (await this.#cgroup?.populated()) throw new TrainyardError(ErrorCodes.FailedPrecondition, 'processes of the run are still alive after its end; nothing was uploaded');
    // What is uploaded as the training and the test data: for a full pipeline, what process_data wrote
    // (without process_data, the input data was the training data); for an evaluation, its input data.
    const ranProcessData = phases.some((p) => p.name === 'process_data');
    const trainData = !plan.saveTrainingData ? null
      : pipeline === Pipeline.Train ? folders.data : pipeline === Pipeline.Full ? (ranProcessData ? folders.training : folders.data) : null;
    const testData = !plan.saveTestData ? null : pipeline === Pipeline.Evaluate ? folders.data : pipeline === Pipeline.Full ? folders.test : null;
    const opened: AnchoredDir[] = [];
    const keep = <T extends AnchoredDir | null>(dir: T): T => { if (dir) opened.push(dir); return dir; };
    try {
      const root = keep(await AnchoredDir.open(this.#dir));
      const pkg = keep(await root.openDir('package'));
      if (!pkg) throw new RefusedDispatch('the run\'s package folder is gone; nothing was uploaded');
      const artifactsName = d.env?.artifacts_directory ?? 'artifacts';
      if (plan.artifactsRel === null) throw new RefusedDispatch(`artifacts_directory "${artifactsName}" leaves the run's folder; nothing was uploaded`);
      const art = keep(await pkg.openDir(plan.artifactsRel).catch((err: unknown) => {
        if (err instanceof NotPlainPath) throw new RefusedDispatch(`artifacts_directory "${artifactsName}" leaves the run's folder (${err.message}); nothing was uploaded`);
        throw err;
      }));
      const dataDir = async (dir: string | null) => !dir ? null : keep(await root.openDir(path.relative(this.#dir, dir)).catch((err: unknown) => {
        if (err instanceof NotPlainPath) throw new RefusedDispatch(`a data folder leaves the run's folder (${err.message}); nothing was uploaded`);
        throw err;
      }));
      const sets: { what: 'artifacts' | 'trainData' | 'testData'; dir: AnchoredDir; files: AnchoredFile[] }[] = [];
      if (art) sets.push({ what: 'artifacts', dir: art, files: await art.files() });
      const train = await dataDir(trainData);
      if (train) sets.push({ what: 'trainData', dir: train, files: await train.files() });
      const test = await dataDir(testData);
      if (test) sets.push({ what: 'testData', dir: test, files: await test.files() });
      // The new version: a small one zipped in memory, hashed and sent from there; a larger one zipped
      // straight into the bucket (shared/stream-upload.ts), its parts sent while the next are zipped and
      // nothing written to disk to be read back (issue 21).
      const pkgFiles = makesVersion(pipeline) && member === 0 ? await pkg.files(plan.packageExcludes) : null;
      const pkgBytes = pkgFiles ? pkgFiles.reduce((n, f) => n + f.size, 0) : 0;
      const zipped = pkgFiles && pkgBytes <= ZIP_IN_MEMORY_BYTES ? await zipAnchored(pkg, pkgFiles, path.join(this.#dir, 'package.zip'), { inMemoryUpTo: ZIP_IN_MEMORY_BYTES }) : null;
      const setsBytes = sets.reduce((n, x) => n + x.files.reduce((m, f) => m + f.size, 0), 0);
      // A streamed zip is counted by its files' bytes here (its own size is known once it is made) and
      // held to what is left of the limit as it goes up: past it, its upload is aborted and nothing stored.
      const total = setsBytes + (zipped?.buffer ? zipped.buffer.length : pkgBytes);
      const limit = this.deps.maxOutputBytes ?? 0;
      const overLimit = (n: number) => new TrainyardError(ErrorCodes.ResourceExhausted, `output limit: the outputs come to ${(n / MIB).toFixed(1)} MiB, over the agent's --max-output-mb of ${Math.round(limit / MIB)} MiB; nothing was uploaded`);
      if (limit && total > limit) throw overLimit(total);
      const minio = await this.#storage();
      const put = { headers: { 'Content-Type': 'application/zip' } };
      // Streamed first: a zip that outgrows the limit fails before any other output has gone out.
      const streamed = pkgFiles && !zipped?.buffer
        ? await this.#counted('upload', uploadStream(minio, d.bucket!, plan.keys.package, zipAnchoredStream(pkg, pkgFiles), this.#transfers('upload'),
          { ...put, ...(limit ? { maxBytes: limit - setsBytes } : {}) }).catch((err: unknown) => {
          throw err instanceof TrainyardError && err.code === ErrorCodes.ResourceExhausted
            ? new TrainyardError(ErrorCodes.ResourceExhausted, `output limit: the new package version's zip grew past what the agent's --max-output-mb of ${Math.round(limit / MIB)} MiB leaves for it as it was made; nothing was uploaded`)
            : err;
        }), (r) => r.bytes)
        : null;
      for (const x of sets) {
        const up = await this.#counted('upload', uploadDir(minio, d.bucket!, x.dir, x.files, plan.keys[x.what], this.#transfers('upload')), (r) => r.bytes);
        this.logs.line('system', x.what === 'artifacts' ? `[trainyard] uploaded ${up.files} artifacts (${up.bytes} bytes)`
          : `[trainyard] saved a copy of the ${x.what === 'trainData' ? 'training' : 'test'} data (${up.files} files)`);
      }
      if (!pkgFiles) return { saved: false, savedTest: testData !== null, size: 0, sha256: '' };
      // Hashed as it was made and sent with a single PUT (x-amz-checksum-sha256): MinIO refuses a put whose
      // bytes differ, and the scheduler registers the version by the checksum MinIO kept (or, for a
      // multipart upload, by hashing the object), not by this report.
      let size: number;
      let sha256: string;
      if (streamed) {
        ({ bytes: size, sha256 } = streamed);
      } else {
        const buffer = zipped!.buffer!;
        sha256 = createHash('sha256').update(buffer).digest('hex');
        size = await this.#counted('upload', uploadBuffer(minio, d.bucket!, plan.keys.package, buffer, this.#transfers('upload'), { ...put, sha256 }).then((r) => r.bytes), (n) => n);
      }
      this.logs.line('system', `[trainyard] uploaded the new package version (${size} bytes)`);
      // A stop that comes now, with every output in the bucket, changes nothing: the run succeeded.
      return { saved: trainData !== null, savedTest: testData !== null, size, sha256 };
    } finally {
      for (const dir of opened) await dir.close();
    }
  }

  /**
   * What the attempt was doing, in words: its phase, and the data download too while that was still
   * running beside it (a full disk is then as much the download's doing as the step that hit it).
   */
  #doing(): string {
    const words = phaseWords[this.#phase];
    return this.#data === 'fetching' && this.#phase !== 'fetching_data' ? `${phaseWords.fetching_data} and ${words}` : words;
  }

  /** The end a failed step means. */
  #failure(err: unknown): Result {
    const fsError = (err as { cause?: unknown } | null)?.cause ?? err; // a transfer wraps the fs error
    if (this.#end || err instanceof Stopped) return this.#end ?? { outcome: AttemptOutcome.Killed, reason: 'killed' };
    if (diskFullCodes.has((fsError as NodeJS.ErrnoException).code ?? '')) {
      return { outcome: AttemptOutcome.Failed, reason: `disk full on agent ${this.deps.agentName} while ${this.#doing()} (work dir ${this.deps.workDir}): ${errorMessage(fsError)}` };
    }
    if (err instanceof PackagingError) return { outcome: AttemptOutcome.PackagingFailed, reason: err.message };
    if (err instanceof TrainyardError) return { outcome: AttemptOutcome.Failed, reason: err.message };
    this.deps.log.error({ err, run: this.runId, phase: this.#phase }, 'attempt failed in the agent');
    return { outcome: AttemptOutcome.Failed, reason: `agent error: ${errorMessage(err)}` };
  }

  /**
   * Reports the end: FinishAttempt, carrying the remaining log lines (or after they were flushed, when
   * they do not fit one call). It retries while the scheduler is away,
   * for as long as the agent runs; a permanent refusal (a stale lease, a bad request) ends the report at
   * once; when the agent stops for good (reportSignal) it gives up and says so: the scheduler finds the
   * attempt through its agent-loss sweep and requeues or ends it.
   */
  async #finish(r: Result): Promise<void> {
    const { log } = this.deps;
    // Bounded (--report-timeout): past it the attempt is let go, and leaves the agent's held list; the
    // scheduler takes it back a few heartbeats later (scheduler/agents/reconcile.ts) and places it again.
    const late = this.deps.reportTimeoutMs ? deadline(this.deps.reportTimeoutMs) : null;
    const giveUp = AbortSignal.any([this.deps.reportSignal ?? new AbortController().signal, ...(late ? [late] : [])]);
    late?.addEventListener('abort', () => this.logs.close(), { once: true });
    // The last lines go with the report when they can (one call); otherwise they are flushed first.
    // The points train.py logged are stored before the end is (an ended run takes none).
    await this.metrics.finish();
    // Every record of the spool is given to the shipper; lines from here on go to it directly.
    await this.#spool?.stop();
    if (!await this.metrics.flush()) log.warn({ run: this.runId, ...this.metrics.stats() }, 'agent stopping: the last metric points of the attempt were not shipped');
    const rest = await this.logs.takeRest();
    const shipped = rest !== null || await this.logs.flush();
    if (!shipped) log.warn({ run: this.runId, lastSeq: this.logs.lastSeq, ackedSeq: this.logs.ackedSeq }, 'agent stopping: the last log lines of the attempt were not shipped');
    try {
      const res = await this.#sendFinish(r, rest ?? [], giveUp).catch(async (err: unknown) => {
        // The report itself refused for good, not the attempt (a message too large, a field the scheduler
        // cannot take): the attempt still ends, Failed with the reason, by a report that carries nothing
        // else, so the run neither waits for a retry that cannot succeed nor costs a lost attempt.
        const code = (err as Partial<TrainyardError>).code;
        if (giveUp.aborted || isRetryableGrpc(err) || code === ErrorCodes.StaleLease || code === ErrorCodes.Unauthenticated || code === ErrorCodes.PermissionDenied || code === ErrorCodes.Cancelled) throw err;
        log.warn({ run: this.runId, err: errorMessage(err), code }, 'finish report refused for good; reporting the attempt Failed instead');
        // The last lines it carried go on their own first (before, they were lost with it).
        if (rest?.length) await this.logs.sendTaken(rest, giveUp);
        return this.#sendFinish({ outcome: AttemptOutcome.Failed, reason: `the end report was refused: ${errorMessage(err)}`, startAt: r.startAt, endAt: r.endAt, phases: r.phases }, [], giveUp);
      });
      this.#mark('finished');
      log.info({ run: this.runId, status: res.status, version: res.output_version, steps: this.#marks }, 'attempt finished');
    } catch (err) {
      if (late?.aborted && !this.deps.reportSignal?.aborted) {
        log.warn({ run: this.runId, attempt: this.dispatch.attempt, outcome: r.outcome, limitS: this.deps.reportTimeoutMs! / 1000 }, 'the end of this attempt was not reported within --report-timeout; letting it go (the scheduler takes it back when this agent\'s heartbeats no longer hold it)');
      } else if (giveUp.aborted) {
        log.warn({ run: this.runId, attempt: this.dispatch.attempt, outcome: r.outcome }, 'agent stopping: the end of this attempt was not reported; the scheduler will requeue or end it when it finds this agent gone');
      } else {
        const code = (err as Partial<TrainyardError>).code;
        log.warn({ run: this.runId, err: errorMessage(err), code }, code === ErrorCodes.StaleLease ? 'finish report refused (a stale attempt)' : 'finish report refused for good');
      }
    }
  }

  /** One FinishAttempt call, retried while the scheduler is away (until giveUp). */
  #sendFinish(r: Result, lines: ShippedLine[], giveUp: AbortSignal) {
    const { link, log } = this.deps;
    return link.finishAttempt({
      run_id: this.runId, lease: this.lease, outcome: r.outcome, reason: r.reason,
      start_at: r.startAt ?? 0, end_at: r.endAt ?? 0, saved_training_data: r.saved ?? false, saved_test_data: r.savedTest ?? false,
      score: r.score ?? 0, has_score: typeof r.score === 'number', phases: r.phases ?? [],
      lineage_json: r.lineage ? JSON.stringify(r.lineage) : '',
      package_size_bytes: r.size ?? 0, package_sha256: r.sha256 ?? '', last_log_seq: this.logs.lastSeq,
      lines, attempt: Number(this.dispatch.attempt),
    }, giveUp, (err) => log.warn({ run: this.runId, err: errorMessage(err) }, 'finish report failed; retrying'));
  }
}

/** A data manifest as the lineage holds it. */
function manifestJson(m: DataManifest): object {
  return { manifest_sha256: m.sha256, files: m.files, bytes: m.bytes, truncated: m.truncated, manifest: m.entries };
}

/**
 * The run's folders, inside the attempt's folder: the input data; for a full pipeline the training and
 * test folders process_data writes, and with an evaluation dataset (which goes to the test folder) a
 * scratch folder for process_data's own test split.
 */
function folderPaths(dir: string, pipeline: Pipeline, evalDataset: boolean): Folders {
  if (pipeline !== Pipeline.Full) return { data: path.join(dir, 'data'), training: null, test: null, scratch: null };
  return {
    data: path.join(dir, 'data'), training: path.join(dir, 'training_data'), test: path.join(dir, 'test_data'),
    scratch: evalDataset ? path.join(dir, 'process_data_test') : null,
  };
}

/** The folder variables the run's code gets (AI Center's names; the test folder under both of its names). */
function folderEnv(pipeline: string, f: Folders): Record<string, string> {
  if (pipeline === Pipeline.Full) {
    return { data_directory: f.data, training_data_directory: f.training!, test_data_directory: f.test!, evaluation_data_directory: f.test! };
  }
  if (pipeline === Pipeline.Evaluate) return { data_directory: f.data, test_data_directory: f.data, evaluation_data_directory: f.data };
  return { training_data_directory: f.data };
}
