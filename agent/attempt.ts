// One attempt of a run on this agent, start to end: fetch the package, build or reuse its venv (Packaging),
// make the data local, run train() and save() through the harness in its own process group (Running),
// push every output to the bucket, and only then report success. Kill, timeout and drain all end the
// process group the same way: SIGTERM, a grace period, then SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type * as Minio from 'minio';
import type { Logger } from 'pino';
import type { Dispatch } from '../shared/proto.js';
import { AttemptOutcome, RunStatus } from '../shared/run-states.js';
import { diskFullCodes, downloadObject, downloadPrefix, outputNames, uploadDir, uploadFile, type RetryOptions } from '../shared/storage.js';
import { extractZip, zipDir } from '../shared/zip.js';
import { errorMessage, TrainyardError } from '../shared/errors.js';
import { wantsTrainingData } from '../shared/run-env.js';
import { projectRoot } from '../shared/proto.js';
import { sha256File } from '../shared/hash.js';
import { ensureVenv, PackagingError, type VenvOptions } from './venv.js';
import { LogShipper, lineSplitter } from './log-shipper.js';
import type { Link } from './link.js';

export interface AttemptDeps {
  agentName: string;
  link: Link;
  minio: Minio.Client;
  log: Logger;
  workDir: string;
  venv: VenvOptions;
  killGraceMs: number;
  transferRetries: number;
  zipLimits: { maxUnzippedBytes: number; maxEntries: number };
}

type EndReason = { outcome: AttemptOutcome; reason: string };

export class Attempt {
  readonly #abort = new AbortController();
  #child: ChildProcess | null = null;
  #end: EndReason | null = null;
  #killTimer: NodeJS.Timeout | null = null;
  readonly done: Promise<void>;
  readonly logs: LogShipper;

  constructor(readonly dispatch: Dispatch, private readonly deps: AttemptDeps) {
    this.logs = new LogShipper({
      append: async (lines) => {
        const res = await deps.link.appendLogs({ run_id: dispatch.run_id, lease: dispatch.lease, lines });
        return { stop: res.stop };
      },
    }, this.#abort.signal, () => this.stop({ outcome: AttemptOutcome.Killed, reason: 'killed' }));
    this.done = this.#run();
  }

  get runId(): string { return this.dispatch.run_id!; }
  get lease(): number { return Number(this.dispatch.lease); }

  /** Ends the attempt for the given reason (first reason wins): the process group gets SIGTERM, then SIGKILL. */
  stop(end: EndReason): void {
    if (this.#end) return;
    this.#end = end;
    this.deps.log.info({ run: this.runId, outcome: end.outcome, reason: end.reason }, 'stopping attempt');
    const child = this.#child;
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      signalGroup(child.pid, 'SIGTERM');
      this.#killTimer = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), this.deps.killGraceMs);
    } else {
      this.#abort.abort();
    }
  }

  async #report(status: string): Promise<boolean> {
    const { link } = this.deps;
    const res = await link.reportStatus({ run_id: this.runId, lease: this.lease, status }, this.#abort.signal);
    if (res.stop) this.stop({ outcome: AttemptOutcome.Killed, reason: 'killed' });
    return !res.stop;
  }

  async #run(): Promise<void> {
    const d = this.dispatch;
    const { log } = this.deps;
    const dir = path.join(this.deps.workDir, `${d.run_id}-a${d.attempt}`);
    const retry: RetryOptions = {
      retries: this.deps.transferRetries,
      signal: this.#abort.signal,
      onRetry: (err, n, ms) => this.logs.line('system', `[trainyard] storage error, retry ${n} in ${Math.round(ms)} ms: ${errorMessage(err)}`),
    };
    let result: EndReason & { startAt?: number; endAt?: number; saved?: boolean; size?: number; sha256?: string } = {
      outcome: AttemptOutcome.Failed, reason: 'agent error',
    };
    let doing = 'fetching the package'; // for a reason that says when the agent's own disk filled up
    try {
      if (!(await this.#report(RunStatus.Packaging))) throw new Stopped();
      this.logs.line('system', `[trainyard] attempt ${d.attempt} on agent; package ${d.package} ${d.version}, dataset ${d.dataset}`);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      const zip = path.join(dir, 'input.zip');
      await downloadObject(this.deps.minio, d.bucket!, d.package_object_key!, zip, retry);
      const pkgDir = path.join(dir, 'package');
      await extractZip(zip, pkgDir, this.deps.zipLimits);
      await rm(zip);
      const venv = await ensureVenv(this.deps.venv, path.join(pkgDir, 'requirements.txt'), (l) => this.logs.line('system', l), this.#abort.signal);
      if (this.#end) throw new Stopped();

      if (!(await this.#report(RunStatus.Running))) throw new Stopped();
      const startAt = Date.now() / 1000;
      doing = 'making the data local';
      const dataDir = path.join(dir, 'data');
      const got = await downloadPrefix(this.deps.minio, d.bucket!, d.dataset_prefix!, dataDir, retry);
      await mkdir(dataDir, { recursive: true });
      this.logs.line('system', `[trainyard] dataset ${d.dataset}: ${got.files} files, ${got.bytes} bytes made local`);
      if (this.#end) throw new Stopped();

      const env = d.env ?? {};
      doing = 'running train.py';
      const harness = await this.#harness(venv, pkgDir, dataDir, dir, env);
      if (this.#end) throw new Stopped();
      if (!harness.ok) {
        result = { outcome: AttemptOutcome.Failed, reason: harness.reason };
      } else {
        // Outputs: artifacts, the data copy when asked, and the new package (the folder after save(),
        // without the artifacts, data or venv, which all live outside it or are excluded).
        doing = 'uploading the outputs';
        const prefix = d.output_prefix!;
        const artifactsRel = path.normalize(env.artifacts_directory ?? 'artifacts');
        const artifactsDir = path.resolve(pkgDir, artifactsRel);
        if (existsSync(artifactsDir)) {
          const up = await uploadDir(this.deps.minio, d.bucket!, artifactsDir, prefix + outputNames.artifacts, retry);
          this.logs.line('system', `[trainyard] uploaded ${up.files} artifacts (${up.bytes} bytes)`);
        }
        const saved = wantsTrainingData(env);
        if (saved) {
          const up = await uploadDir(this.deps.minio, d.bucket!, dataDir, prefix + outputNames.trainData, retry);
          this.logs.line('system', `[trainyard] saved a copy of the training data (${up.files} files)`);
        }
        const insidePkg = path.relative(pkgDir, artifactsDir);
        const exclude = (rel: string) => rel === '__pycache__' || rel.endsWith('/__pycache__') || (!insidePkg.startsWith('..') && insidePkg !== '' && (rel === insidePkg.split(path.sep).join('/')));
        const outZip = path.join(dir, 'package.zip');
        await zipDir(pkgDir, outZip, exclude);
        const size = await uploadFile(this.deps.minio, d.bucket!, prefix + outputNames.package, outZip, retry);
        const sha256 = await sha256File(outZip);
        this.logs.line('system', `[trainyard] uploaded the new package version (${size} bytes)`);
        result = { outcome: AttemptOutcome.Succeeded, reason: '', startAt, endAt: Date.now() / 1000, saved, size, sha256 };
      }
    } catch (err) {
      const fsError = (err as { cause?: unknown } | null)?.cause ?? err; // a transfer wraps the fs error
      if (this.#end || err instanceof Stopped) result = this.#end ?? { outcome: AttemptOutcome.Killed, reason: 'killed' };
      else if (diskFullCodes.has((fsError as NodeJS.ErrnoException).code ?? '')) {
        result = { outcome: AttemptOutcome.Failed, reason: `disk full on agent ${this.deps.agentName} while ${doing} (work dir ${this.deps.workDir}): ${errorMessage(fsError)}` };
      } else if (err instanceof PackagingError) result = { outcome: AttemptOutcome.PackagingFailed, reason: err.message };
      else if (err instanceof TrainyardError) result = { outcome: AttemptOutcome.Failed, reason: err.message };
      else {
        log.error({ err, run: this.runId }, 'attempt failed in the agent');
        result = { outcome: AttemptOutcome.Failed, reason: `agent error: ${errorMessage(err)}` };
      }
    }
    if (this.#end && result.outcome !== AttemptOutcome.Succeeded) result = { ...result, ...this.#end };
    if (result.reason && result.outcome !== AttemptOutcome.Succeeded) this.logs.line('system', `[trainyard] ${result.outcome}: ${result.reason}`);
    await this.#finish(result);
    if (this.#killTimer) clearTimeout(this.#killTimer);
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }

  async #finish(r: EndReason & { startAt?: number; endAt?: number; saved?: boolean; size?: number; sha256?: string }): Promise<void> {
    const { link, log } = this.deps;
    const finishSignal = new AbortController().signal; // the final report must go out even after a kill
    await this.logs.flush();
    try {
      const res = await link.finishAttempt({
        run_id: this.runId, lease: this.lease, outcome: r.outcome, reason: r.reason,
        start_at: r.startAt ?? 0, end_at: r.endAt ?? 0, saved_training_data: r.saved ?? false,
        package_size_bytes: r.size ?? 0, package_sha256: r.sha256 ?? '', last_log_seq: this.logs.lastSeq,
      }, finishSignal, (err) => log.warn({ run: this.runId, err: errorMessage(err) }, 'finish report failed; retrying'));
      log.info({ run: this.runId, status: res.status, version: res.output_version }, 'attempt finished');
    } catch (err) {
      log.warn({ run: this.runId, err: errorMessage(err) }, 'finish report refused (a stale attempt)');
    }
  }

  /** Runs train() and save() in the venv. Resolves with the harness's verdict. */
  async #harness(venv: string, pkgDir: string, dataDir: string, dir: string, env: Record<string, string>): Promise<{ ok: true } | { ok: false; reason: string }> {
    const resultFile = path.join(dir, 'result.json');
    const script = path.join(projectRoot(), 'agent', 'harness', 'trainyard_harness.py');
    const gpus = this.dispatch.gpu_indices ?? [];
    const child = spawn(path.join(venv, 'bin', 'python'), ['-u', script, '--package-dir', pkgDir, '--data-dir', dataDir, '--result-file', resultFile], {
      cwd: pkgDir,
      detached: true, // its own process group, so a kill reaches train.py's children too
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: `${path.join(venv, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        HOME: process.env.HOME ?? dir,
        LANG: process.env.LANG ?? 'C.UTF-8',
        VIRTUAL_ENV: venv,
        PYTHONUNBUFFERED: '1',
        ...env,
        // A run sees only the GPUs it was given; a run that asked for none sees none.
        CUDA_VISIBLE_DEVICES: gpus.join(','),
        TRAINYARD_RUN_ID: this.runId,
        TRAINYARD_ATTEMPT: String(this.dispatch.attempt),
        training_data_directory: dataDir,
      },
    });
    this.#child = child;
    this.deps.log.info({ run: this.runId, attempt: this.dispatch.attempt, pid: child.pid, at: Date.now() }, 'train.py started');
    if (this.#end) signalGroup(child.pid!, 'SIGTERM');
    const timeout = this.dispatch.timeout_seconds
      ? setTimeout(() => this.stop({ outcome: AttemptOutcome.TimedOut, reason: 'timed out' }), this.dispatch.timeout_seconds * 1000)
      : null;
    const out = lineSplitter((l) => this.logs.line('stdout', l));
    const err = lineSplitter((l) => this.logs.line('stderr', l));
    child.stdout!.on('data', (c: Buffer) => out.write(c));
    child.stderr!.on('data', (c: Buffer) => err.write(c));
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
    out.end(); err.end();
    if (timeout) clearTimeout(timeout);
    // The leader is gone; anything it left in the group goes with it.
    signalGroup(child.pid!, 'SIGKILL');
    if (this.#end) return { ok: false, reason: this.#end.reason };
    let verdict: { ok: boolean; error?: { summary?: string; message?: string } | null } | null = null;
    try { verdict = JSON.parse(await readFile(resultFile, 'utf8')); } catch { verdict = null; }
    if (code === 0 && verdict?.ok) return { ok: true };
    if (verdict && !verdict.ok && verdict.error) return { ok: false, reason: verdict.error.summary || verdict.error.message || 'train.py failed' };
    return { ok: false, reason: signal ? `train.py was killed by ${signal}` : `train.py exited with code ${code}` };
  }
}

class Stopped extends Error {}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try { process.kill(-pid, sig); } catch { /* already gone */ }
}


