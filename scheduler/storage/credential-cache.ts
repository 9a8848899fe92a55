// Storage credentials asked for ahead of the claim. Issuing them (MinIO STS) is the largest part of a
// claim (bench/latency.ts: 2-6 ms of its 7); the placer knows an attempt's scope the moment it places it,
// so it starts issuing then, while the doorbell travels and the agent calls back. The claim takes them
// (once, for the same attempt and lease) and otherwise issues its own: another scheduler placed it, the
// prefetch failed, or there was no room to prefetch.
//
// Bounded on purpose. An earlier version issued for every placement and cost a 20,000-run pass a fifth of
// its speed and 300 MiB (0243904): STS is slower than placing, so it only pays while few attempts are being
// placed. At most MAX_IN_FLIGHT are being issued and MAX_ENTRIES held at once; past that a placement is not
// prefetched, and its claim issues as before. Held in this process's memory only, for at most a minute
// (the credentials live 15 minutes or more), and never logged.
import type { Selectable } from 'kysely';
import type { RunsTable } from '../db/database.js';
import type { StorageCredentials } from '../../shared/proto.js';
import type { AttemptScope } from './attempt-credentials.js';
import { keys } from '../../shared/storage.js';
import { checkpointKeys, type ResumedFrom } from '../../shared/checkpoints.js';

export type ScopeRow = Pick<Selectable<RunsTable>, 'id' | 'attempt' | 'package_object_key' | 'dataset' | 'dataset_sub' | 'eval_dataset' | 'eval_dataset_sub'>
  & { resumed_from?: ResumedFrom | null };

/**
 * What an attempt may touch in the bucket: its package zip and dataset folder(s) (read), the checkpoint it
 * resumes from (read: the one folder its claim found, shared/checkpoints.ts), its prefix and its
 * checkpoints' folder (write).
 */
export function attemptScope(r: ScopeRow, bucket: string): AttemptScope {
  const from = r.resumed_from;
  return {
    bucket,
    readObjects: [r.package_object_key],
    readPrefixes: [keys.datasetPrefix(r.dataset, r.dataset_sub), ...(r.eval_dataset ? [keys.datasetPrefix(r.eval_dataset, r.eval_dataset_sub)] : []),
      ...(from ? [checkpointKeys.folder(from.run_id, from.attempt, from.seq)] : [])],
    writePrefix: keys.attemptPrefix(r.id, r.attempt),
    checkpointPrefix: checkpointKeys.attemptPrefix(r.id, r.attempt),
  };
}

/**
 * What an agent preparing a queued run (scheduler/runs/next-run.ts) may touch: read its package zip and
 * dataset folder(s), as its attempt will; nothing written, no checkpoint read (the claim finds that one).
 * Also the read-only keys an attempt asks for to pull many files (RenewStorage read_only): the shorter
 * policy costs MinIO less on each GET.
 */
export function readScope(r: ScopeRow, bucket: string): AttemptScope {
  return { bucket, readObjects: [r.package_object_key], readPrefixes: attemptScope({ ...r, resumed_from: null }, bucket).readPrefixes, writePrefix: null };
}

/** One attempt on one lease (a bigint column: a string from the claim's read, a number from the placer). */
const keyOf = (r: { id: string; lease: number | string | null }) => `${r.id}:${Number(r.lease)}`;

export interface PrefetchLimits {
  /** STS calls started ahead and not yet answered (default 2: the agents' slots a claim is waited on by). */
  maxInFlight?: number;
  /** Prefetched credentials held, answered or not (default 64). */
  maxEntries?: number;
  /** How long a prefetched entry may wait for its claim (default 60 s). */
  ttlMs?: number;
}

export class AttemptCredentials {
  readonly #ahead = new Map<string, { at: number; scope: string; creds: Promise<StorageCredentials> }>();
  readonly #maxInFlight: number;
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  #inFlight = 0;

  /** `issuer`: asks STS for keys limited to a scope (issueAttemptCredentials, given the scheduler's keys). */
  constructor(private readonly issuer: (scope: AttemptScope) => Promise<StorageCredentials>, private readonly bucket: string, limits: PrefetchLimits = {}) {
    this.#maxInFlight = limits.maxInFlight ?? 2;
    this.#maxEntries = limits.maxEntries ?? 64;
    this.#ttlMs = limits.ttlMs ?? 60_000;
  }

  issue(r: ScopeRow): Promise<StorageCredentials> {
    return this.issuer(attemptScope(r, this.bucket));
  }

  /** Read-only keys (readScope): for an agent preparing a queued run, or an attempt's pull of many files. */
  issueRead(r: ScopeRow): Promise<StorageCredentials> {
    return this.issuer(readScope(r, this.bucket));
  }

  /** Prefetched entries held now (for tests and metrics). */
  get held(): number { return this.#ahead.size; }

  /**
   * Starts issuing for an attempt just placed (its lease names it) when there is room; a failure is left
   * to the claim, which issues again.
   */
  prefetch(r: ScopeRow & { lease: number | string | null }): void {
    this.#prune();
    if (r.lease === null || this.#inFlight >= this.#maxInFlight || this.#ahead.size >= this.#maxEntries) return;
    this.#inFlight++;
    const scope = attemptScope(r, this.bucket);
    const creds = this.issuer(scope);
    creds.catch(() => {}).finally(() => { this.#inFlight--; });
    this.#ahead.set(keyOf(r), { at: Date.now(), scope: JSON.stringify(scope), creds });
    this.#pruneLater();
  }

  /**
   * This attempt's prefetched credentials (taken once) when fresh, issued, and for the scope the claim's own
   * read of the run gives (what the placer saw is never trusted over it); otherwise new ones.
   */
  async forClaim(r: ScopeRow & { lease: number | string | null }): Promise<StorageCredentials> {
    this.#prune();
    const key = keyOf(r);
    const ahead = this.#ahead.get(key);
    this.#ahead.delete(key);
    const scope = attemptScope(r, this.bucket);
    if (ahead && Date.now() - ahead.at < this.#ttlMs && ahead.scope === JSON.stringify(scope)) {
      try { return await ahead.creds; } catch { /* issued again below, which says why if it fails again */ }
    }
    return this.issuer(scope);
  }

  /**
   * Drops what waited longer than the TTL: placements whose claim never came here. Entries are in the order
   * they were made, so this stops at the first young one. Keys are secrets: none is kept past the TTL, even
   * when nothing is placed or claimed for a while (a timer, which never holds the process open).
   */
  #prune(): void {
    const old = Date.now() - this.#ttlMs;
    for (const [k, v] of this.#ahead) {
      if (v.at >= old) break;
      this.#ahead.delete(k);
    }
  }

  #timer: NodeJS.Timeout | null = null;
  #pruneLater(): void {
    if (this.#timer || this.#ahead.size === 0) return;
    this.#timer = setTimeout(() => { this.#timer = null; this.#prune(); this.#pruneLater(); }, this.#ttlMs + 10).unref();
  }
}
