// The seal of a built venv (agent/venv.ts), before it is marked ready: every file root's, nobody else may
// write it, no setuid or setgid bit, and no symlink leading out of it to anything not root's alone.
//
// It was most of what a first run's Packaging phase with uv spent beyond uv itself (issue 21: ~0.95 s of
// ~1.5 s for pandas + scikit-learn, ~6,900 entries, under load): three walks (chown, chmod, links), each
// awaiting one system call at a time. Now a venv only the agent built (uv through the shared cache, as
// root: nothing in it can be anyone else's) is not chowned, and the chmod and link checks are one pass:
// find(1) lists the entries that need a look (a link, or a mode with a write bit for group or others, or
// setuid/setgid) at a tenth of the CPU a walk from Node takes (agent/fs-tools.ts), and only those are
// checked and changed here. Without a usable find, one walk from Node with
// several calls in flight (agent/tree-walk.ts). Either way nothing else can change the tree meanwhile:
// it is root's (built by root, or chowned first) and the build's processes are gone.
import { chmod, lstat, realpath } from 'node:fs/promises';
import path from 'node:path';
import { chownTree } from './containment.js';
import { fsTool, toolOutput } from './fs-tools.js';
import { PackagingError } from './packaging-error.js';
import { checkRootOwned } from './run-as.js';
import { walkTree } from './tree-walk.js';

export interface SealOptions {
  /**
   * The build ran as a run uid: its files are made root's first (walked from descriptors, agent/containment.ts
   * chownTree), so nothing the pass below looks at can change under it.
   */
  chownToRoot: boolean;
  /** A link out of the venv must lead to something root's alone (a root agent with run uids). */
  rootOnlyLinks: boolean;
  /** false: the walk from Node even where find(1) is there (tests check both). */
  useFind?: boolean;
  /** Each part's milliseconds (bench/venv.ts). */
  onStep?: (step: string, ms: number) => void;
}

/**
 * Seals `dir`. Refuses (PackagingError) a venv holding a link to nothing, or a link out of it to what is
 * not root's when `rootOnlyLinks`.
 */
export async function seal(dir: string, o: SealOptions): Promise<void> {
  const step = async (name: string, work: () => Promise<void>) => {
    const t0 = performance.now();
    try { await work(); } finally { o.onStep?.(name, performance.now() - t0); }
  };
  if (o.chownToRoot) await step('seal: chown', () => chownTree(dir, 0, 0));
  await step('seal: chmod and links', async () => {
    const realDir = await realpath(dir);
    const listed = o.useFind === false ? null : await needingALook(dir);
    if (listed === null) return walk(dir, realDir, o.rootOnlyLinks);
    for (const p of listed) {
      const st = await lstat(p);
      if (st.isSymbolicLink()) await checkLink(dir, realDir, p.toString(), o.rootOnlyLinks);
      else if (st.mode & 0o6022) await chmod(p, st.mode & 0o1755);
    }
  });
}

async function walk(dir: string, realDir: string, rootOnlyLinks: boolean): Promise<void> {
  await walkTree(dir, async (p, st, limit) => {
    if (st.isSymbolicLink()) { await checkLink(dir, realDir, p, rootOnlyLinks); return false; }
    // Group and other write off, and setuid and setgid: a file a build made runs only as its caller.
    if (st.mode & 0o6022) await limit(() => chmod(p, st.mode & 0o1755));
    return true;
  });
}

/** A link inside the venv is fine; a dangling one is refused (what it names could be made later, by anyone). */
async function checkLink(dir: string, realDir: string, p: string, rootOnlyLinks: boolean): Promise<void> {
  const target = await realpath(p).catch(() => null);
  if (target === null) throw new PackagingError(`the environment holds a link ${path.relative(dir, p)} to nothing; refused`);
  const rel = path.relative(realDir, target);
  if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) return;
  if (rootOnlyLinks) {
    await checkRootOwned(`the link ${path.relative(dir, p)} in the environment`, target)
      .catch((err: unknown) => { throw new PackagingError((err as Error).message); });
  }
}

/**
 * The entries of `dir` that are links or have a group/other write bit or setuid/setgid, as raw names
 * (a name need not be UTF-8), links not followed; null when find is not there or fails (the walk then).
 */
async function needingALook(dir: string): Promise<Buffer[] | null> {
  const find = await fsTool('find');
  const all = find ? await toolOutput(find, ['-P', dir, '(', '-type', 'l', '-o', '-perm', '/6022', ')', '-print0']) : null;
  if (!all) return null;
  const out: Buffer[] = [];
  for (let at = 0; at < all.length;) {
    const end = all.indexOf(0, at);
    if (end < 0) return null; // cut short: not trusted
    out.push(all.subarray(at, end));
    at = end + 1;
  }
  return out;
}
