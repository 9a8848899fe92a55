// What the agent sets up once, at start, to contain the runs it will execute: the cgroup folder attempts
// go under (agent/cgroup.ts), and the user train.py runs as (agent/run-as.ts), with the checks that make a
// misconfiguration fail the start instead of every run.
import { chmod, lchown, lstat, mkdir, readdir } from 'node:fs/promises';
import { AnchoredDir, NotPlainPath } from '../shared/anchored-dir.js';
import path from 'node:path';
import type { Logger } from 'pino';
import { prepareCgroupBase } from './cgroup.js';
import { ancestors, checkUserReaches, resolveRunAsUser, type RunAsUser } from './run-as.js';

export interface Containment {
  /** Where attempts' cgroups go; null: no usable cgroup v2, process groups only (warned at start). */
  cgroupBase: string | null;
  /** The user train.py runs as; null: the agent's own. */
  runAs: RunAsUser | null;
}

export async function prepareContainment(o: { runAsUser: string; workDir: string; venvDir: string; harness: string }, log: Logger): Promise<Containment> {
  const cg = await prepareCgroupBase();
  if (cg.base === null) {
    log.warn({ why: cg.why }, 'runs are contained by process group only: a process that leaves its group (setsid) can outlive its run');
  } else {
    log.info({ cgroup: cg.base }, 'each attempt runs in a cgroup of its own');
  }
  if (!o.runAsUser) return { cgroupBase: cg.base, runAs: null };
  const runAs = await resolveRunAsUser(o.runAsUser);
  await mkdir(o.workDir, { recursive: true });
  await mkdir(o.venvDir, { recursive: true });
  // The venv cache is the agent's: a run that could write it could plant code in every later run.
  await denyWritesByOthers(o.venvDir);
  await checkUserReaches(runAs, { dirs: [...ancestors(o.workDir), ...ancestors(o.venvDir)], files: [o.harness] });
  log.info({ user: runAs.name, uid: runAs.uid, gid: runAs.gid }, 'train.py runs as an unprivileged user');
  return { cgroupBase: cg.base, runAs };
}

/** Takes group and other write permission off a folder tree (symlinks are left alone, never followed). */
export async function denyWritesByOthers(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (st.isSymbolicLink()) return;
  if (st.mode & 0o022) await chmod(dir, st.mode & 0o7755);
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
