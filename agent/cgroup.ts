// Each attempt's processes in a cgroup v2 of their own, so that ending the attempt ends every process it
// started: a process group is not enough, since anything can leave its group (setsid, a double fork), but
// no unprivileged process can leave its cgroup. `cgroup.kill` (Linux 5.14) kills the whole cgroup at once;
// older kernels get a freeze, a SIGKILL to every pid listed, a thaw, until it is empty.
//
// The v2 hierarchy is where /proc/self/mounts says: /sys/fs/cgroup on pure-v2 hosts (systemd's default),
// /sys/fs/cgroup/unified on hybrid ones. Attempts go under the agent's own cgroup (/proc/self/cgroup, the
// "0::" line), in a `trainyard` folder; no controller is enabled there, so the agent may stay in its own.
// Where there is no writable v2 hierarchy the agent falls back to process-group kills and says so.
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { registryNames } from './reattach.js';

/** The mount point of the cgroup v2 hierarchy, or null when there is none. */
export function cgroup2Mount(mounts = readText('/proc/self/mounts')): string | null {
  const found = mounts.split('\n').map((l) => l.split(' ')).filter((f) => f[2] === 'cgroup2').map((f) => unescapeMount(f[1] ?? ''));
  // Prefer the conventional places when several are mounted (a container may see more than one).
  return found.find((m) => m === '/sys/fs/cgroup') ?? found.find((m) => m === '/sys/fs/cgroup/unified') ?? found[0] ?? null;
}

/** This process's own v2 cgroup path ("/" or "/system.slice/x.service"), from the "0::" line. */
export function ownCgroupPath(text = readText('/proc/self/cgroup')): string {
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  const p = line ? line.slice(3).trim() : '/';
  // "(deleted)" or a path outside our namespace ("/../..") means we cannot use it; the root will do.
  return p.startsWith('/') && !p.includes('..') && !p.includes(' ') ? p : '/';
}

function readText(file: string): string {
  try { return readFileSync(file, 'utf8'); } catch { return ''; }
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Finds (and creates) the folder attempts' cgroups go under. Resolves with its path, or with the reason
 * it cannot be used (the caller logs it and falls back to process-group kills).
 */
export async function prepareCgroupBase(): Promise<{ base: string } | { base: null; why: string }> {
  const mount = cgroup2Mount();
  if (!mount) return { base: null, why: 'no cgroup v2 hierarchy is mounted' };
  const base = path.join(mount, ownCgroupPath(), 'trainyard');
  try {
    await mkdir(base, { recursive: true });
    // A probe: creating, entering nothing, and removing a child proves we may manage cgroups here.
    const probe = path.join(base, `probe-${process.pid}`);
    await mkdir(probe, { recursive: true });
    await rmdir(probe);
    await sweepLeftovers(base);
    return { base };
  } catch (err) {
    return { base: null, why: `cannot create cgroups under ${base}: ${(err as Error).message}` };
  }
}

/**
 * Cgroups of agents that are gone (killed -9 mid-attempt): each is named ...-AGENTPID, and one whose agent
 * no longer runs is killed and removed, with whatever still ran in it (that attempt was requeued by the
 * scheduler when its agent was lost). Those of live agents (several may share a host) are left alone.
 */
export async function sweepLeftovers(base: string): Promise<string[]> {
  const removed: string[] = [];
  // Runs that outlive their agent (agent/reattach.ts): only the agent of their work dir ends them.
  const kept = await registryNames();
  for (const e of await readdir(base, { withFileTypes: true }).catch(() => [])) {
    const owner = Number(/-(\d+)$/.exec(e.name)?.[1] ?? 0);
    if (!e.isDirectory() || owner <= 0 || owner === process.pid || pidAlive(owner) || kept.has(e.name)) continue;
    const cg = await RunCgroup.create(base, e.name).catch(() => null);
    if (cg && (await cg.destroy().then(() => true, () => false))) removed.push(e.name);
  }
  return removed;
}

export function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** The cgroup of one attempt (or one venv build), named ...-AGENTPID (see sweepLeftovers). */
export class RunCgroup {
  private constructor(readonly dir: string) {}

  /** A cgroup made earlier (an adopted run's, agent/reattach.ts). */
  static existing(dir: string): RunCgroup {
    return new RunCgroup(dir);
  }

  static async create(base: string, name: string): Promise<RunCgroup> {
    const dir = path.join(base, name.replace(/[^A-Za-z0-9_.-]/g, '_'));
    // Left over by an agent that died mid-attempt: kill what is still in it and start afresh.
    const old = new RunCgroup(dir);
    await old.destroy().catch(() => {});
    await mkdir(dir);
    return old;
  }

  /**
   * The command line that runs `command args` inside this cgroup: a root shell writes its own pid into
   * cgroup.procs, then execs the command (which may drop privileges: it cannot move itself back out).
   * Nothing runs outside the cgroup, not even for a moment: the write happens before the exec.
   */
  wrap(command: string, args: string[]): { command: string; args: string[] } {
    return { command: '/bin/sh', args: ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', this.dir, command, ...args] };
  }

  async pids(): Promise<number[]> {
    const text = await readFile(path.join(this.dir, 'cgroup.procs'), 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map(Number);
  }

  /**
   * Sends a signal to every process in the cgroup (a SIGTERM before the kill, so each may clean up).
   * `exceptGroup`: skips the processes of that process group, which the caller has just signalled itself:
   * a process must get one SIGTERM, not two a few ms apart (a second one runs a Python handler again inside
   * the first, so a checkpoint being saved in the grace starts over, or never ends).
   */
  async signal(sig: NodeJS.Signals, o: { exceptGroup?: number } = {}): Promise<void> {
    const pids = await this.pids();
    // Every group read before the first signal, all at once: the pids are signalled as soon after the
    // listing as they were before (a pid freed and taken by another process meanwhile is the risk), and
    // one that is gone by now (no stat) is not signalled at all.
    const groups = o.exceptGroup === undefined ? null : await Promise.all(pids.map(processGroupOf));
    pids.forEach((pid, i) => {
      if (groups && (groups[i] === null || groups[i] === o.exceptGroup)) return;
      try { process.kill(pid, sig); } catch { /* gone */ }
    });
  }

  async populated(): Promise<boolean> {
    try {
      const events = await readFile(path.join(this.dir, 'cgroup.events'), 'utf8');
      return /^populated 1$/m.test(events);
    } catch {
      return false; // no such cgroup: nothing in it
    }
  }

  /** Kills every process in the cgroup and waits until it is empty (at most `waitMs`). Resolves with whether it is. */
  async kill(waitMs = 10_000): Promise<boolean> {
    const end = Date.now() + waitMs;
    // Empty (a run whose processes all ended, the usual case): nothing to kill. Nothing can enter the
    // cgroup meanwhile: only the agent and its warm interpreters put processes in, before a run starts.
    if (!(await this.populated())) return true;
    const hasKill = await writeFile(path.join(this.dir, 'cgroup.kill'), '1').then(() => true, () => false);
    while (await this.populated()) {
      if (!hasKill) await this.#killEach();
      if (Date.now() > end) return false;
      await sleep(20);
    }
    return true;
  }

  /** Without cgroup.kill: freeze (so nothing forks while we read the list), SIGKILL each pid, thaw. */
  async #killEach(): Promise<void> {
    const freeze = path.join(this.dir, 'cgroup.freeze');
    await writeFile(freeze, '1').catch(() => {});
    await this.signal('SIGKILL');
    await writeFile(freeze, '0').catch(() => {});
  }

  /** Kills what is left and removes the cgroup; throws when it could not (a process stuck in the kernel). */
  async destroy(waitMs = 10_000): Promise<void> {
    // The usual case first: empty, so it goes at once (rmdir refuses a cgroup that holds a process: EBUSY).
    const gone = await rmdir(this.dir).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return true; // already gone
      if (err.code === 'EBUSY') return false;
      throw err;
    });
    if (gone) return;
    await this.kill(waitMs);
    await rmdir(this.dir);
  }
}

/** The process group of `pid` (field 5 of /proc/PID/stat, after the name in parentheses); null: gone. */
async function processGroupOf(pid: number): Promise<number | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pgrp = Number(fields[2]);
  return Number.isSafeInteger(pgrp) ? pgrp : null;
}
