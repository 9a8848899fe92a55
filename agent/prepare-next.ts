// Preparing the next run while one trains (issue 22, "GPUs never idle between runs"): while a run of this
// agent is training, the agent asks the scheduler every few seconds which queued run would most likely
// come to it next (AgentLink.PeekNextRun: scheduler/runs/next-run.ts, a guess among runs it could be
// placed) and makes that run's start cheap: its dataset is made local in a staged folder beside the data
// cache (agent/data-cache.ts stage: the run's make-local renames it into place if the dataset did not
// change), its package version unpacked into the package cache (with a spare copy for the run), and its
// venv built into the venv cache; the version is then marked ready, so the run's claim makes it Running at
// once and its process is set up at the claim (agent/attempt.ts). None of this holds a GPU or a slot, or
// changes where anything is placed: if the run goes elsewhere, what was warmed only ages out of the caches
// (their caps hold as for any run's). One preparation at a time; it is called off (its AbortSignal) when
// another run is claimed here (it would compete with that run's own make-local) or the agent drains or
// stops. `--prepare-next false` turns it off.
import { chmod, chown, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Link } from './link.js';
import type { NextRun__Output } from '../shared/proto.js';
import { createMinioClient } from '../shared/storage.js';
import { ErrorCodes, TrainyardError, errorMessage } from '../shared/errors.js';
import type { ZipLimits } from '../shared/zip.js';
import type { DataCache } from './data-cache.js';
import { extractPackage, type PackageCache } from './package-cache.js';
import { contained, ensureVenv, type VenvOptions } from './venv.js';
import type { VenvCacheCap } from './venv-cache-cap.js';
import type { Containment } from './containment.js';

/** How often the scheduler is asked while a run trains (a queue-head read; credentials only for a new answer). */
export const ASK_EVERY_MS = 5000;
/** How often the agent looks whether a run trains (local: no call). */
const TICK_MS = 1000;

const SHA256 = /^[0-9a-f]{64}$/;

export interface PrepareDeps {
  agentName: string;
  link: Link;
  log: Logger;
  minioEndpoint: string;
  bucket: string;
  workDir: string;
  /** --accept-projects (empty: every project's): an answer for another project is refused, as a claim is. */
  acceptProjects: readonly string[];
  packages: PackageCache;
  dataCache: DataCache;
  venvCap: VenvCacheCap;
  /** The venv options an attempt's build gets, less its uid (agent/venv.ts contained adds those). */
  venv: () => VenvOptions;
  containment: () => Containment | undefined;
  zipLimits: ZipLimits;
  transferRetries: number;
  /** Whether a run trains here now and the agent takes runs: only then is the next one prepared. */
  training: () => boolean;
}

export class NextRunPreparer {
  /** The run whose caches were warmed last ('' none): asked again, the scheduler issues no keys for it. */
  #prepared = '';
  #current: { runId: string; controller: AbortController } | null = null;
  #lastAsk = 0;
  readonly #stop = new AbortController();
  #loop: Promise<void> | null = null;

  constructor(private readonly deps: PrepareDeps) {}

  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * A run was claimed here. A preparation for another run is called off: it would compete with this one's
   * own make-local. One for this run goes on: the run's make-local waits for its staged folder, and its
   * package copy and venv build join the preparation's where they overlap.
   */
  claimed(runId: string): void {
    const c = this.#current;
    if (c && c.runId !== runId) c.controller.abort(new Error(`run ${runId} was claimed`));
  }

  /** Calls off a preparation under way, waits for it, and removes a staged folder no run took. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#current?.controller.abort(new Error('the agent stops'));
    await this.#loop;
    await this.deps.dataCache.dropStaged().catch(() => {});
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      if (this.deps.training() && Date.now() - this.#lastAsk >= ASK_EVERY_MS) {
        this.#lastAsk = Date.now();
        await this.#once(signal).catch((err: unknown) => {
          if (!signal.aborted) this.deps.log.warn({ err: errorMessage(err) }, 'could not ask the scheduler for the next run to prepare');
        });
      }
      await sleep(TICK_MS, undefined, { signal }).catch(() => {});
    }
  }

  async #once(agentSignal: AbortSignal): Promise<void> {
    const { deps } = this;
    const next = await deps.link.peekNextRun({ agent: deps.agentName, prepared_run_id: this.#prepared }, agentSignal);
    if (!next.found || next.run_id === this.#prepared) return;
    const refused = this.#check(next);
    if (refused) {
      deps.log.warn({ run: next.run_id, reason: refused }, 'the next run\'s preparation was refused');
      return;
    }
    const current = { runId: next.run_id, controller: new AbortController() };
    this.#current = current;
    const signal = AbortSignal.any([agentSignal, current.controller.signal]);
    const t0 = Date.now();
    deps.log.info({ run: next.run_id }, 'preparing the next run while this one trains');
    try {
      const s = next.storage!;
      const client = createMinioClient({ minioEndpoint: deps.minioEndpoint, minioAccessKey: s.access_key, minioSecretKey: s.secret_key, sessionToken: s.session_token });
      const retry = { retries: deps.transferRetries, signal };
      // Both at once; the first failure calls the other off.
      const fail = (err: unknown): never => { current.controller.abort(err); throw err; };
      await Promise.all([
        deps.dataCache.stage(client, next.bucket, next.dataset_prefix, retry).catch(fail),
        this.#packageAndVenv(client, next, retry).catch(fail),
      ]);
      this.#prepared = next.run_id;
      deps.log.info({ run: next.run_id, ms: Date.now() - t0 }, 'next run prepared: data staged, package unpacked, venv ready');
    } catch (err) {
      await deps.dataCache.dropStaged().catch(() => {});
      if (signal.aborted) deps.log.info({ run: next.run_id, why: errorMessage(signal.reason) }, 'preparation of the next run called off');
      else deps.log.warn({ run: next.run_id, err: errorMessage(err) }, 'could not prepare the next run; it starts as usual');
    } finally {
      if (this.#current === current) this.#current = null;
    }
  }

  /** Why an answer is not acted on (null: it is): the same checks a dispatch's fields get (agent/claim.ts). */
  #check(n: NextRun__Output): string | null {
    const accept = this.deps.acceptProjects;
    if (accept.length && !accept.includes(n.project)) return `project ${n.project} is not among --accept-projects`;
    if (n.bucket !== this.deps.bucket) return `bucket ${n.bucket} is not this agent's (${this.deps.bucket})`;
    if (!SHA256.test(n.package_sha256)) return 'the package digest is not a SHA-256';
    if (!n.package_object_key || !n.dataset_prefix.endsWith('/')) return 'the package key or dataset prefix is malformed';
    if (!n.storage) return 'no storage credentials came with it';
    return null;
  }

  /**
   * The version unpacked into the package cache (through a copy in a folder of the preparation's, which
   * leaves the cache a spare for the run), and its venv built from that copy as an attempt's would be: as a
   * run uid leased for the build where the agent has a pool.
   */
  async #packageAndVenv(client: ReturnType<typeof createMinioClient>, n: NextRun__Output, retry: { retries: number; signal: AbortSignal }): Promise<void> {
    const { deps } = this;
    const dir = path.join(deps.workDir, 'prepare-next');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o700 });
    const c = deps.containment();
    const uid = c?.pool ? await c.pool.lease() : null;
    const holder = deps.venvCap.holder();
    try {
      // As an attempt's folder: the agent's, entered by the build's uid alone.
      if (uid) { await chmod(dir, 0o750); await chown(dir, 0, uid.user.gid); }
      const pkgDir = path.join(dir, 'package');
      await deps.packages.copyTo(n.package_sha256, pkgDir, (into) => extractPackage({
        client, bucket: n.bucket, key: n.package_object_key, sha256: n.package_sha256, zip: path.join(dir, 'input.zip'), into, limits: deps.zipLimits, retry,
      }));
      const venv = await ensureVenv({ ...contained(deps.venv(), c, uid), hold: holder.hold }, path.join(pkgDir, 'requirements.txt'),
        (line) => deps.log.debug({ run: n.run_id }, line), retry.signal);
      deps.packages.markReady(n.package_sha256, venv);
    } finally {
      holder.releaseAll();
      await rm(dir, { recursive: true, force: true });
      await uid?.release();
    }
  }
}

/** `--prepare-next`: true or false. */
export function parsePrepareNext(text: string): boolean {
  if (text === 'true' || text === 'false') return text === 'true';
  throw new TrainyardError(ErrorCodes.InvalidArgument, `--prepare-next "${text}": expected true or false`);
}
