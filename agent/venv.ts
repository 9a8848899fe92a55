// One venv per distinct requirements, reused across runs. Only a venv with its ready marker is reused, so
// a crash mid-build never leaves a half venv that later runs would trust; concurrent builds of the same
// requirements (two runs, or two agents sharing the cache) are deduplicated. pip runs with a minimal
// environment (agent/run-env.ts: no storage keys or tokens for a setup.py to find), in a cgroup of its own
// when the agent has them (what a setup.py starts dies with the build), and a finished venv is left
// writable by its owner only: runs (another user with --run-as-user) can use it, never change it.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';
import { lineSplitter } from './lines.js';
import { pipEnv } from './run-env.js';
import { RunCgroup } from './cgroup.js';
import { chownTree, denyWritesByOthers } from './containment.js';
import { asUser, type RunAsUser } from './run-as.js';
import { lockVenv } from './venv-lock.js';

export interface VenvOptions {
  venvDir: string;
  python: string;
  pipIndexUrl: string;
  pipFindLinks: string;
  /** Where builds' cgroups go (agent/cgroup.ts); absent or null: none. */
  cgroupBase?: string | null;
  /**
   * `--run-as-user`: python -m venv and pip (and so every setup.py and build backend a requirement brings)
   * run as this user, not as the agent (root): they can read neither the agent's credential in its work dir
   * nor its /proc environ, as train.py cannot. The finished venv is then given to root and made read-only
   * to everyone else, so no run can change it afterwards.
   */
  runAs?: RunAsUser | null;
}

export class PackagingError extends TrainyardError {
  constructor(message: string) {
    super(ErrorCodes.FailedPrecondition, message);
    this.name = 'PackagingError';
  }
}

/**
 * A build in progress, shared by every run that needs the same venv. It runs under its own controller,
 * never under a caller's signal: a caller that is killed only stops waiting, and the build is aborted
 * when the last waiter has left (so a kill of one run cannot fail another that shares its build).
 */
interface SharedBuild {
  readonly done: Promise<string>;
  readonly controller: AbortController;
  /** Each waiter's log: the build's output goes to every run waiting on it. */
  readonly logs: Set<(line: string) => void>;
}

const building = new Map<string, SharedBuild>();

export async function ensureVenv(o: VenvOptions, requirementsFile: string | null, log: (line: string) => void, signal: AbortSignal): Promise<string> {
  signal.throwIfAborted();
  const requirements = requirementsFile && existsSync(requirementsFile) ? await readFile(requirementsFile, 'utf8') : '';
  const normalized = requirements.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).join('\n');
  const key = createHash('sha256').update(JSON.stringify([o.python, normalized, o.pipIndexUrl, o.pipFindLinks])).digest('hex').slice(0, 24);
  const dir = path.join(o.venvDir, key);
  if (existsSync(path.join(dir, '.trainyard-ready'))) {
    log(`[trainyard] reusing environment ${key}`);
    return dir;
  }
  signal.throwIfAborted();
  let b = building.get(key);
  if (!b) {
    const controller = new AbortController();
    const logs = new Set<(line: string) => void>();
    const shared: SharedBuild = {
      controller, logs,
      done: build(o, dir, normalized, requirementsFile, (l) => { for (const w of logs) w(l); }, controller.signal)
        .finally(() => { if (building.get(key) === shared) building.delete(key); }),
    };
    // Nobody may be left waiting when it settles; the waiters see its outcome through wait().
    shared.done.catch(() => {});
    building.set(key, b = shared);
  } else {
    log(`[trainyard] waiting for environment ${key}, being built for another run`);
  }
  return wait(key, b, log, signal);
}

/** Waits for a shared build; this waiter's abort rejects only this waiter, and the last one out aborts the build. */
function wait(key: string, b: SharedBuild, log: (line: string) => void, signal: AbortSignal): Promise<string> {
  b.logs.add(log);
  return new Promise<string>((resolve, reject) => {
    const leave = () => {
      signal.removeEventListener('abort', onAbort);
      b.logs.delete(log);
    };
    const onAbort = () => {
      leave();
      reject(signal.reason);
      if (b.logs.size === 0) {
        // Forgotten at once, so a run arriving while this one cleans up starts a fresh build (which
        // waits on the lock folder) instead of joining one that is being aborted.
        if (building.get(key) === b) building.delete(key);
        b.controller.abort(signal.reason);
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    b.done.then((dir) => { leave(); resolve(dir); }, (err: unknown) => { leave(); reject(err); });
  });
}

async function build(o: VenvOptions, dir: string, requirements: string, requirementsFile: string | null, log: (line: string) => void, signal: AbortSignal): Promise<string> {
  await mkdir(o.venvDir, { recursive: true });
  // Built where it will live (a venv's scripts record their own path, so a renamed venv breaks pip and
  // every installed tool), under a lock folder other agents sharing the cache wait on.
  const release = await lockVenv(`${dir}.lock`, signal, () => log('[trainyard] waiting for another agent building the same environment'));
  const home = `${dir}.home`;
  try {
    if (existsSync(path.join(dir, '.trainyard-ready'))) return dir;
    await rm(dir, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
    log(`[trainyard] creating environment (${requirements ? requirements.split('\n').length + ' requirements' : 'no requirements'})`);
    const u = o.runAs ?? null;
    if (u) {
      // The build's folders are the user's while it runs (pip's cache and config go in a home of its own).
      for (const d of [dir, home]) { await mkdir(d, { mode: 0o755 }); await chown(d, u.uid, u.gid); }
    }
    await run(o, o.python, ['-m', 'venv', ...(requirements ? [] : ['--without-pip']), dir], log, signal, 'python -m venv', home);
    if (requirements && requirementsFile) {
      const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-r', requirementsFile];
      if (o.pipIndexUrl) args.push('--index-url', o.pipIndexUrl);
      if (o.pipFindLinks) args.push('--find-links', o.pipFindLinks);
      await run(o, path.join(dir, 'bin', 'python'), args, log, signal, 'pip install -r requirements.txt', home);
    }
    // Whoever built it, the venv is root's from now on, and nobody else may write it.
    if (u) { await chownTree(dir, 0, 0); await rm(home, { recursive: true, force: true }); }
    await denyWritesByOthers(dir);
    // Written last: only a venv with this marker is ever reused.
    await writeFile(path.join(dir, '.trainyard-ready'), new Date().toISOString());
    return dir;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
    throw err;
  } finally {
    await release();
  }
}

let builds = 0;

async function run(o: VenvOptions, cmd: string, args: string[], log: (line: string) => void, signal: AbortSignal, what: string, home: string): Promise<void> {
  const cg = o.cgroupBase ? await RunCgroup.create(o.cgroupBase, `venv-${++builds}-${process.pid}`) : null;
  try {
    // As the run user: the privileges are dropped below the root shell that puts it in its cgroup.
    const line = o.runAs ? asUser(o.runAs, cmd, args) : { command: cmd, args };
    await runIn(cg, line.command, line.args, log, signal, what, o.runAs ? { ...pipEnv(), HOME: home } : pipEnv());
  } finally {
    await cg?.destroy().catch((err: unknown) => log(`[trainyard] could not remove the build's cgroup ${cg.dir}: ${(err as Error).message}`));
  }
}

function runIn(cg: RunCgroup | null, cmd: string, args: string[], log: (line: string) => void, signal: AbortSignal, what: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const tail: string[] = [];
    const line = cg ? cg.wrap(cmd, args) : { command: cmd, args };
    const child = spawn(line.command, line.args, { stdio: ['ignore', 'pipe', 'pipe'], signal, env });
    const onLine = (l: string) => { log(l); tail.push(l); if (tail.length > 20) tail.shift(); };
    const out = lineSplitter(onLine);
    const errs = lineSplitter(onLine);
    child.stdout.on('data', (c: Buffer) => out.write(c));
    child.stderr.on('data', (c: Buffer) => errs.write(c));
    child.on('error', (err) => reject(new PackagingError(`${what}: ${err.message}`)));
    // Whatever the build left behind holds the pipes open; it dies with the build.
    child.on('exit', () => { void cg?.kill(0); });
    child.on('close', (code, sig) => {
      out.end(); errs.end();
      if (code === 0) return resolve();
      const errorLines = tail.filter((l) => /error/i.test(l));
      const detail = (errorLines.length ? errorLines : tail).slice(-3).join(' | ');
      reject(new PackagingError(`${what} failed (${sig ? `signal ${sig}` : `exit code ${code}`}): ${detail}`));
    });
  });
}
