// What the agent sets up once, at start, to contain the runs it will execute: the cgroup folder attempts
// go under (agent/cgroup.ts), the pool of run uids (agent/run-uids.ts) and the helpers root executes by
// absolute path (agent/run-as.ts), with the checks that make a misconfiguration fail the start instead of
// every run.
import { chmod, lchown, lstat, mkdir, readdir, realpath, stat } from 'node:fs/promises';
import { AnchoredDir, NotPlainPath } from '../shared/anchored-dir.js';
import path from 'node:path';
import type { Logger } from 'pino';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';
import { prepareCgroupBase } from './cgroup.js';
import { ancestors, checkUserReaches, resolveHelpers, type Helpers } from './run-as.js';
import { RunUidPool } from './run-uids.js';

export interface Containment {
  /** Where attempts' cgroups go; null: no usable cgroup v2, process groups only (warned at start). */
  cgroupBase: string | null;
  /** The uids runs and builds lease, one each; null: they run as the agent's own uid (single-tenant). */
  pool: RunUidPool | null;
  /** setpriv, sh and the base Python, by absolute paths. */
  helpers: Helpers;
}

export interface ContainmentOptions {
  runUids: string; sharedUid: number; runAsUser: string; slots: number;
  python: string; workDir: string; venvDir: string; harness: string;
}

export async function prepareContainment(o: ContainmentOptions, log: Logger): Promise<Containment> {
  if (o.runAsUser) {
    // One user for every run is the hole a uid per run closes (README, Security): not kept as an alias.
    throw new TrainyardError(ErrorCodes.InvalidArgument, `--run-as-user was replaced by --run-uids FIRST-LAST (default 61000-61063 for a root agent): each run gets a uid of its own; remove --run-as-user ${o.runAsUser} (TRAINYARD_RUN_AS_USER)`);
  }
  const root = process.getuid?.() === 0;
  const cg = await prepareCgroupBase();
  if (cg.base === null) {
    log.warn({ why: cg.why }, 'runs are contained by process group only: a process that leaves its group (setsid) can outlive its run');
  } else {
    log.info({ cgroup: cg.base }, 'each attempt runs in a cgroup of its own');
  }
  const helpers = await resolveHelpers(o.python, root);
  if (!root || o.runUids === 'none') {
    log.warn({ uid: process.getuid?.(), slots: o.slots }, `runs share the agent's uid${root ? ' (root: --run-uids none)' : ''}: a run can read another run's environ, memory and files, and the agent's; single-tenant only`);
    if (o.slots > 1 && o.sharedUid !== 1) {
      throw new TrainyardError(ErrorCodes.InvalidArgument, `${o.slots} run slots, but runs would share the agent's uid (${root ? '--run-uids none' : 'the agent is not root'}): ` +
        `${root ? 'give a range with --run-uids' : 'run the agent as root for a uid per run'}, set --max-runs 1, or accept one tenant with --shared-uid 1`);
    }
    return { cgroupBase: cg.base, pool: null, helpers };
  }
  const pool = await RunUidPool.open(o.runUids);
  await mkdir(o.workDir, { recursive: true });
  await mkdir(o.venvDir, { recursive: true });
  // The venv cache is the agent's: a run that could write it could plant code in every later run.
  await denyWritesByOthers(o.venvDir);
  const probe = await pool.lease();
  try {
    await checkUserReaches(helpers, probe.user, { dirs: [...ancestors(o.workDir), ...ancestors(o.venvDir)], files: [o.harness] });
  } finally {
    await probe.release();
  }
  if (pool.size < o.slots) log.warn({ uids: pool.size, slots: o.slots }, 'fewer run uids than run slots: runs beyond them fail');
  log.info({ uids: `${pool.first}-${pool.last}`, helpers }, 'each run and each venv build runs as a uid of its own');
  return { cgroupBase: cg.base, pool, helpers };
}

/** Takes group and other write permission, and setuid and setgid bits, off a folder tree (symlinks are left alone, never followed). */
export async function denyWritesByOthers(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (st.isSymbolicLink()) return;
  // Nor setuid or setgid: a file a build made must not run as anyone but its caller.
  if (st.mode & 0o6022) await chmod(dir, st.mode & 0o1755);
  if (!st.isDirectory()) return;
  for (const e of await readdir(dir, { withFileTypes: true })) await denyWritesByOthers(path.join(dir, e.name));
}

/**
 * Gives a folder tree to the user. Walked from descriptors, none of the path followed
 * (shared/anchored-dir.ts): a folder swapped for a link meanwhile (by a run of the same user) is skipped,
 * so what a link names is never given away; a link itself is changed (lchown), never what it points at.
 * Each folder is given away after what is in it, so the user cannot change a folder still being walked.
 */
export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  const root = await AnchoredDir.open(dir);
  try { await chownBelow(root, uid, gid); } finally { await root.close(); }
}

async function chownBelow(dir: AnchoredDir, uid: number, gid: number): Promise<void> {
  for (const name of await dir.names()) {
    const sub = await dir.openDir(name).catch((err: unknown) => { if (err instanceof NotPlainPath) return null; throw err; });
    if (sub) {
      try { await chownBelow(sub, uid, gid); } finally { await sub.close(); }
    } else {
      await lchown(dir.at(name), uid, gid).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
    }
  }
  await dir.handle.chown(uid, gid);
}
