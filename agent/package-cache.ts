// The agent's cache of package versions, by the SHA-256 the scheduler registered for the zip: a run of a
// version this agent has run before copies the extracted tree instead of downloading, hashing and
// unzipping the zip again. What is cached is only ever a zip whose digest matched (checked before it was
// extracted), so a hit is the same bytes a download would give. The cache is the agent's (mode 0700): a
// run gets its own copy (save() writes next to the code), never the cached tree, so no run can change
// what a later one starts from. The least recently used versions go beyond MAX_ENTRIES. The copy for a
// version's next run is made after each run's (a spare, renamed into place when that run comes), so a
// run does not wait for the copy; and the cache remembers which versions found their venv ready, so the
// agent can claim such a run as ready to start (agent/agent.ts).
import { randomBytes } from 'node:crypto';
import { cp, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import type * as Minio from 'minio';
import { diskUse } from './venv-cache-cap.js';
import { downloadObject, type RetryOptions } from '../shared/storage.js';
import { extractZip, type ZipLimits } from '../shared/zip.js';
import { RefusedDispatch } from './run-env.js';

/** How many package versions stay extracted (a version is usually small: code and a requirements file). */
export const MAX_ENTRIES = 64;
/** How many versions keep a spare copy for their next run (the most recently used). */
export const MAX_SPARES = 8;

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * A version's zip downloaded to `zip`, hashed as it is written, and extracted into `into` only if it is the
 * one the scheduler registered (a zip replaced in the bucket, or altered on the way, is refused rather than
 * run): what copyTo's `extract` does for an attempt, and for a preparation (agent/prepare-next.ts).
 */
export async function extractPackage(o: {
  client: Minio.Client; bucket: string; key: string; sha256: string; zip: string; into: string; limits: ZipLimits; retry: RetryOptions;
  counted?: <T extends { bytes: number }>(work: Promise<T>) => Promise<T>;
}): Promise<void> {
  const download = downloadObject(o.client, o.bucket, o.key, o.zip, o.retry);
  const { sha256: digest } = await (o.counted ? o.counted(download) : download);
  if (digest !== o.sha256) throw new RefusedDispatch(`the package zip ${o.key} has SHA-256 ${digest}, not the registered ${o.sha256}; nothing was run`);
  await extractZip(o.zip, o.into, o.limits);
  await rm(o.zip);
}

export class PackageCache {
  readonly #dir: string;
  /** The cache's bytes on disk, as last measured (after the last new entry); 0 before. */
  usedBytes = 0;
  /** Spare copies (the agent's, 0700 like the cache), renamed into an attempt's folder: same file system. */
  readonly #spareDir: string;
  #ready: Promise<void> | null = null;
  /** Per version, its spare copy's path once made (null: it could not be). */
  readonly #spares = new Map<string, Promise<string | null>>();
  #spareSeq = 0;
  /** Versions whose venv was found ready by a run on this agent, and that venv's folder. */
  readonly #venvReady = new Map<string, string>();

  constructor(workDir: string) {
    this.#dir = path.join(workDir, 'packages');
    this.#spareDir = path.join(workDir, 'package-spares');
  }

  /** A run of this version found its venv ready (or built it): later runs of it may be claimed ready to start. */
  markReady(sha256: string, venv: string): void {
    if (SHA256.test(sha256)) this.#venvReady.set(sha256, venv);
  }

  /** The venv at `dir` was removed (the venv cache's cap): no version is claimed ready on its account. */
  forgetVenv(dir: string): void {
    for (const [sha, v] of this.#venvReady) if (v === dir) this.#venvReady.delete(sha);
  }

  /** Whether this version is extracted here and its venv was ready for an earlier run. */
  isReady(sha256: string): boolean {
    return this.#venvReady.has(sha256);
  }

  /**
   * The venv an earlier run of this version found ready (null: none did). A hint only, for setting up the
   * run's process before its package is in place: the attempt still finds the venv itself and checks.
   */
  venvOf(sha256: string): string | null {
    return this.#venvReady.get(sha256) ?? null;
  }

  /**
   * Puts the package with digest `sha256` at `dest` (which must not exist). On a miss, `extract(into)`
   * must download the zip, check its digest and extract it into `into`; it is then kept for later runs.
   * Resolves with whether it was a hit.
   */
  async copyTo(sha256: string, dest: string, extract: (into: string) => Promise<void>): Promise<boolean> {
    if (!SHA256.test(sha256)) throw new Error(`"${sha256}" is not a SHA-256 digest`);
    // Spares left by an earlier agent process are not trusted to be whole: removed at the first use.
    this.#ready ??= Promise.all([
      mkdir(this.#dir, { recursive: true, mode: 0o700 }),
      rm(this.#spareDir, { recursive: true, force: true }).then(() => mkdir(this.#spareDir, { mode: 0o700 })),
    ]).then(() => {});
    await this.#ready;
    const entry = path.join(this.#dir, sha256);
    const hit = await stat(entry).then((s) => s.isDirectory(), () => false);
    if (!hit) {
      const partial = `${entry}.partial-${randomBytes(6).toString('hex')}`;
      try {
        await extract(partial);
        // Atomic: a reader sees the whole tree or none. Another attempt may have put it there first.
        await rename(partial, entry).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
        });
      } finally {
        await rm(partial, { recursive: true, force: true });
      }
      void this.#evict().catch(() => {});
    } else {
      const now = new Date();
      await utimes(entry, now, now).catch(() => {});
    }
    const spare = await this.#takeSpare(sha256);
    if (!spare || !(await rename(spare, dest).then(() => true, () => false))) {
      if (spare) await rm(spare, { recursive: true, force: true });
      await cp(entry, dest, { recursive: true, errorOnExist: true, force: false, preserveTimestamps: true });
    }
    this.#makeSpare(sha256, entry);
    return hit;
  }

  async #takeSpare(sha256: string): Promise<string | null> {
    const spare = this.#spares.get(sha256);
    this.#spares.delete(sha256);
    return spare ?? null;
  }

  /** Copies the version for its next run, in the background; only the most recent MAX_SPARES keep one. */
  #makeSpare(sha256: string, entry: string): void {
    if (this.#spares.has(sha256)) return;
    const dest = path.join(this.#spareDir, `${sha256}-${++this.#spareSeq}`);
    this.#spares.set(sha256, cp(entry, dest, { recursive: true, errorOnExist: true, force: false, preserveTimestamps: true })
      .then(() => dest, async () => { await rm(dest, { recursive: true, force: true }); return null; }));
    for (const [old] of this.#spares) {
      if (this.#spares.size <= MAX_SPARES) break;
      void this.#dropSpare(old);
    }
  }

  async #dropSpare(sha256: string): Promise<void> {
    const spare = await this.#takeSpare(sha256);
    if (spare) await rm(spare, { recursive: true, force: true });
  }

  /** Removes the least recently used entries beyond MAX_ENTRIES (and partial trees left by a crash). */
  async #evict(): Promise<void> {
    const names = await readdir(this.#dir);
    const entries: { name: string; used: number }[] = [];
    for (const name of names) {
      const full = path.join(this.#dir, name);
      if (!SHA256.test(name)) {
        // A partial tree older than a minute is a crash's leftover, not an extraction in progress.
        const s = await stat(full).catch(() => null);
        if (s && Date.now() - s.mtimeMs > 60_000) await rm(full, { recursive: true, force: true });
        continue;
      }
      const s = await stat(full).catch(() => null);
      if (s) entries.push({ name, used: s.mtimeMs });
    }
    entries.sort((a, b) => b.used - a.used);
    for (const e of entries.slice(MAX_ENTRIES)) {
      this.#venvReady.delete(e.name);
      await this.#dropSpare(e.name);
      await rm(path.join(this.#dir, e.name), { recursive: true, force: true });
    }
    // Measured here, after each new entry's eviction pass: what `trainyard agents` shows (heartbeat).
    this.usedBytes = await diskUse(this.#dir);
  }
}
