// The agent's cache of package versions, by the SHA-256 the scheduler registered for the zip: a run of a
// version this agent has run before copies the extracted tree instead of downloading, hashing and
// unzipping the zip again. What is cached is only ever a zip whose digest matched (checked before it was
// extracted), so a hit is the same bytes a download would give. The cache is the agent's (mode 0700): a
// run gets its own copy (save() writes next to the code), never the cached tree, so no run can change
// what a later one starts from. The least recently used versions go beyond MAX_ENTRIES.
import { randomBytes } from 'node:crypto';
import { cp, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';

/** How many package versions stay extracted (a version is usually small: code and a requirements file). */
export const MAX_ENTRIES = 64;

const SHA256 = /^[0-9a-f]{64}$/;

export class PackageCache {
  readonly #dir: string;
  #ready: Promise<void> | null = null;

  constructor(workDir: string) {
    this.#dir = path.join(workDir, 'packages');
  }

  /**
   * Puts the package with digest `sha256` at `dest` (which must not exist). On a miss, `extract(into)`
   * must download the zip, check its digest and extract it into `into`; it is then kept for later runs.
   * Resolves with whether it was a hit.
   */
  async copyTo(sha256: string, dest: string, extract: (into: string) => Promise<void>): Promise<boolean> {
    if (!SHA256.test(sha256)) throw new Error(`"${sha256}" is not a SHA-256 digest`);
    this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).then(() => {});
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
    await cp(entry, dest, { recursive: true, errorOnExist: true, force: false, preserveTimestamps: true });
    return hit;
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
    for (const e of entries.slice(MAX_ENTRIES)) await rm(path.join(this.#dir, e.name), { recursive: true, force: true });
  }
}
