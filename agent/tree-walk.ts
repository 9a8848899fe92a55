// A walk of a folder tree with several system calls in flight (issue 21). A venv of pandas + scikit-learn
// holds thousands of entries; a walk awaiting one lstat at a time is bound by each call's hop to libuv's
// thread pool, not by the disk, so the venv's seal (agent/venv-seal.ts) and the venv cache's measurement
// (agent/venv-cache-cap.ts) walk with up to IN_FLIGHT calls at once. Links are never followed.
import { lstat, readdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';

/** Calls in flight: enough to hide the thread-pool hop, few enough to leave a busy box responsive. */
const IN_FLIGHT = 32;

export interface TreeWalkOptions {
  /** A path whose lstat or readdir fails (it vanished meanwhile) is skipped instead of failing the walk. */
  skipUnreadable?: boolean;
}

/**
 * Calls `visit` with every path under `dir` (and `dir` itself) and its lstat, and descends into the folders
 * for which it returns true. `visit` may run system calls of its own through `limit`, so they count in
 * the bound. The first failure stops the walk (what is in flight is awaited) and is thrown.
 */
export async function walkTree(dir: string, visit: (p: string, st: Stats, limit: Limit) => Promise<boolean>, o: TreeWalkOptions = {}): Promise<void> {
  const limit = semaphore(IN_FLIGHT);
  let failed: { err: unknown } | null = null;
  const vanished = (err: unknown) => {
    if (o.skipUnreadable) return null;
    throw err;
  };
  const step = async (p: string): Promise<void> => {
    if (failed) return;
    try {
      const st = await limit(() => lstat(p)).catch(vanished);
      if (!st || !(await visit(p, st, limit)) || !st.isDirectory()) return;
      const names = await limit(() => readdir(p)).catch(vanished);
      if (names) await Promise.all(names.map((n) => step(path.join(p, n))));
    } catch (err) {
      failed ??= { err };
    }
  };
  await step(dir);
  if (failed) throw (failed as { err: unknown }).err;
}

export type Limit = <T>(work: () => Promise<T>) => Promise<T>;

/** At most `n` of the calls given to it run at once; the others wait in order. */
function semaphore(n: number): Limit {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (work) => {
    if (running >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next(); else running--;
    }
  };
}
