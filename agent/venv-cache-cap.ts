// The venv cache's size cap (issue 21, `--venv-cache-gb`): once a build has made the venv dir (venvs and
// the shared uv cache, each file counted once however many venvs link it) bigger than the cap, the least
// recently used venvs are removed until it fits, never one in use: one an attempt of this agent holds
// (from the moment ensureVenv hands it out until the attempt ends) or a warm interpreter runs from. When
// every venv left is in use and the dir is still too big, the shared uv cache goes too, when no build is
// using it (the venvs keep their hard-linked files; the next build downloads again). A venv's last use
// is its ready marker's mtime, touched at each use, so the order survives the agent's restarts.
//
// A venv is removed under its build lock (agent/venv-lock.ts), after being marked, so a run that
// arrives meanwhile sees it as not ready and builds it again (after the lock) rather than getting a
// folder that is about to go. In use is per agent: agents sharing one --venv-dir should not cap it.
import { lstat, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { fsTool, toolOutput } from './fs-tools.js';
import { lockVenv } from './venv-lock.js';
import { walkTree } from './tree-walk.js';
import { sharedCacheDir } from './venv-uv.js';
import { READY } from './venv.js';

const KEY = /^[0-9a-f]{24}$/;

export interface CapResult { removed: string[]; bytes: number; cacheCleared: boolean }

export class VenvCacheCap {
  readonly #held = new Map<string, number>();
  readonly #evicting = new Set<string>();
  /** The last measured use of the venv dir, bytes (reported in the agent's heartbeat). */
  usedBytes = 0;
  #enforcing: Promise<CapResult> | null = null;

  /**
   * `capBytes` 0: no cap (usage is still measured). `busy`: venvs in use for other reasons (a warm
   * interpreter). `building`: whether a build is under way (the shared cache is then left alone).
   */
  constructor(readonly venvDir: string, readonly capBytes: number, private readonly o: { busy?: (dir: string) => boolean; building?: () => boolean; removed?: (dir: string) => void } = {}) {}

  /** Whether `dir` is being removed (ensureVenv then treats it as not ready). */
  evicting(dir: string): boolean {
    return this.#evicting.has(dir);
  }

  /** Marks `dir` in use (synchronously: nothing can remove it between its ready check and this). */
  hold(dir: string): void {
    this.#held.set(dir, (this.#held.get(dir) ?? 0) + 1);
    const now = new Date();
    void utimes(path.join(dir, READY), now, now).catch(() => {});
  }

  release(dir: string): void {
    const n = (this.#held.get(dir) ?? 0) - 1;
    if (n > 0) this.#held.set(dir, n); else this.#held.delete(dir);
  }

  /** A holder for one attempt: what it holds is released when the attempt ends (`releaseAll`). */
  holder(): { hold(dir: string): void; releaseAll(): void } {
    const mine: string[] = [];
    return {
      hold: (dir) => { this.hold(dir); mine.push(dir); },
      releaseAll: () => { for (const d of mine.splice(0)) this.release(d); },
    };
  }

  inUse(dir: string): boolean {
    return (this.#held.get(dir) ?? 0) > 0 || (this.o.busy?.(dir) ?? false);
  }

  /** Measures the dir and removes what the cap asks for; one at a time (a call during one gets its result). */
  enforce(): Promise<CapResult> {
    this.#enforcing ??= this.#enforce().finally(() => { this.#enforcing = null; });
    return this.#enforcing;
  }

  async #enforce(): Promise<CapResult> {
    const out: CapResult = { removed: [], bytes: 0, cacheCleared: false };
    let used = await diskUse(this.venvDir);
    if (this.capBytes > 0 && used > this.capBytes) {
      const venvs = await this.#venvsByLastUse();
      for (const v of venvs) {
        if (used <= this.capBytes) break;
        if (this.inUse(v.dir)) continue;
        if (await this.#remove(v.dir)) {
          out.removed.push(path.basename(v.dir));
          used -= v.own;
        }
      }
      const cache = sharedCacheDir(this.venvDir);
      if (used > this.capBytes && !(this.o.building?.() ?? false) && (await lstat(cache).catch(() => null))) {
        await rm(cache, { recursive: true, force: true });
        out.cacheCleared = true;
      }
      used = await diskUse(this.venvDir);
    }
    this.usedBytes = used;
    out.bytes = used;
    return out;
  }

  /** Ready venvs, least recently used first, each with the bytes only it holds (what removing it frees). */
  async #venvsByLastUse(): Promise<{ dir: string; used: number; own: number }[]> {
    const out: { dir: string; used: number; own: number }[] = [];
    for (const name of await readdir(this.venvDir).catch(() => [] as string[])) {
      if (!KEY.test(name)) continue;
      const dir = path.join(this.venvDir, name);
      const ready = await stat(path.join(dir, READY)).catch(() => null);
      if (!ready) continue; // being built (or a crash's leftover, rebuilt by the next run that needs it)
      out.push({ dir, used: ready.mtimeMs, own: await diskUse(dir, true) });
    }
    return out.sort((a, b) => a.used - b.used);
  }

  async #remove(dir: string): Promise<boolean> {
    const release = await lockVenv(`${dir}.lock`, AbortSignal.timeout(10_000), () => {}).catch(() => null);
    if (!release) return false; // being built or removed elsewhere: left for the next round
    let trash: string | null = null;
    try {
      if (this.inUse(dir)) return false;
      this.#evicting.add(dir);
      this.o.removed?.(dir);
      trash = `${dir}.evicted-${process.pid}-${Date.now()}`;
      await rename(dir, trash);
    } catch {
      trash = null;
    } finally {
      this.#evicting.delete(dir);
      await release();
    }
    if (!trash) return false;
    await rm(trash, { recursive: true, force: true });
    return true;
  }
}

/**
 * Bytes a tree takes on disk (allocated blocks), each inode counted once. `ownOnly`: only files no other
 * path links (what removing the tree would free). `useDu` false: walked from Node even where du is there.
 */
export async function diskUse(dir: string, ownOnly = false, useDu = true): Promise<number> {
  if (!ownOnly && useDu) {
    // du counts the same (allocated blocks, each inode once, links not followed) at a tenth of the CPU:
    // this runs after every build, beside the run then starting.
    const du = await fsTool('du');
    const out = du ? await toolOutput(du, ['-s', '-P', '--block-size=1', dir]) : null;
    const bytes = out ? Number(/^(\d+)\t/.exec(out.toString())?.[1] ?? NaN) : NaN;
    if (Number.isSafeInteger(bytes)) return bytes;
  }
  const seen = new Set<string>();
  let bytes = 0;
  // Files come and go meanwhile (builds, removals): what cannot be read is not counted.
  await walkTree(dir, async (_p, st) => {
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) return false;
    seen.add(id);
    if (!ownOnly || st.isDirectory() || st.nlink <= 1) bytes += st.blocks * 512;
    return true;
  }, { skipUnreadable: true });
  return bytes;
}
