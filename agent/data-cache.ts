// The agent's cache of dataset objects (issue 11): a run of a dataset this agent fetched before copies
// each unchanged file from here instead of downloading it again. An entry is keyed by bucket, object key,
// ETag and size, so what the listing (read every run: it says what the dataset is now) shows changed is a
// miss, and an entry never serves another object's key (one project cannot seed another's data with a
// file of the same MD5). Every file is hashed (SHA-256) as it is written, and the hash kept in the entry's
// name, so the run's lineage manifest (agent/lineage.ts manifestOf) needs no second read of the data.
// The cache folder is the agent's (0700) and a run gets a copy, never the entry, so no run can change
// what a later one reads. The least recently used entries go beyond --data-cache-mb; 0 keeps nothing.
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import type * as Minio from 'minio';
import { listObjects, localPathOf, type RetryOptions } from '../shared/storage.js';
import { mapBounded } from '../shared/bounded.js';
import { downloadRanged, type RangedOptions } from '../shared/ranged-download.js';
import type { ManifestEntry } from './lineage.js';

/**
 * Files made local at once. Many small files are bound by round trips, not bytes: this many requests in
 * flight fill the link, and a large file's own ranges (shared/ranged-download.ts) come on top.
 */
export const FILES_IN_FLIGHT = 16;

const ENTRY = /^([0-9a-f]{64})-([0-9a-f]{64})$/;

/** `pins`: copies being made from it now; an entry is never evicted while pinned (a copy would fail ENOENT). */
interface Entry { file: string; size: number; sha256: string; used: number; pins: number }

export interface MadeLocal {
  files: number;
  bytes: number;
  /** From the cache, of `files`, and their bytes (not downloaded). */
  hits: number;
  hitBytes: number;
  /** Each file made local, with the SHA-256 of what was written. */
  entries: ManifestEntry[];
}

export class DataCache {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;
  #ready: Promise<void> | null = null;

  constructor(workDir: string, maxBytes: number) {
    this.#dir = path.join(workDir, 'data-cache');
    this.#maxBytes = maxBytes;
  }

  /** Reads what an earlier agent process left (whole entries only: a partial file has another name). */
  #load(): Promise<void> {
    this.#ready ??= (async () => {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      for (const name of await readdir(this.#dir)) {
        const full = path.join(this.#dir, name);
        const m = ENTRY.exec(name);
        const s = await stat(full).catch(() => null);
        if (!m || !s?.isFile()) {
          await rm(full, { recursive: true, force: true });
          continue;
        }
        this.#entries.set(m[1]!, { file: full, size: s.size, sha256: m[2]!, used: s.mtimeMs, pins: 0 });
        this.#bytes += s.size;
      }
    })();
    return this.#ready;
  }

  /**
   * Makes every object under `prefix` local in `dir` (keys relative to the prefix): each a copy of its
   * cache entry, or downloaded (and then kept). A file whose download is not the size listed fails (the
   * object changed while it was read) rather than be cached or run on. FILES_IN_FLIGHT files at once, a
   * large one in parallel ranges; the manifest keeps the listing's order whatever order they end in.
   */
  async makeLocal(client: Minio.Client, bucket: string, prefix: string, dir: string, retry: RetryOptions, ranged: RangedOptions = {}): Promise<MadeLocal> {
    if (this.#maxBytes > 0) await this.#load();
    const objects = await listObjects(client, bucket, prefix, retry);
    const wanted = objects.flatMap((obj) => { const at = localPathOf(obj.key, prefix, dir); return at ? [{ o: obj, at }] : []; });
    const made = await mapBounded(wanted, FILES_IN_FLIGHT, async ({ o, at }) => {
      const id = o.etag ? createHash('sha256').update(`${bucket}\0${o.key}\0${o.etag}\0${o.size}`).digest('hex') : null;
      const entry = id ? this.#entries.get(id) : undefined;
      if (entry && entry.size === o.size && await this.#copyOut(entry, at.dest)) return { rel: at.rel, size: o.size, sha256: entry.sha256, hit: true };
      const got = await downloadRanged(client, bucket, o.key, at.dest, o.size, o.etag, retry, ranged);
      if (got.bytes !== o.size) throw new Error(`${o.key}: downloaded ${got.bytes} bytes, listed ${o.size}: the object changed while it was read`);
      if (id && this.#maxBytes > 0 && o.size <= this.#maxBytes) await this.#keep(id, at.dest, o.size, got.sha256);
      return { rel: at.rel, size: o.size, sha256: got.sha256, hit: false };
    }, retry.signal);
    const out: MadeLocal = { files: 0, bytes: 0, hits: 0, hitBytes: 0, entries: [] };
    for (const m of made) {
      out.files++;
      out.bytes += m.size;
      if (m.hit) { out.hits++; out.hitBytes += m.size; }
      out.entries.push({ path: m.rel, size: m.size, sha256: m.sha256 });
    }
    return out;
  }

  /**
   * A copy of the entry at `dest` (a reflink where the file system has them): the run may write its data,
   * never the entry. Pinned while it is made, so another run's eviction waits; false if the entry's file
   * is gone all the same (removed by hand), and the caller downloads instead.
   */
  async #copyOut(entry: Entry, dest: string): Promise<boolean> {
    entry.pins++;
    try {
      await mkdir(path.dirname(dest), { recursive: true });
      await copyFile(entry.file, dest, constants.COPYFILE_FICLONE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const id = [...this.#entries].find(([, e]) => e === entry)?.[0];
      if (id !== undefined) { this.#entries.delete(id); this.#bytes -= entry.size; }
      return false;
    } finally {
      entry.pins--;
    }
    entry.used = Date.now();
    void utimes(entry.file, new Date(), new Date()).catch(() => {});
    return true;
  }

  /** Copies a file just downloaded into the cache (atomically: a partial copy has another name), then evicts. */
  async #keep(id: string, from: string, size: number, sha256: string): Promise<void> {
    if (this.#entries.has(id)) return;
    const file = path.join(this.#dir, `${id}-${sha256}`);
    const tmp = path.join(this.#dir, `.partial-${randomBytes(6).toString('hex')}`);
    try {
      await copyFile(from, tmp, constants.COPYFILE_FICLONE);
      await rename(tmp, file);
    } catch {
      await rm(tmp, { force: true });
      return; // a full disk, say: the run goes on without caching
    }
    if (this.#entries.has(id)) return; // another attempt kept the same entry meanwhile (same name)
    this.#entries.set(id, { file, size, sha256, used: Date.now(), pins: 0 });
    this.#bytes += size;
    if (this.#bytes > this.#maxBytes) await this.#evict();
  }

  async #evict(): Promise<void> {
    const oldest = [...this.#entries].sort((a, b) => a[1].used - b[1].used);
    for (const [id, e] of oldest) {
      if (this.#bytes <= this.#maxBytes) break;
      if (e.pins > 0) continue; // being copied out: the next eviction takes it
      this.#entries.delete(id);
      this.#bytes -= e.size;
      await rm(e.file, { force: true });
    }
  }

  /** For tests and metrics: entries and their bytes. */
  get size(): { entries: number; bytes: number } { return { entries: this.#entries.size, bytes: this.#bytes }; }
}
