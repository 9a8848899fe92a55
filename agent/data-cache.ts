// The agent's cache of dataset objects (issue 11): a run of a dataset this agent fetched before copies
// each unchanged file from here instead of downloading it again. An entry is keyed by bucket, object key,
// ETag and size, so what the listing (it says what the dataset is now: read every run, or kept for runs of
// the same dataset generation for a short while, MakeLocalOptions generation) shows changed is a
// miss, and an entry never serves another object's key (one project cannot seed another's data with a
// file of the same MD5). Every file is hashed (SHA-256) as it is written, and the hash kept in the entry's
// name, so the run's lineage manifest (agent/lineage.ts manifestOf) needs no second read of the data; a
// large file where runs get links is hashed instead right after the make-local, from its entry, on a thread
// of its own while the run starts (MakeLocalOptions deferHashes): its pull is then the download alone.
// The cache folder is the agent's (0700) and no run can change what a later one reads: where runs have
// uids of their own (a root agent's --run-uids, the default) a run's file is a hard link to the entry,
// which is the agent's and 0644, so the run reads it and can neither write it nor change its mode (the
// same as a copy the agent made, which is how its input data is handed over anyway), and a warm run of
// 20,000 files costs 20,000 link() calls instead of 20,000 copies; where runs share the agent's uid
// (single-tenant) a run could write through a link, so it gets a copy (a reflink where the file system
// has them). An entry evicted while a run holds a link to it keeps its blocks until that run's folder
// goes. The least recently used entries go beyond --data-cache-mb; 0 keeps nothing.
// A file to be kept is downloaded into the cache folder first, as `<entry id>.got.part` (the id names the
// key, ETag and size), then linked or copied out: a pull cut off by a dropped connection or an agent restart leaves
// that prefix, and the next pull of the same object continues it (shared/ranged-download.ts); an object
// changed since has another id and starts afresh. Partial files nobody continued for a day go.
// The next run's data folder can be made before its claim (stage: agent/prepare-next.ts, issue 22), in a
// folder of the agent's beside the cache; the run's own make-local then renames it into the attempt's
// folder (one rename, same file system) if the dataset's listing is still the one it was made from, and
// otherwise makes it local as usual. One such folder at most, dropped when another is staged or unused.
// Where runs get links (and `spares` is on: the agent's default there), a run's make-local of a dataset of
// SPARE_FROM_FILES files or more leaves such a folder behind it for the next run of the same dataset, linked
// from the listing it has just read (no second listing, nothing downloaded) SPARE_DELAY_MS later, off that
// run's start: a warm run of 20,000 files spent 0.3 s of the agent's thread on its links, now made while
// the run before it trains. Only when the cache holds every file and nothing but an older spare is staged:
// the next run prepare-next knows of takes precedence.
import { createHash, randomBytes } from 'node:crypto';
import { constants, linkSync, mkdirSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import type { ObjectEntry as StoredObject } from '../shared/storage.js';
import path from 'node:path';
import type * as Minio from 'minio';
import { listHints, listObjects, localPathOf, type RetryOptions } from '../shared/storage.js';
import { mapBounded, setRecent } from '../shared/bounded.js';
import { errorMessage } from '../shared/errors.js';
import { hashFile } from '../shared/hash-thread.js';
import { downloadRanged, RANGE_BYTES, RANGES_IN_FLIGHT, type Downloaded, type RangedOptions } from '../shared/ranged-download.js';
import { manifestOf, type DataManifest, type ManifestEntry } from './lineage.js';

/**
 * Files made local at once. Many small files are bound by round trips, not bytes: this many requests in
 * flight fill the link, and a large file's own ranges (shared/ranged-download.ts) come on top.
 */
export const FILES_IN_FLIGHT = 16;
/**
 * A pull with at least this many files to download asks for read-only keys for their GETs (MakeLocalOptions
 * readClient): MinIO evaluates an attempt's session policy on every request, and the read-only one, two
 * statements instead of five, in about 60% of the time (measured: 620 against 1,000 µs of MinIO's CPU per
 * GET of a 4 KiB object, 300 with static keys); 20,000 files saved about 7 s of MinIO's CPU. Below this the
 * extra call (an STS request) is not worth it.
 */
export const READ_KEYS_FROM_FILES = 256;
/**
 * A file larger than this is continued after a drop from the `.part` an earlier try left; for a smaller one,
 * looking for a `.part` costs more than fetching it again (a pull of 20,000 files made 20,000 stat calls).
 */
const RESUME_FROM_BYTES = 1024 * 1024;
/**
 * A make-local of at least this many files leaves a spare folder of links for the next run of its dataset
 * (DataCache.spares). Fewer are linked in a few milliseconds on the run's own path: not worth a folder.
 */
export const SPARE_FROM_FILES = 256;
/**
 * A spare starts this long after its run's make-local: off that run's start (the agent's one thread), and
 * late enough that a short run is over first and leaves its own folder as the spare instead
 * (DataCache.recycle): a run of 20,000 files and a noop train() took 0.5 s from its make-local to its end
 * here, and the spare's 20,000 links beside the run's 20,000 unlinks slowed the next run's start by half.
 * A run of the same dataset that asks for it before starts it at once.
 */
export const SPARE_DELAY_MS = 2000;
/**
 * A file of this size or more downloaded into the cache by a make-local with deferHashes is hashed after it,
 * from its entry (hashFile, shared/hash-thread.ts). On this 2-core machine the SHA-256 of a 1 GiB pull,
 * done as the bytes came, shared the cores with MinIO and the writes and made the pull 0.5-1 s longer.
 */
export const DEFER_HASH_FROM_BYTES = 4 * 1024 * 1024;
/** Cache entries linked into a run's folder between two turns of the event loop (#linkHits). */
const LINKS_PER_TURN = 256;
/** Datasets (bucket and prefix) whose listing hints are kept: a few strings each, one per 1,000 files. */
const LIST_HINT_PREFIXES = 256;
/** Objects in the listings kept for runs of the same dataset generation (DataCache #trusted), all datasets together. */
const TRUSTED_OBJECTS = 200_000;

const ENTRY = /^([0-9a-f]{64})-([0-9a-f]{64})$/;
/** A download into the cache not finished yet (downloadRanged's `.part` of `<id>.got`). */
const PARTIAL = /^[0-9a-f]{64}\.got\.part$/;
/** A partial download not continued for this long is given up at the agent's start. */
const PARTIAL_KEEP_MS = 24 * 3600 * 1000;
/**
 * An entry's mtime (its last use across agent restarts, for the least-recently-used order) is written at
 * most this often: a warm run of 20,000 files would otherwise pay 20,000 utimes() calls for an order that
 * only needs to be right to within minutes. In memory it is exact.
 */
const TOUCH_EVERY_MS = 10 * 60 * 1000;

/**
 * `pins`: copies being made from it now; an entry is never evicted while pinned (a copy would fail ENOENT).
 * An entry downloaded without its hash (MakeLocalOptions deferHashes) is `<id>.got` with `sha256` '' while
 * `hashing` (pinned meanwhile); once hashed it is linked as `<id>-<sha256>`, `file` set to that name, and
 * only then `<id>.got` removed, so whoever read `file` before finds one name or the other (#copyOut).
 * `dropWhenHashed`: the run that downloaded it could not use it (a full disk): it leaves once hashed.
 */
interface Entry {
  file: string; size: number; sha256: string; used: number; pins: number; /** the file's mtime as last written */ touched: number;
  hashing?: Promise<string> | null; dropWhenHashed?: boolean;
}

/** An entry's SHA-256, or the promise of it while it is hashed after its download. */
const shaOf = (e: Entry): string | Promise<string> => e.hashing ?? e.sha256;

/**
 * MadeLocal's entries from files whose hashes may still be coming: those are '' until `hashed` resolves
 * (it fills them in, in place), and `hashed` rejects if one of them cannot be had.
 */
function withHashes(out: MadeLocal, files: readonly { rel: string; size: number; sha256: string | Promise<string> }[]): void {
  const later: Promise<void>[] = [];
  for (const f of files) {
    const e: ManifestEntry = { path: f.rel, size: f.size, sha256: typeof f.sha256 === 'string' ? f.sha256 : '' };
    out.entries.push(e);
    if (typeof f.sha256 !== 'string') later.push(f.sha256.then((h) => { e.sha256 = h; }));
  }
  if (later.length > 0) {
    out.hashedAfter = later.length;
    out.hashed = Promise.all(later).then(() => {});
    out.hashed.catch(() => {}); // the run may end before anyone asks
  }
}

export interface MadeLocal {
  files: number;
  bytes: number;
  /** From the cache, of `files`, and their bytes (not downloaded). */
  hits: number;
  hitBytes: number;
  /** Of the bytes downloaded, those an earlier, cut-off pull had already brought (continued, not fetched). */
  resumedBytes: number;
  /**
   * Each file made local, with the SHA-256 of what was written; '' for a file still being hashed (deferHashes)
   * until `hashed` resolves.
   */
  entries: ManifestEntry[];
  /** Set when some entries' hashes come after the make-local (deferHashes): resolves once they are all in. */
  hashed?: Promise<void>;
  /** How many entries `hashed` waits for. */
  hashedAfter?: number;
  /** The whole folder was made before the run's claim (stage), and moved into place. */
  staged?: boolean;
  /** That folder was the spare the last run of this dataset left (DataCache.spares), not a stage for this run. */
  spare?: boolean;
  /** Its GETs used read-only keys (MakeLocalOptions readClient). */
  readKeys?: boolean;
  /** manifestOf(entries), made ahead (a spare folder's, while the run before it trained); absent: make it. */
  manifest?: DataManifest;
  /** Made from a listing of the same dataset generation made shortly before (MakeLocalOptions generation), not a new one. */
  listingTrusted?: boolean;
  /**
   * What the folder was made from, where runs get links: the listing and each file's cache entry (null for
   * a file that is not one), by id and as the entry itself (`entries`: an id evicted and fetched again is
   * another entry, another file, while the folder still links the old one). Its folder may then become the
   * next run's spare once its run is over (DataCache.recycle).
   */
  from?: {
    bucket: string; prefix: string; listing: readonly StoredObject[]; ids: readonly (string | null)[] | ReadonlySet<string>;
    entries: ReadonlyMap<string, object>;
  };
  /** Why such a listing turned out out of date (a GET found an object gone or replaced), and the pull began again from a fresh one. */
  relisted?: string;
}

export interface MakeLocalOptions {
  /**
   * The client for the GETs of a pull of READ_KEYS_FROM_FILES files or more: one with read-only keys.
   * Called for each file (so it may renew them); when it fails, the pull goes on with the listing's client.
   */
  readClient?: () => Promise<Minio.Client>;
  /**
   * Files of DEFER_HASH_FROM_BYTES or more downloaded into the cache are hashed after the make-local, from
   * their entry, on a thread of their own (MadeLocal.hashed), instead of as they come: the pull's own path
   * is then the download. Only where runs get links (an entry is the agent's and the run's uid cannot write
   * it, so what is hashed later is what was made local); elsewhere ignored.
   */
  deferHashes?: boolean;
  /**
   * The dataset's generation at the run's claim (Dispatch.dataset_generation; 0: unknown). A listing made
   * under the same generation within --listing-trust-seconds is used again instead of listing the dataset.
   */
  generation?: number;
  /**
   * A moment before the run's claim was sent (its doorbell): only a listing that ended before it may be
   * used (DataCache #trustedListing). Without it, the dataset is listed.
   */
  claimedAfter?: number;
}

/** A listing that may be used again for runs of the same dataset generation (DataCache #trusted). */
interface TrustedListing { generation: number; objects: StoredObject[]; at: number; end: number }

/** A GET that says the listing it came from is out of date: the object is gone, or another one (If-Match). */
function staleListing(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'PreconditionFailed' || code === 'NoSuchKey' || code === 'NotFound') return true;
    if (e instanceof Error && /: wrote \d+ bytes of \d+$/.test(e.message)) return true;
  }
  return false;
}

/** A data folder made ahead for the next run (DataCache.stage), or left by a run for the next like it (spares). */
interface Staged {
  bucket: string; prefix: string; listing: readonly StoredObject[]; dir: string; made: MadeLocal; spare: boolean;
  /** A spare's cache entries: an eviction of one of them drops the spare (its link would keep the blocks). */
  ids?: ReadonlySet<string>;
}

/** Whether two listings name the same objects (key, ETag, size) in the same order: a folder made from one is the other's. */
function sameListing(a: readonly StoredObject[], b: readonly StoredObject[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (x.key !== y.key || x.etag !== y.etag || x.size !== y.size) return false;
  }
  return true;
}

export class DataCache {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #entries = new Map<string, Entry>();
  /** Downloads into the cache in progress, by entry id. */
  readonly #fetching = new Map<string, Promise<{ entry: Entry; resumedFrom: number | null }>>();
  #bytes = 0;
  #ready: Promise<void> | null = null;
  /**
   * Per bucket and prefix, where the last listing of it crossed into a new page (shared/storage.ts
   * listHints): the next listing of a dataset seen before is listed in ranges at once, not page after page.
   * In memory only, the most recently listed LIST_HINT_PREFIXES.
   */
  readonly #listHints = new Map<string, string[]>();
  /**
   * Per bucket and prefix, its last listing made for a run with a dataset generation (MakeLocalOptions
   * generation), and when that listing began: a run of the same generation within #trustMs uses it. At
   * most TRUSTED_OBJECTS objects in all (about 200 bytes each), the most recently listed first.
   */
  readonly #trusted = new Map<string, TrustedListing>();
  /** --listing-trust-seconds in ms (0: every run lists its dataset). */
  readonly #trustMs: number;
  /** Where staged folders go (the agent's, 0700), emptied at the first stage of this process. */
  readonly #stageDir: string;
  #stageReady: Promise<void> | null = null;
  #staged: Staged | null = null;
  /** A stage under way: a run's make-local of the same dataset waits for it rather than copy it twice. */
  #staging: { bucket: string; prefix: string; done: Promise<void> } | null = null;
  /** Hand runs hard links to the entries instead of copies: only where runs never have the agent's uid. */
  #links = false;
  /** Leave a spare folder of links after a make-local of many files (only with #links: copies would cost the bytes). */
  #spares = false;
  /** Bumped by every stage and drop: a spare still being linked when it changes is not installed. */
  #stageSeq = 0;
  /** A spare being linked (#spare); settles, never rejects, once it is installed or removed. */
  #sparing: Promise<void> | null = null;
  /** stage() calls under way: no spare starts or is kept meanwhile (the stage is for the run known to be next). */
  #stagesInFlight = 0;
  /** A spare waiting SPARE_DELAY_MS to start (off the run's own start); `start` starts it now. */
  #pendingSpare: { bucket: string; prefix: string; listing: readonly StoredObject[]; generation: number; timer: NodeJS.Timeout; start: () => void } | null = null;

  /** What hashes a file of an entry downloaded unhashed (deferHashes); tests hold it to see what waits for it. */
  readonly #hashFile: (file: string) => Promise<{ sha256: string; size: number }>;

  constructor(workDir: string, maxBytes: number, o: { hashFile?: (file: string) => Promise<{ sha256: string; size: number }>; listingTrustMs?: number } = {}) {
    this.#hashFile = o.hashFile ?? hashFile;
    this.#trustMs = o.listingTrustMs ?? 0;
    this.#dir = path.join(workDir, 'data-cache');
    this.#stageDir = path.join(workDir, 'data-staged');
    this.#maxBytes = maxBytes;
  }

  /**
   * Makes the dataset under `prefix` local in a folder of the agent's, for the run expected next: its
   * make-local takes that folder (makeLocal) if nothing under the prefix changed meanwhile. Files come
   * through the cache as any run's do (its cap holds). Replaces the folder staged before, if any.
   */
  async stage(client: Minio.Client, bucket: string, prefix: string, retry: RetryOptions): Promise<void> {
    this.#stagesInFlight++;
    try {
      await this.#stageFolder();
      await this.dropStaged();
      const done = this.#stage(client, bucket, prefix, retry);
      const staging = { bucket, prefix, done: done.catch(() => {}) };
      this.#staging = staging;
      try {
        await done;
      } finally {
        if (this.#staging === staging) this.#staging = null;
      }
    } finally {
      this.#stagesInFlight--;
    }
  }

  async #stage(client: Minio.Client, bucket: string, prefix: string, retry: RetryOptions): Promise<void> {
    // 0755 like a folder makeLocal makes: once in the attempt's folder, the run's uid reads it.
    const dir = path.join(this.#stageDir, randomBytes(8).toString('hex'));
    await mkdir(dir, { mode: 0o755 });
    try {
      const { made, objects } = await this.#make(client, bucket, prefix, dir, retry, {});
      if (!made.hashed) made.manifest = manifestOf(made.entries); // off the run's start, as a spare's
      const before = this.#staged; // none: the drop above, and no spare is kept while a stage runs
      if (before) void rm(before.dir, { recursive: true, force: true }).catch(() => {});
      this.#staged = { bucket, prefix, listing: objects, dir, made, spare: false };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The folder staged folders go in, emptied of what an earlier agent process left, once per process. */
  #stageFolder(): Promise<void> {
    this.#stageReady ??= rm(this.#stageDir, { recursive: true, force: true }).then(() => mkdir(this.#stageDir, { mode: 0o700 })).then(() => {});
    return this.#stageReady;
  }

  /** No more spares, and the staged folder removed: the agent stops. */
  async close(): Promise<void> {
    this.#spares = false;
    await this.dropStaged();
  }

  /** Removes the staged folder no run took (a preparation failed or called off, or the agent stops); a spare being linked is not kept. */
  async dropStaged(): Promise<void> {
    this.#stageSeq++;
    if (this.#pendingSpare) { clearTimeout(this.#pendingSpare.timer); this.#pendingSpare = null; }
    await this.#sparing; // it sees the new number and removes what it linked
    const s = this.#staged;
    this.#staged = null;
    if (s) await rm(s.dir, { recursive: true, force: true });
  }

  /** The folder staged for this dataset, moved to `dir`, if its listing is `objects`; null otherwise. */
  async #takeStaged(bucket: string, prefix: string, objects: readonly StoredObject[], dir: string): Promise<MadeLocal | null> {
    const s = this.#staged;
    if (!s || s.bucket !== bucket || s.prefix !== prefix) return null;
    this.#staged = null;
    // Nothing of it is downloaded by the run: counted as the cache's.
    if (sameListing(s.listing, objects) && await rename(s.dir, dir).then(() => true, () => false)) {
      return { ...s.made, hits: s.made.files, hitBytes: s.made.bytes, resumedBytes: 0, staged: true, ...(s.spare ? { spare: true } : {}) };
    }
    // Off the run's path: a spare of 20,000 links takes a while to remove.
    void rm(s.dir, { recursive: true, force: true }).catch(() => {});
    return null;
  }

  /**
   * A run's data folder, once its run is over, kept as the spare for the next run of its dataset instead of
   * removed (and a spare linked again for the next run): 20,000 unlinks and 20,000 links fewer. Only where
   * runs get links (`made.from`): the folder and its files are then the agent's (0755 and 0644 at most) and
   * the run's uid could not change them, so it holds exactly what `made` says. Taken where a spare of it would
   * be linked (#spare's rules): nothing staged but an older spare of another dataset, no stage under way, no
   * spare of another dataset waiting, and every file still an entry of the cache (an eviction of one drops
   * it, as any spare's). A spare of this dataset waiting to start is called off: this folder is it. Resolves
   * with whether the folder was kept (then moved away from `dir`); never rejects.
   */
  async recycle(made: MadeLocal, dir: string): Promise<boolean> {
    const from = made.from;
    if (!from || from.listing.length < SPARE_FROM_FILES) return false;
    const { bucket, prefix, listing } = from;
    const free = () => {
      const st = this.#staged, p = this.#pendingSpare;
      return this.#links && this.#spareMayGoIn()
        // An older spare of another dataset gives way; one of this dataset (linked while the run trained) stays.
        && (!st || st.bucket !== bucket || st.prefix !== prefix)
        // A spare waiting to start is called off only for a folder of the same listing (a run that ended
        // after a push of its dataset leaves a folder of the listing before it).
        && (!p || (p.bucket === bucket && p.prefix === prefix && sameListing(p.listing, listing)));
    };
    if (!free()) return false;
    // Every hash in (a large pull's come after it, and are not waited for here: the attempt's end would
    // wait on them): the next run's lineage says what the carried entries say.
    if (made.entries.some((e) => !e.sha256)) return false;
    const ids = from.ids instanceof Set ? from.ids : (from.ids as readonly (string | null)[]).every(Boolean) ? new Set(from.ids as readonly string[]) : null;
    if (!ids) return false;
    // The very entries the folder links: an entry evicted meanwhile and fetched again under the same id is
    // another file, and the folder would keep the old one's blocks outside the cache's cap.
    const cached = () => {
      for (const id of ids) {
        const linked = from.entries.get(id);
        if (!linked || this.#entries.get(id) !== linked) return false;
      }
      return true;
    };
    if (!cached()) return false;
    const manifest = made.manifest ?? manifestOf(made.entries);
    try {
      await this.#stageFolder();
    } catch {
      return false;
    }
    const seq = this.#stageSeq;
    const into = path.join(this.#stageDir, randomBytes(8).toString('hex'));
    if (!free() || !(await rename(dir, into).then(() => true, () => false))) return false;
    // Checked again once it is ours, with nothing awaited before it is installed: what changed meanwhile (a
    // stage, a drop, an entry evicted) wins, and the folder goes.
    if (seq !== this.#stageSeq || !free() || !cached()) {
      await rm(into, { recursive: true, force: true }).catch(() => {});
      return false;
    }
    if (this.#pendingSpare) { clearTimeout(this.#pendingSpare.timer); this.#pendingSpare = null; }
    const older = this.#staged;
    if (older) void rm(older.dir, { recursive: true, force: true }).catch(() => {});
    this.#stageSeq++;
    // Used by this run, as a run's links mark them: the least recently used go first, and a dataset run
    // again and again from its kept folder must not look unused.
    const now = Date.now();
    for (const id of ids) this.#markUsed(this.#entries.get(id)!, now);
    const spare: MadeLocal = { files: made.files, bytes: made.bytes, hits: 0, hitBytes: 0, resumedBytes: 0, entries: made.entries, manifest, from: { bucket, prefix, listing, ids, entries: from.entries } };
    this.#staged = { bucket, prefix, listing, dir: into, made: spare, spare: true, ids };
    return true;
  }

  /**
   * Runs get hard links to the cache's entries rather than copies: set by the agent when every run has a
   * uid of its own (agent/containment.ts, a pool of run uids), so none can write an entry (it is the
   * agent's, 0644). Never for runs that share the agent's uid.
   */
  set linksForRuns(on: boolean) { this.#links = on; }

  /**
   * After a make-local of SPARE_FROM_FILES files or more, link a spare folder of the same listing for the
   * next run of that dataset (only where linksForRuns is on). Set by the agent wherever runs get links.
   */
  set spares(on: boolean) { this.#spares = on; }

  /**
   * Links a spare folder of `objects` (the listing a make-local just used) in the background, SPARE_DELAY_MS
   * later (the run that made it local is starting meanwhile, on the same thread) or as soon as a run of the
   * same dataset asks for it (#make), if nothing but an older spare (which it replaces) is staged or being
   * staged then. A stage (prepare-next's, for the run it knows is next) or a drop started meanwhile wins,
   * and the spare is removed instead of kept. Only when the cache holds every file (all links or nothing);
   * the entries are pinned while they are linked, so none is evicted under it, and an eviction of one
   * afterwards drops it (#evict). Linked LINKS_PER_TURN at a time, as a run's own links are. One spare
   * waits at a time: the first (a run's dataset, not its evaluation dataset after it). Never fails a run.
   */
  #spare(bucket: string, prefix: string, objects: readonly StoredObject[], generation = 0): void {
    if (!this.#links || !this.#spares || objects.length < SPARE_FROM_FILES || this.#pendingSpare) return;
    const start = () => {
      if (this.#pendingSpare !== pending) return;
      clearTimeout(pending.timer);
      this.#pendingSpare = null;
      // An older spare (of this dataset or another) gives way to the newest: the dataset run last is the
      // best guess for the next. A stage, for the run prepare-next knows is next, never does.
      if (!this.#spareMayGoIn()) return;
      const older = this.#staged;
      if (older) {
        this.#staged = null;
        void rm(older.dir, { recursive: true, force: true }).catch(() => {});
      }
      this.#startSpare(bucket, prefix, objects);
    };
    const pending = { bucket, prefix, listing: objects, generation, timer: setTimeout(start, SPARE_DELAY_MS).unref(), start };
    this.#pendingSpare = pending;
  }

  /**
   * Whether a spare (linked, or a run's own folder: recycle) may be staged now: spares are on, no stage is
   * under way, and nothing is staged but an older spare, which gives way to it.
   */
  #spareMayGoIn(): boolean {
    return this.#spares && !this.#staging && this.#stagesInFlight === 0 && (!this.#staged || this.#staged.spare);
  }

  #startSpare(bucket: string, prefix: string, objects: readonly StoredObject[]): void {
    const seq = ++this.#stageSeq;
    const done = (async () => {
      await this.#stageFolder();
      const dir = path.join(this.#stageDir, randomBytes(8).toString('hex'));
      const wanted = objects.flatMap((obj) => { const at = localPathOf(obj.key, prefix, dir); return at ? [{ o: obj, at }] : []; });
      const ids: (string | null)[] = [];
      for (const { o } of wanted) {
        if (ids.length > 0 && ids.length % LINKS_PER_TURN === 0) await new Promise<void>((r) => setImmediate(r));
        const id = this.#idOf(bucket, o);
        // A file the cache does not hold (over its cap, evicted, no ETag): the spare could not be whole.
        if (!id || this.#entries.get(id)?.size !== o.size) return;
        ids.push(id);
      }
      if (seq !== this.#stageSeq) return;
      await mkdir(dir, { mode: 0o755 });
      let kept = false;
      try {
        const linked = await this.#linkHits(wanted, ids);
        if (linked.size !== wanted.length || seq !== this.#stageSeq || this.#staged || this.#stagesInFlight > 0) return;
        const made: MadeLocal = { files: 0, bytes: 0, hits: 0, hitBytes: 0, resumedBytes: 0, entries: [] };
        for (const { o } of wanted) { made.files++; made.bytes += o.size; }
        withHashes(made, wanted.map(({ o, at }, i) => ({ rel: at.rel, size: o.size, sha256: linked.get(i)! })));
        // Its manifest too, now, while the run before it trains: sorting and hashing 20,000 entries took
        // 30 ms of the agent's thread on the next run's start.
        if (!made.hashed) made.manifest = manifestOf(made.entries);
        const idSet = new Set(ids as string[]);
        made.from = { bucket, prefix, listing: objects, ids: idSet, entries: this.#entriesOf(ids) };
        this.#staged = { bucket, prefix, listing: objects, dir, made, spare: true, ids: idSet };
        kept = true;
      } finally {
        if (!kept) await rm(dir, { recursive: true, force: true });
      }
    })().catch(() => {});
    const staging = { bucket, prefix, done };
    this.#staging = staging;
    this.#sparing = done;
    void done.finally(() => {
      if (this.#staging === staging) this.#staging = null;
      if (this.#sparing === done) this.#sparing = null;
    });
  }

  /** The entries the cache holds now under `ids` (MadeLocal.from.entries). */
  #entriesOf(ids: readonly (string | null)[]): Map<string, object> {
    const out = new Map<string, object>();
    for (const id of ids) {
      const e = id ? this.#entries.get(id) : undefined;
      if (e) out.set(id!, e);
    }
    return out;
  }

  /** The cache entry an object would be kept under: bucket, key, ETag and size (null without an ETag: not kept). */
  #idOf(bucket: string, o: StoredObject): string | null {
    return o.etag ? createHash('sha256').update(`${bucket}\0${o.key}\0${o.etag}\0${o.size}`).digest('hex') : null;
  }

  /** Reads what an earlier agent process left (whole entries only: a partial file has another name). */
  #load(): Promise<void> {
    this.#ready ??= (async () => {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      // The agent's alone whatever made it (an earlier agent, or a folder made again after it was removed
      // by hand): every run uid can reach the work dir, and the entries are 0644.
      await chmod(this.#dir, 0o700);
      for (const name of await readdir(this.#dir)) {
        const full = path.join(this.#dir, name);
        const m = ENTRY.exec(name);
        const s = await stat(full).catch(() => null);
        if (PARTIAL.test(name) && s?.isFile() && Date.now() - s.mtimeMs < PARTIAL_KEEP_MS) continue;
        if (!m || !s?.isFile()) {
          await rm(full, { recursive: true, force: true });
          continue;
        }
        this.#entries.set(m[1]!, { file: full, size: s.size, sha256: m[2]!, used: s.mtimeMs, pins: 0, touched: s.mtimeMs });
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
  async makeLocal(client: Minio.Client, bucket: string, prefix: string, dir: string, retry: RetryOptions, ranged: RangedOptions = {}, o: MakeLocalOptions = {}): Promise<MadeLocal> {
    const trust = { used: false };
    try {
      const made = (await this.#make(client, bucket, prefix, dir, retry, ranged, true, o, trust)).made;
      if (trust.used) made.listingTrusted = true;
      return made;
    } catch (err) {
      if (!trust.used || retry.signal?.aborted || !staleListing(err)) throw err;
      // An object of the listing gone or replaced behind Trainyard's back (its GET's If-Match failed): the
      // listing is not trusted again, and the pull starts over in an emptied folder from a fresh one.
      this.#trusted.delete(`${bucket}\0${prefix}`);
      const left = await readdir(dir).catch(() => []);
      await Promise.all(left.map((e) => rm(path.join(dir, e), { recursive: true, force: true })));
      const made = (await this.#make(client, bucket, prefix, dir, retry, ranged, true, o)).made;
      made.relisted = errorMessage(err);
      return made;
    }
  }

  /**
   * The listing a make-local may use instead of listing the dataset: one made under the run's generation,
   * begun within --listing-trust-seconds, and ended before the run's claim was sent. The claim read the
   * generation after the listing, the run that kept it read the same one before it, and a generation is
   * never given twice: no push began or ended in between, and none was under way (claims say 0 then).
   */
  #trustedListing(key: string, o: MakeLocalOptions): StoredObject[] | null {
    const { generation, claimedAfter } = o;
    if (!generation || generation <= 0 || claimedAfter === undefined || this.#trustMs <= 0) return null;
    const t = this.#trusted.get(key);
    if (!t || Date.now() - t.at > this.#trustMs) return null;
    return t.generation === generation && t.end < claimedAfter ? t.objects : null;
  }

  /**
   * Keeps the listing just made (begun at `at`) for runs of the same generation, if it fits; a listing made
   * without one (a stage: its run's generation is not known yet) that differs from the kept one drops it.
   */
  #listed(key: string, objects: StoredObject[], at: number, generation: number | undefined): void {
    const kept = this.#trusted.get(key);
    if (!generation || generation <= 0 || this.#trustMs <= 0) {
      if (kept && !sameListing(kept.objects, objects)) this.#trusted.delete(key);
      return;
    }
    this.#trusted.delete(key);
    if (objects.length > TRUSTED_OBJECTS) return; // never kept, and takes no other's place
    const now = Date.now();
    // The newest last (setRecent's order): what has aged past the trust goes, then the oldest until it fits.
    let total = objects.length;
    for (const [k, t] of this.#trusted) {
      if (now - t.at > this.#trustMs) this.#trusted.delete(k);
      else total += t.objects.length;
    }
    for (const [k, t] of this.#trusted) {
      if (total <= TRUSTED_OBJECTS) break;
      this.#trusted.delete(k);
      total -= t.objects.length;
    }
    if (total <= TRUSTED_OBJECTS) this.#trusted.set(key, { generation, objects, at, end: now }); // deleted above: it goes last, the newest
  }

  async #make(client: Minio.Client, bucket: string, prefix: string, dir: string, retry: RetryOptions, ranged: RangedOptions, takeStaged = false, local: MakeLocalOptions = {}, trust: { used: boolean } | null = null): Promise<{ made: MadeLocal; objects: StoredObject[] }> {
    if (this.#maxBytes > 0) await this.#load();
    // A spare for this dataset waiting to start: this run is what it was for, so it starts now, beside the
    // listing. Unless the run was claimed under another generation of the dataset (a push since, or one
    // under way): its listing is then another, and the spare would be linked only to be thrown away.
    const pending = this.#pendingSpare;
    if (takeStaged && pending?.bucket === bucket && pending.prefix === prefix) {
      if (pending.generation > 0 && local.generation !== pending.generation) { clearTimeout(pending.timer); this.#pendingSpare = null; }
      else pending.start();
    }
    // The run expected next, claimed while its folder is being staged: the staging's copy is this run's.
    const staging = this.#staging;
    if (takeStaged && staging?.bucket === bucket && staging.prefix === prefix) await staging.done;
    const hintKey = `${bucket}\0${prefix}`;
    // Looked up after the waits above: a stage waited for may have listed the dataset changed meanwhile.
    let objects = trust ? this.#trustedListing(hintKey, local) : null;
    if (objects) trust!.used = true;
    else {
      const at = Date.now(); // what is trusted is what the bucket held when the listing began, at the latest
      objects = await listObjects(client, bucket, prefix, retry, this.#listHints.get(hintKey));
      setRecent(this.#listHints, hintKey, listHints(objects), LIST_HINT_PREFIXES);
      this.#listed(hintKey, objects, at, local.generation);
    }
    const staged = takeStaged ? await this.#takeStaged(bucket, prefix, objects, dir) : null;
    if (staged) {
      this.#spare(bucket, prefix, objects, local.generation);
      return { made: staged, objects };
    }
    const wanted = objects.flatMap((obj) => { const at = localPathOf(obj.key, prefix, dir); return at ? [{ o: obj, at }] : []; });
    // Ranges only where files alone do not fill the connections: several large files at once already do,
    // and each split into ranges too would only add requests and out-of-order bytes held in memory.
    const large = wanted.filter(({ o }) => o.size > (ranged.rangeBytes ?? RANGE_BYTES)).length;
    const rangesEach = Math.max(1, Math.floor(RANGES_IN_FLIGHT / Math.max(1, large)));
    // Each folder made once per make-local, not once per file (20,000 files in a few folders).
    const folders = new Map<string, Promise<unknown>>();
    const folderOf = (dest: string) => {
      const d = path.dirname(dest);
      let p = folders.get(d);
      // 0755 at most, whatever the agent's umask: a run's uid must never write its data folder (DataCache.recycle).
      if (!p) { p = mkdir(d, { recursive: true, mode: 0o755 }); folders.set(d, p); }
      return p;
    };
    const ids = wanted.map(({ o }) => this.#idOf(bucket, o));
    const linked = this.#links ? await this.#linkHits(wanted, ids) : new Map<number, string | Promise<string>>();
    // Many files to fetch: their GETs with read-only keys, if they can be had (the listing's otherwise).
    let readKeys = false;
    const { readClient } = local;
    // Files to download: neither linked nor held by the cache (copied out: runs that share the agent's uid).
    const toFetch = wanted.reduce((n, w, i) => n + (linked.has(i) || (ids[i] && this.#entries.get(ids[i]!)?.size === w.o.size) ? 0 : 1), 0);
    const defer = Boolean(local.deferHashes) && this.#links;
    const getter = readClient && toFetch >= READ_KEYS_FROM_FILES
      ? await readClient().then(() => { readKeys = true; return () => readClient().catch(() => client); }, () => null)
      : null;
    const clientNow = getter ?? (() => Promise.resolve(client));
    const made = await mapBounded(wanted, FILES_IN_FLIGHT, async ({ o, at }, i) => {
      const id = ids[i]!;
      const sha256 = linked.get(i);
      if (sha256 !== undefined) return { rel: at.rel, size: o.size, sha256, hit: true, resumed: 0 };
      const entry = id ? this.#entries.get(id) : undefined;
      if (entry && entry.size === o.size && await this.#copyOut(entry, at.dest, folderOf)) return { rel: at.rel, size: o.size, sha256: shaOf(entry), hit: true, resumed: 0 };
      const opts = { parallel: rangesEach, ...ranged };
      if (id && this.#maxBytes > 0 && o.size <= this.#maxBytes) {
        const get = await clientNow();
        const got = await this.#fetchInto(id, () => downloadRanged(get, bucket, o.key, path.join(this.#dir, `${id}.got`), o.size, o.etag, retry,
          { ...opts, resume: o.size > RESUME_FROM_BYTES, folderMade: true, folderMode: 0o700, hash: !(defer && o.size >= DEFER_HASH_FROM_BYTES) }));
        // A copy out that fails (a full disk, say) takes the entry this call just made with it: the disk
        // gets its space back, and the cache keeps nothing of a pull whose run failed on it.
        const copied = await this.#copyOut(got.entry, at.dest, folderOf).catch(async (err: unknown) => {
          // One still being hashed (pinned by its hash) goes once hashed.
          if (got.resumedFrom !== null && got.entry.hashing) got.entry.dropWhenHashed = true;
          if (got.resumedFrom !== null && this.#entries.get(id) === got.entry && got.entry.pins === 0) {
            this.#entries.delete(id);
            this.#bytes -= got.entry.size;
            await rm(got.entry.file, { force: true });
          }
          throw err;
        });
        if (this.#bytes > this.#maxBytes) await this.#evict();
        if (copied) return { rel: at.rel, size: o.size, sha256: shaOf(got.entry), hit: got.resumedFrom === null, resumed: got.resumedFrom ?? 0 };
      }
      await folderOf(at.dest);
      const got = await downloadRanged(await clientNow(), bucket, o.key, at.dest, o.size, o.etag, retry, { ...opts, folderMade: true, folderMode: 0o755 });
      return { rel: at.rel, size: o.size, sha256: got.sha256!, hit: false, resumed: 0 };
    }, retry.signal);
    const out: MadeLocal = { files: 0, bytes: 0, hits: 0, hitBytes: 0, resumedBytes: 0, entries: [], ...(readKeys ? { readKeys } : {}) };
    for (const m of made) {
      out.files++;
      out.bytes += m.size;
      if (m.hit) { out.hits++; out.hitBytes += m.size; }
      out.resumedBytes += m.resumed;
    }
    withHashes(out, made);
    if (this.#links) out.from = { bucket, prefix, listing: objects, ids, entries: this.#entriesOf(ids) };
    if (takeStaged) this.#spare(bucket, prefix, objects, local.generation);
    return { made: out, objects };
  }

  /**
   * Links every wanted file the cache holds to its entry, synchronously, LINKS_PER_TURN between two turns
   * of the event loop; resolves with the indexes of those linked and their entries' SHA-256, taken while
   * they are pinned (once unpinned an entry may be evicted by a download further down the same listing).
   * What it cannot link (an entry's file removed by hand, one at the file system's link limit; after EXDEV
   * or EPERM nothing more: the cache is on another file system, or links are refused) is left to #copyOut,
   * which copies or downloads it. A warm run of 20,000 files is 20,000 links: one promise link after
   * another through libuv's threads cost about 300 ms of the agent's thread and as much of waiting, where
   * link(2) itself takes microseconds (issue 21). The entries are pinned until every link is made, so no
   * eviction between two turns takes one.
   */
  async #linkHits(wanted: readonly { o: StoredObject; at: { dest: string } }[], ids: readonly (string | null)[]): Promise<Map<number, string | Promise<string>>> {
    const hits: { i: number; entry: Entry }[] = [];
    for (let i = 0; i < wanted.length; i++) {
      const entry = ids[i] ? this.#entries.get(ids[i]!) : undefined;
      if (entry && entry.size === wanted[i]!.o.size) hits.push({ i, entry });
    }
    const linked = new Map<number, string | Promise<string>>();
    if (hits.length === 0) return linked;
    for (const h of hits) h.entry.pins++;
    try {
      const folders = new Set<string>();
      const now = Date.now();
      for (let k = 0; k < hits.length; k++) {
        if (k > 0 && k % LINKS_PER_TURN === 0) await new Promise<void>((r) => setImmediate(r));
        const { i, entry } = hits[k]!;
        const dest = wanted[i]!.at.dest;
        const dir = path.dirname(dest);
        if (!folders.has(dir)) { mkdirSync(dir, { recursive: true, mode: 0o755 }); folders.add(dir); }
        try {
          linkSync(entry.file, dest);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // ENOENT: removed by hand, or named anew as its hash came in (#hashLater): #copyOut sees which.
          if (code === 'ENOENT' || code === 'EMLINK') continue;
          if (code === 'EXDEV' || code === 'EPERM') break;
          throw err;
        }
        linked.set(i, shaOf(entry));
        this.#markUsed(entry, now);
      }
    } finally {
      for (const h of hits) h.entry.pins--;
    }
    return linked;
  }

  /**
   * The entry at `dest`: a hard link where runs have uids of their own (linksForRuns; the entry is the
   * agent's and 0644, so the run can only read it), else a copy (a reflink where the file system has them)
   * the run may write. Pinned while it is made, so another run's eviction waits; false if the entry's file
   * is gone all the same (removed by hand), and the caller downloads instead.
   */
  async #copyOut(entry: Entry, dest: string, folderOf: (dest: string) => Promise<unknown>): Promise<boolean> {
    entry.pins++;
    try {
      await folderOf(dest);
      for (;;) {
        const file = entry.file;
        try {
          // EXDEV (another file system), EMLINK (too many links), EPERM (hard links refused): copy instead.
          const linked = this.#links && await link(file, dest).then(() => true, (err: NodeJS.ErrnoException) => {
            if (err.code === 'EXDEV' || err.code === 'EMLINK' || err.code === 'EPERM') return false;
            throw err;
          });
          if (!linked) await copyFile(file, dest, constants.COPYFILE_FICLONE);
          break;
        } catch (err) {
          // Named anew as its hash came in (#hashLater): again, by its new name.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || entry.file === file) throw err;
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const id = [...this.#entries].find(([, e]) => e === entry)?.[0];
      if (id !== undefined) { this.#entries.delete(id); this.#bytes -= entry.size; }
      return false;
    } finally {
      entry.pins--;
    }
    this.#markUsed(entry, Date.now());
    return true;
  }

  /**
   * An entry handed to a run at `now`: the most recently used for eviction, and its file's mtime (the
   * order an agent restart reads back) written at most every TOUCH_EVERY_MS, not once per run.
   */
  #markUsed(entry: Entry, now: number): void {
    if (now - entry.touched > TOUCH_EVERY_MS) {
      entry.touched = now;
      void utimes(entry.file, new Date(now), new Date(now)).catch(() => {});
    }
    entry.used = now;
  }

  /**
   * Downloads entry `id` into the cache (`fetch` writes `<id>.got`, continuing its `.part`) and keeps it
   * under its name; one download per entry at a time (two runs of one dataset wait for the same one, and
   * never write one `.part` together). Resolves with the entry and the bytes an earlier pull had brought
   * (null: not downloaded by this call, another's download of it had just ended).
   */
  #fetchInto(id: string, fetch: () => Promise<Downloaded>): Promise<{ entry: Entry; resumedFrom: number | null }> {
    const running = this.#fetching.get(id);
    // Declared first: the body below compares it once it has run past an await (p is set by then).
    let p: Promise<{ entry: Entry; resumedFrom: number | null }> | undefined = undefined;
    p = (async () => {
      if (running) await running.catch(() => {});
      const had = this.#entries.get(id);
      if (had) return { entry: had, resumedFrom: null }; // another run's download of it just ended
      try {
        const got = await fetch();
        const downloaded = path.join(this.#dir, `${id}.got`);
        const file = got.sha256 === null ? downloaded : path.join(this.#dir, `${id}-${got.sha256}`);
        if (got.sha256 !== null) await rename(downloaded, file);
        const now = Date.now();
        const entry: Entry = { file, size: got.bytes, sha256: got.sha256 ?? '', used: now, pins: 0, touched: now };
        if (got.sha256 === null) {
          entry.hashing = this.#hashLater(id, entry);
          entry.hashing.catch(() => {}); // each run that took the entry sees the failure through its own MadeLocal.hashed
        }
        this.#entries.set(id, entry);
        this.#bytes += got.bytes;
        return { entry, resumedFrom: got.resumedFrom };
      } finally {
        if (this.#fetching.get(id) === p) this.#fetching.delete(id);
      }
    })();
    this.#fetching.set(id, p);
    return p;
  }

  /**
   * Hashes entry `id`, downloaded without its hash, from its file (the file hasher's thread), and names it
   * `<id>-<sha256>` (the name an agent restart reads back; `<id>.got` is not kept across one): a link under
   * the new name, `file` set to it, then the old name removed, so a link or copy of the entry that read
   * `file` before finds the file under one name or the other (#copyOut tries again by the new name). Pinned
   * meanwhile: not evicted; the cap is seen to once it is done. A file that cannot be hashed, or is not the
   * size it was downloaded at, leaves the cache (and the promise rejects); one that cannot be named anew
   * leaves it too, its hash good all the same.
   */
  async #hashLater(id: string, entry: Entry): Promise<string> {
    entry.pins++;
    const drop = async () => {
      if (this.#entries.get(id) === entry) { this.#entries.delete(id); this.#bytes -= entry.size; }
      await rm(entry.file, { force: true }).catch(() => {});
    };
    try {
      const got = await Promise.resolve().then(() => this.#hashFile(entry.file)).catch(async (err: unknown) => { await drop(); throw err; });
      if (got.size !== entry.size) {
        await drop();
        throw new Error(`${entry.file} held ${got.size} bytes when hashed, not the ${entry.size} downloaded`);
      }
      const old = entry.file;
      const file = path.join(this.#dir, `${id}-${got.sha256}`);
      try {
        // A file of that name left behind (an entry dropped by hand's ENOENT, say) is the same object's bytes
        // with this hash: kept, and counted as this entry's.
        await link(old, file).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
        entry.file = file;
        await rm(old, { force: true });
      } catch {
        await drop();
      }
      entry.sha256 = got.sha256;
      entry.hashing = null;
      if (entry.dropWhenHashed && entry.pins === 1) await drop();
      return got.sha256;
    } finally {
      entry.pins--;
      if (this.#bytes > this.#maxBytes) void this.#evict().catch(() => {});
    }
  }

  async #evict(): Promise<void> {
    const oldest = [...this.#entries].sort((a, b) => a[1].used - b[1].used);
    const evicted: string[] = [];
    for (const [id, e] of oldest) {
      if (this.#bytes <= this.#maxBytes) break;
      if (e.pins > 0) continue; // being copied out: the next eviction takes it
      if (this.#entries.get(id) !== e) continue; // another eviction under way took it
      this.#entries.delete(id);
      this.#bytes -= e.size;
      evicted.push(id);
      await rm(e.file, { force: true });
    }
    // A spare's links would keep the evicted entries' blocks past the cap; it is cheap to make again. (One
    // being linked has its entries pinned; one waiting to start checks that the cache holds every file.)
    const spare = this.#staged?.spare ? this.#staged : null;
    if (spare && evicted.some((id) => spare.ids?.has(id))) await this.dropStaged();
  }

  /** --data-cache-mb in bytes (0: nothing kept). */
  get capBytes(): number { return this.#maxBytes; }

  /** For tests and metrics: entries and their bytes. */
  get size(): { entries: number; bytes: number } { return { entries: this.#entries.size, bytes: this.#bytes }; }
}
