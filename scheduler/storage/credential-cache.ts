// Storage credentials asked for ahead of the claim. Issuing them (MinIO STS) takes a few milliseconds on
// the path from submit to train(); the placer knows an attempt's scope the moment it places it, so it
// starts issuing then, while the doorbell travels and the agent calls back. The claim takes them (once)
// if they are here and fresh, and otherwise issues its own (another scheduler placed it, or they failed).
// Held in this process's memory only, for at most a minute, and never logged.
import type { Selectable } from 'kysely';
import type { RunsTable } from '../db/database.js';
import type { StorageCredentials } from '../../shared/proto.js';
import type { AttemptScope } from './attempt-credentials.js';
import { keys } from '../../shared/storage.js';

export type ScopeRow = Pick<Selectable<RunsTable>, 'id' | 'attempt' | 'package_object_key' | 'dataset' | 'dataset_sub' | 'eval_dataset' | 'eval_dataset_sub'>;

/** What an attempt may touch in the bucket: its package zip and dataset folder(s) (read), its prefix (write). */
export function attemptScope(r: ScopeRow, bucket: string) {
  return {
    bucket,
    readObjects: [r.package_object_key],
    readPrefixes: [keys.datasetPrefix(r.dataset, r.dataset_sub), ...(r.eval_dataset ? [keys.datasetPrefix(r.eval_dataset, r.eval_dataset_sub)] : [])],
    writePrefix: keys.attemptPrefix(r.id, r.attempt),
  };
}

const TTL_MS = 60_000;
const MAX_ENTRIES = 10_000;

export class AttemptCredentials {
  readonly #ahead = new Map<string, { at: number; creds: Promise<StorageCredentials> }>();

  /** `issuer`: asks STS for keys limited to a scope (issueAttemptCredentials, given the scheduler's keys). */
  constructor(private readonly issuer: (scope: AttemptScope) => Promise<StorageCredentials>, private readonly bucket: string) {}

  issue(r: ScopeRow): Promise<StorageCredentials> {
    return this.issuer(attemptScope(r, this.bucket));
  }

  /** Starts issuing for an attempt just placed (its lease names it); a failure is left to the claim. */
  prefetch(r: ScopeRow & { lease: number | null }): void {
    if (r.lease === null) return;
    const creds = this.issue(r);
    creds.catch(() => {});
    this.#ahead.set(`${r.id}:${r.lease}`, { at: Date.now(), creds });
    if (this.#ahead.size > MAX_ENTRIES) this.#prune();
  }

  /** This attempt's prefetched credentials (taken once) when fresh and issued; otherwise new ones. */
  async forClaim(r: ScopeRow & { lease: number | null }): Promise<StorageCredentials> {
    const key = `${r.id}:${r.lease}`;
    const ahead = this.#ahead.get(key);
    this.#ahead.delete(key);
    if (ahead && Date.now() - ahead.at < TTL_MS) {
      try { return await ahead.creds; } catch { /* issue again below, and say why if it fails again */ }
    }
    return this.issue(r);
  }

  #prune(): void {
    const old = Date.now() - TTL_MS;
    for (const [k, v] of this.#ahead) if (v.at < old) this.#ahead.delete(k);
    // Still full (a burst bigger than the cap): drop the oldest; their claims issue their own.
    for (const k of this.#ahead.keys()) { if (this.#ahead.size <= MAX_ENTRIES) break; this.#ahead.delete(k); }
  }
}
