// A folder read (or given away) while something else may still change it, without ever being sent
// somewhere else: every path component is opened relative to the descriptor of the folder above it
// (/proc/self/fd/N/name: Node has no openat(2)), never following a link (O_NOFOLLOW at each step), and each
// file is opened non-blocking (a FIFO cannot hold the open) and checked to be a regular file before a byte
// is read. A rename, or a RENAME_EXCHANGE, of any component racing the walk can make it miss a file or
// fail; it cannot make it read, or chown, anything outside the folder it started from. Linux only (/proc).
//
// The agent reads a run's outputs and its package folder this way (agent/attempt.ts): a run, or another
// run of the same user, may swap any folder in them for a link to the agent's own files.
import { constants } from 'node:fs';
import { lstat, open, readdir, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { mapBounded } from './bounded.js';
import { ErrorCodes, TrainyardError } from './errors.js';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;
const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK;
const FILE_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
/** Entries of one folder removed at once (removeBelow). */
const REMOVES_IN_FLIGHT = 8;

/** A path that is not what the reader was told it is: a link, a FIFO, a folder swapped out meanwhile. */
export class NotPlainPath extends TrainyardError {
  constructor(message: string) {
    super(ErrorCodes.FailedPrecondition, message);
    this.name = 'NotPlainPath';
  }
}

/** A regular file found by AnchoredDir.files(): where it is, and which inode it was then. */
export interface AnchoredFile { rel: string; size: number; dev: number; ino: number; /** When it was last written, as listed (a checkpoint unchanged since its last upload is not sent again). */ mtimeMs?: number }

export class AnchoredDir {
  private constructor(readonly handle: FileHandle, readonly shown: string) {}

  /**
   * Opens `dir`; its last component is not followed (the folders above it are taken as they are: they are
   * the caller's own, like the agent's work dir).
   */
  static async open(dir: string): Promise<AnchoredDir> {
    return new AnchoredDir(await openDirOrExplain(dir, dir), dir);
  }

  /** The path that names `name` inside this folder, whatever the folder is called now. */
  at(name: string): string {
    if (!name || name === '.' || name === '..' || name.includes('/')) throw new NotPlainPath(`"${name}" is not a name inside ${this.shown}`);
    return `/proc/self/fd/${this.handle.fd}/${name}`;
  }

  /** The names in this folder, sorted. */
  async names(): Promise<string[]> {
    return (await readdir(`/proc/self/fd/${this.handle.fd}`)).sort((a, b) => (a < b ? -1 : 1));
  }

  /**
   * The folder `rel` ('/'-separated) below this one, each component opened from the one above, none
   * followed. Null when a component is missing; NotPlainPath when one is a link or not a folder.
   */
  async openDir(rel: string): Promise<AnchoredDir | null> {
    const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
    let cur: AnchoredDir = this;
    try {
      for (let i = 0; i < parts.length; i++) {
        const shown = `${this.shown}/${parts.slice(0, i + 1).join('/')}`;
        const next: AnchoredDir | null = await openDirOrExplain(cur.at(parts[i]!), shown).then((h) => new AnchoredDir(h, shown), (err: unknown) => {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
          throw err;
        });
        if (cur !== this) await cur.close();
        if (!next) return null;
        cur = next;
      }
    } catch (err) {
      if (cur !== this) await cur.close();
      throw err;
    }
    // rel named this folder itself: a second descriptor of it, so that the caller may close either.
    return cur === this ? new AnchoredDir(await openDirOrExplain(`/proc/self/fd/${this.handle.fd}`, this.shown), this.shown) : cur;
  }

  /**
   * Every regular file below, as '/'-separated relative paths in folder-tree order (by name within each
   * folder); links, FIFOs, sockets and devices are skipped, never opened. `exclude` leaves out a path and
   * what is below it.
   */
  async files(exclude: (rel: string) => boolean = () => false): Promise<AnchoredFile[]> {
    const out: AnchoredFile[] = [];
    await this.#walk('', exclude, (rel, st) => { if (st.isFile()) out.push({ rel, size: st.size, dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs }); });
    return out;
  }

  /** Bytes on disk below this folder (st_blocks, what a disk quota counts), the folders' own included. */
  async usage(): Promise<number> {
    let bytes = (await this.handle.stat()).blocks * 512;
    await this.#walk('', () => false, (_rel, st) => { bytes += st.blocks * 512; });
    return bytes;
  }

  async #walk(rel: string, exclude: (rel: string) => boolean, visit: (rel: string, st: import('node:fs').Stats) => void): Promise<void> {
    for (const name of await this.names()) {
      const r = rel ? `${rel}/${name}` : name;
      if (exclude(r)) continue;
      // lstat of the name inside this folder's descriptor: the entry itself, never what a link names.
      const st = await lstat(this.at(name)).catch(() => null);
      if (!st) continue; // removed meanwhile
      if (!st.isDirectory()) { visit(r, st); continue; }
      const sub = await this.openDir(name).catch((err: unknown) => { if (err instanceof NotPlainPath) return null; throw err; });
      if (!sub) continue; // swapped for something else meanwhile: not followed
      try {
        const real = await sub.handle.stat();
        visit(r, real);
        await sub.#walk(r, exclude, visit);
      } finally {
        await sub.close();
      }
    }
  }

  /**
   * Opens a file files() found, again from this folder down, none of its components followed; refuses
   * one that is no longer the same regular file (NotPlainPath). The caller closes the handle.
   */
  async openFile(f: AnchoredFile): Promise<FileHandle> {
    const parts = f.rel.split('/');
    const name = parts.pop()!;
    const dir = parts.length ? await this.openDir(parts.join('/')) : this;
    if (!dir) throw new NotPlainPath(`${this.shown}/${f.rel} was removed while it was read`);
    try {
      const fh = await open(dir.at(name), FILE_FLAGS).catch((err: NodeJS.ErrnoException) => { throw explain(err, `${this.shown}/${f.rel}`); });
      const st = await fh.stat();
      if (!st.isFile() || st.dev !== f.dev || st.ino !== f.ino) {
        await fh.close();
        throw new NotPlainPath(`${this.shown}/${f.rel} was replaced while it was read`);
      }
      return fh;
    } finally {
      if (dir !== this) await dir.close();
    }
  }

  /**
   * Reads the regular file `name` in this folder, at most `maxBytes` of it: a link, a FIFO (which would
   * hold a blocking open, and a thread of libuv's pool, for ever), a device or a larger file is refused.
   * Null when there is no such file.
   */
  async readSmallFile(name: string, maxBytes: number): Promise<Buffer | null> {
    let fh: FileHandle;
    try {
      fh = await open(this.at(name), FILE_FLAGS);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw explain(err as NodeJS.ErrnoException, `${this.shown}/${name}`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new NotPlainPath(`${this.shown}/${name} is ${kindOf(st)}, not a regular file`);
      if (st.size > maxBytes) throw new NotPlainPath(`${this.shown}/${name} is ${st.size} bytes, over the limit of ${maxBytes}`);
      const buf = Buffer.alloc(maxBytes + 1);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead > maxBytes) throw new NotPlainPath(`${this.shown}/${name} grew past the limit of ${maxBytes} bytes`);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }

  /**
   * Removes everything below this folder, from descriptors: a link is removed itself, never followed (a
   * path-based rm -r can be sent into another folder by a folder swapped for a link while it runs).
   */
  async removeBelow(): Promise<void> {
    // Each name is unlinked first: unlink never follows a link, and it is the one call a file (nearly every
    // entry) needs, where opening each as a folder first failed, with an error made and explained, for
    // every file (20,000 files: 1.2 s of the agent's thread at a run's end, while the next run was being
    // made ready, issue 21). Several at once: each call is a trip through libuv's threads, which do the
    // file system's work in parallel. Only then the folders (EISDIR; EPERM in POSIX's words), one after
    // another: a descriptor is held for each folder on the way down, so the folders open at once are the
    // tree's depth, never a fan-out a run could make as wide as it likes.
    const folders: string[] = [];
    await mapBounded(await readdir(`/proc/self/fd/${this.handle.fd}`), REMOVES_IN_FLIGHT, async (name) => {
      await unlink(this.at(name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EISDIR' || err.code === 'EPERM') folders.push(name);
        else if (err.code !== 'ENOENT') throw err;
      });
    });
    for (const name of folders) {
      const sub = await this.openDir(name).catch((err: unknown) => { if (err instanceof NotPlainPath) return null; throw err; });
      if (sub) {
        try { await sub.removeBelow(); } finally { await sub.close(); }
        // Swapped for a link meanwhile: ENOTDIR, left for the next pass (removeTree).
        await rmdir(this.at(name)).catch(ignoreCodes('ENOENT', 'ENOTDIR', 'ENOTEMPTY'));
      } else {
        // A folder swapped for a link (or a file) since the unlink: the link itself goes.
        await unlink(this.at(name)).catch(ignoreCodes('ENOENT', 'EISDIR', 'EPERM'));
      }
    }
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => {});
  }
}

/**
 * rm -r of `dir`, none of what is below it followed (AnchoredDir.removeBelow); a few passes, for what a
 * process still writing there adds meanwhile. A missing `dir` is not an error.
 */
export async function removeTree(dir: string): Promise<void> {
  for (let pass = 0; ; pass++) {
    const root = await AnchoredDir.open(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return null; throw err; });
    if (!root) return;
    try { await root.removeBelow(); } finally { await root.close(); }
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' || pass >= 4) throw err;
    }
  }
}

function ignoreCodes(...codes: string[]): (err: NodeJS.ErrnoException) => void {
  return (err) => { if (!codes.includes(err.code ?? '')) throw err; };
}

async function openDirOrExplain(p: string, shown: string): Promise<FileHandle> {
  try {
    return await open(p, DIR_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err;
    throw explain(err as NodeJS.ErrnoException, shown);
  }
}

/** ELOOP (O_NOFOLLOW met a link) and ENOTDIR, in words; anything else as it came. */
function explain(err: NodeJS.ErrnoException, shown: string): Error {
  if (err.code === 'ELOOP') return new NotPlainPath(`${shown} is a symbolic link; links are not followed`);
  // O_DIRECTORY|O_NOFOLLOW on a link: Linux answers ENOTDIR before ELOOP.
  if (err.code === 'ENOTDIR') return new NotPlainPath(`${shown} is not a folder (or is a link, which is not followed)`);
  return err;
}

function kindOf(st: import('node:fs').Stats): string {
  return st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isDirectory() ? 'a folder' : st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file';
}
