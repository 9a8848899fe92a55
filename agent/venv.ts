// One venv per distinct set of inputs (agent/venv-key.ts: the requirements text and every local file it
// names, the Python, the index settings), reused across runs. Only a venv with its ready marker is reused,
// so a crash mid-build never leaves a half venv that later runs would trust; concurrent builds of the same
// key (two runs, or two agents sharing the cache) are deduplicated. pip runs with a minimal environment
// (agent/run-env.ts: no storage keys or tokens for a setup.py to find), in a cgroup of its own when the
// agent has them (what a setup.py starts dies with the build), as the run uid of the attempt that started
// the build (agent/run-uids.ts), never as root. Once built, a venv is sealed before it is marked ready:
// every file root's, nobody else may write it, no setuid bit, and no symlink leading anywhere a user could
// change (agent/venv-seal.ts). Root never executes anything in a venv (agent/lineage.ts reads its metadata as data; warm
// interpreters start from the base Python).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { lineSplitter } from './lines.js';
import { compilerPath, pipEnv } from './run-env.js';
import { RunCgroup } from './cgroup.js';
import { asUser, type Helpers, type RunAsUser } from './run-as.js';
import { PackagingError } from './packaging-error.js';
import { venvKey } from './venv-key.js';
import { lockNotTaken, lockVenv } from './venv-lock.js';
import { deadline } from '../shared/deadline.js';
import { seal } from './venv-seal.js';
import { sharedCacheDir, sharedCacheEligible, uvInstall, uvVenv } from './venv-uv.js';
import type { Installer } from './uv.js';
import type { VenvCacheCap } from './venv-cache-cap.js';
import type { Containment } from './containment.js';
import type { RunUidLease } from './run-uids.js';

export { PackagingError };

export interface VenvOptions {
  venvDir: string;
  /** The base interpreter, by its real path (agent/run-as.ts resolveHelpers). */
  python: string;
  /** Its version (sys.version), part of the key. */
  pythonVersion: string;
  pipIndexUrl: string;
  pipFindLinks: string;
  /** Where builds' cgroups go (agent/cgroup.ts); absent or null: none. */
  cgroupBase?: string | null;
  /** setpriv and sh by absolute paths; absent: the agent's own uid builds (no pool). */
  helpers?: Helpers;
  /**
   * The uid the build runs as (the attempt's, which holds it until the build has ended): python -m venv and
   * pip (and so every setup.py and build backend a requirement brings) run as it, not as root. Absent or
   * null: the agent's own uid (an agent without a pool).
   */
  runAs?: RunAsUser | null;
  /** Called when a build starts as `runAs`; the function it returns, once the build's processes are gone. */
  holdUid?: () => () => Promise<void>;
  /** `--installer`: uv (default) when `uv` is set, else pip. */
  installer?: Installer;
  /** The uv binary (agent/uv.ts findUv), by absolute path, or the lookup that gives it; absent or null: pip builds. */
  uv?: string | null | Promise<string | null>;
  /** The venv dir's size cap (agent/venv-cache-cap.ts): measured and enforced after each build. */
  cap?: VenvCacheCap;
  /** Marks the venv handed out in use (the attempt's holder), before anything can remove it. */
  hold?: (dir: string) => void;
  /** Each step of a build as it ends, with its milliseconds (bench/venv.ts profiles the build with it). */
  onStep?: (step: string, ms: number) => void;
  /** Failures of what runs after a build in the background (its bytecode), for the agent's log. */
  warn?: (msg: string) => void;
}

/**
 * The options a build takes on this agent: its containment's interpreter, helpers and cgroups, and the uid
 * it runs as (a run uid's lease: the attempt's, or a preparation's; null: the agent's own).
 */
export function contained(o: VenvOptions, c: Containment | undefined, uid: RunUidLease | null): VenvOptions {
  return {
    ...o, ...(c ? { python: c.helpers.python, pythonVersion: c.helpers.pythonVersion, helpers: c.helpers } : {}),
    cgroupBase: c?.cgroupBase ?? null, runAs: uid?.user ?? null, holdUid: uid ? () => uid.hold() : undefined,
  };
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
  /** Each waiter's hold: called as the build ends, before anything else can run, so no cap removes it. */
  readonly holds: Set<(dir: string) => void>;
}

/** The marker a venv gets last: only a venv with it is ever reused (agent/venv-cache-cap.ts reads its mtime). */
export const READY = '.trainyard-ready';

/** A venv that may be handed out: marked ready and not being removed by this agent's cache cap. */
const usable = (o: VenvOptions, dir: string) => existsSync(path.join(dir, READY)) && !o.cap?.evicting(dir);

/** Whether a build is under way in this agent (the cap then leaves the shared uv cache alone). */
export const buildsUnderWay = (): boolean => building.size > 0 || compiles.size > 0;

const building = new Map<string, SharedBuild>();

/** `work`, reported to `o.onStep` as `step` with its duration. */
async function timed<T>(o: Pick<VenvOptions, 'onStep'>, step: string, work: () => Promise<T>): Promise<T> {
  if (!o.onStep) return work();
  const t0 = performance.now();
  try { return await work(); } finally { o.onStep(step, performance.now() - t0); }
}

export async function ensureVenv(o: VenvOptions, requirementsFile: string | null, log: (line: string) => void, signal: AbortSignal): Promise<string> {
  signal.throwIfAborted();
  const file = requirementsFile && existsSync(requirementsFile) ? requirementsFile : null;
  const { key, requirements: normalized } = await timed(o, 'key', () => venvKey({ python: o.python, pythonVersion: o.pythonVersion, pipIndexUrl: o.pipIndexUrl, pipFindLinks: o.pipFindLinks, requirementsFile: file }));
  const dir = path.join(o.venvDir, key);
  if (usable(o, dir)) {
    o.hold?.(dir);
    log(`[trainyard] reusing environment ${key}`);
    // A compile stopped before it ended (the agent stopped), or a venv built before there was one.
    if (!existsSync(path.join(dir, COMPILED))) compileInBackground(o, dir, null);
    return dir;
  }
  signal.throwIfAborted();
  let b = building.get(key);
  if (!b) {
    const controller = new AbortController();
    const logs = new Set<(line: string) => void>();
    const holds = new Set<(dir: string) => void>();
    const shared: SharedBuild = {
      controller, logs, holds,
      done: build(o, dir, normalized, file, (l) => { for (const w of logs) w(l); }, controller.signal)
        .then((d) => { for (const h of holds) h(d); void o.cap?.enforce().catch(() => {}); return d; })
        .finally(() => { if (building.get(key) === shared) building.delete(key); }),
    };
    // Nobody may be left waiting when it settles; the waiters see its outcome through wait().
    shared.done.catch(() => {});
    building.set(key, b = shared);
  } else {
    log(`[trainyard] waiting for environment ${key}, being built for another run`);
  }
  return wait(key, b, log, signal, o.hold);
}

/** Waits for a shared build; this waiter's abort rejects only this waiter, and the last one out aborts the build. */
function wait(key: string, b: SharedBuild, log: (line: string) => void, signal: AbortSignal, hold?: (dir: string) => void): Promise<string> {
  b.logs.add(log);
  if (hold) b.holds.add(hold);
  return new Promise<string>((resolve, reject) => {
    const leave = () => {
      signal.removeEventListener('abort', onAbort);
      b.logs.delete(log);
      if (hold) b.holds.delete(hold);
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
  const waiting = () => log('[trainyard] waiting for another agent building the same environment');
  // A venv another agent made ready while this one waited is used at once, not after that agent's
  // bytecode compile, which holds the lock. Gone again by the time it is looked at (evicted), the wait
  // for the lock goes on: nothing is built without it.
  let release = await timed(o, 'lock', () => lockVenv(`${dir}.lock`, signal, waiting, { doneWhen: () => usable(o, dir) }));
  if (release === lockNotTaken) {
    if (usable(o, dir)) return dir;
    release = await timed(o, 'lock', () => lockVenv(`${dir}.lock`, signal, waiting));
  }
  const home = `${dir}.home`;
  const u = o.runAs ?? null;
  // The uid stays this build's until its processes are gone, even if the attempt that started it ends.
  const unhold = u ? o.holdUid?.() : undefined;
  let compileAfter = false;
  try {
    if (existsSync(path.join(dir, READY))) return dir;
    await rm(dir, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
    log(`[trainyard] creating environment (${requirements ? requirements.split('\n').length + ' requirements' : 'no requirements'})`);
    const uv = o.installer === 'pip' ? null : (await o.uv) ?? null;
    if (uv && sharedCacheEligible(requirements)) {
      // Wheels only, by the agent, through the shared cache (agent/venv-uv.ts says why that is safe).
      try {
        await buildShared(o, uv, dir, requirements, log, signal);
        // Only the agent wrote it (as root where runs have uids of their own): nothing to give to root.
        await timed(o, 'seal', () => seal(dir, { chownToRoot: false, rootOnlyLinks: u !== null, onStep: o.onStep }));
        await writeFile(path.join(dir, READY), new Date().toISOString());
        compileAfter = true;
        return dir;
      } catch (err) {
        if (signal.aborted) throw err;
        log(`[trainyard] not every requirement is a wheel of an index (${(err as Error).message.slice(0, 300)}); building as the run's user`);
        await rm(dir, { recursive: true, force: true });
      }
    }
    // The build's folders are the uid's while it runs (pip's cache and config go in a home of its own).
    const fresh = async () => {
      await rm(dir, { recursive: true, force: true });
      await rm(home, { recursive: true, force: true });
      if (u) for (const [d, mode] of [[dir, 0o755], [home, 0o700]] as const) { await mkdir(d, { mode }); await chown(d, u.uid, u.gid); }
    };
    await fresh();
    // pip's working directory is the package folder: `-e .` and `./x.whl` are the package's (and what the
    // key hashed).
    const cwd = requirementsFile ? path.dirname(requirementsFile) : o.venvDir;
    let built = false;
    if (uv) {
      // As the run's uid, with a uv cache of its own in the build's private home (removed with it).
      try {
        const cache = path.join(home, 'uv-cache');
        const v = uvVenv(uv, o.python, dir, cache);
        await run(o, v.command, v.args, log, signal, 'uv venv', home, cwd);
        if (requirements && requirementsFile) {
          const i = uvInstall(uv, { dir, requirementsFile, cacheDir: cache, pipIndexUrl: o.pipIndexUrl, pipFindLinks: o.pipFindLinks, wheelsOnly: false });
          await run(o, i.command, i.args, log, signal, 'uv pip install -r requirements.txt', home, cwd);
        }
        built = true;
      } catch (err) {
        // uv reads some requirements files pip reads otherwise (`--find-links wheels`, a bare relative
        // folder, is no URL to uv): pip, the fallback, gets its turn before the run fails.
        if (signal.aborted) throw err;
        log(`[trainyard] uv could not build the environment (${(err as Error).message.slice(0, 300)}); trying pip`);
        await fresh();
      }
    }
    if (!built) await buildWithPip(o, dir, requirements, requirementsFile, log, signal, home, cwd);

    // The build's processes are gone (its cgroup was emptied): nothing of it can change the venv now.
    await timed(o, 'seal', () => seal(dir, { chownToRoot: u !== null, rootOnlyLinks: u !== null, onStep: o.onStep }));
    if (u) await rm(home, { recursive: true, force: true });
    // pip compiles what it installs; uv does not (compiled below, after the ready marker).
    if (!built) await writeFile(path.join(dir, COMPILED), 'pip\n');
    // Written last: only a venv with this marker is ever reused.
    await writeFile(path.join(dir, READY), new Date().toISOString());
    compileAfter = built;
    return dir;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
    throw err;
  } finally {
    try {
      await unhold?.();
    } finally {
      // The venv is ready and the run goes on; its bytecode is compiled meanwhile, under the build's lock
      // (so the cache cap cannot remove the venv under it), which is released after.
      if (compileAfter) compileInBackground(o, dir, release);
      else await release();
    }
  }
}

/** Written once a venv's bytecode is compiled (or pip compiled it): a venv without it is compiled when next used. */
const COMPILED = '.trainyard-compiled';

/** Background bytecode compiles under way, by venv dir: each the whole chain, the lock's release included. */
const compiles = new Map<string, { done: Promise<void>; ac: AbortController }>();

/** Resolves when no background compile is running (bench/venv.ts waits, so the next build it times has the CPU). */
export async function backgroundCompiles(): Promise<void> {
  while (compiles.size > 0) await Promise.all([...compiles.values()].map((c) => c.done));
}

/** Ends every background compile (the agent is stopping); what was compiled stays, and the rest is compiled at the venv's next use. */
export async function stopBackgroundCompiles(): Promise<void> {
  for (const c of compiles.values()) c.ac.abort(new Error('the agent is stopping'));
  await backgroundCompiles();
}

/**
 * The venv's bytecode. uv installs no .pyc files (pip does), and a sealed venv is read-only to its runs, so
 * without them every run compiles every module it imports, every time (importing pandas and sklearn took
 * a run uid 3.9 s against 1.3 s with bytecode: README, Benchmarks). Compiled once, after the venv is marked
 * ready (the first run does not wait for it; `uv pip install --compile-bytecode` made the build 6-8 s
 * longer), in the background, under the venv's build lock (so the cache cap does not remove it meanwhile):
 * `lock`, the build's own, is handed over; null: taken here if free at once (else a later use tries again).
 */
export function compileInBackground(o: VenvOptions, dir: string, lock: (() => Promise<void>) | null): void {
  if (compiles.has(dir)) { if (lock) void lock().catch(() => {}); return; }
  const ac = new AbortController();
  const done = (async () => {
    let release = lock;
    try {
      // Free at once, or held by a build or an eviction (a later use tries again).
      release ??= await lockVenv(`${dir}.lock`, deadline(200, ac.signal), () => {}).catch((err: unknown) => {
        if ((err as Error).name !== 'TimeoutError' && !ac.signal.aborted) o.warn?.(`could not take the lock of ${dir} to compile its bytecode: ${(err as Error).message}`);
        return null;
      });
      if (!release || !usable(o, dir) || existsSync(path.join(dir, COMPILED))) return;
      const said = await compileVenvBytecode(o, dir, ac.signal).catch((err: unknown) => {
        if (ac.signal.aborted) throw err;
        // Refused or failed for good (a lib/ that is a link): said once, marked, not tried at every use.
        return `not compiled: ${(err as Error).message.slice(0, 300)}`;
      });
      await writeFile(path.join(dir, COMPILED), `${new Date().toISOString()} ${said}\n`);
      if (!said.startsWith('compiled') || /^compiled 0 of [1-9]/.test(said)) o.warn?.(`the bytecode of ${dir} was not compiled (its runs compile what they import): ${said}`);
    } catch (err) {
      if (!ac.signal.aborted) o.warn?.(`could not compile the bytecode of ${dir} (its runs compile what they import): ${(err as Error).message.slice(0, 300)}`);
    } finally {
      await release?.().catch((err: unknown) => o.warn?.(`could not release the lock of ${dir}: ${(err as Error).message}`));
      compiles.delete(dir);
    }
    // The .pyc files count against the cap too.
    if (!ac.signal.aborted) void o.cap?.enforce().catch(() => {});
  })();
  compiles.set(dir, { done, ac });
}

/**
 * Compiles a sealed venv's modules (agent/harness/trainyard_compile.py) as the agent, with the base
 * interpreter isolated (-I -S: root never runs the venv's own python, and nothing of the venv or the site
 * is imported; compiling reads the sources as text), one process at nice 19 (in a cgroup of its own where
 * the agent has them), umask 022: what it adds is the agent's and nobody else may write it, like the rest
 * of the venv. Only plain files in plain folders, never through a link (the script says why). A compile
 * that fails or is stopped leaves the venv usable as it was; Python checks each .pyc against its source's
 * mtime and size. Resolves with the script's last line ("compiled N of M files").
 */
export async function compileVenvBytecode(o: Pick<VenvOptions, 'python' | 'cgroupBase' | 'venvDir' | 'onStep'>, dir: string, signal: AbortSignal): Promise<string> {
  let said = '';
  await run({ ...o, runAs: null }, o.python, ['-I', '-S', compilerPath(), path.join(dir, 'lib')], (l) => { said = l; }, signal, 'compile bytecode (after ready)', o.venvDir, o.venvDir);
  return said;
}

async function buildWithPip(o: VenvOptions, dir: string, requirements: string, requirementsFile: string | null, log: (line: string) => void, signal: AbortSignal, home: string, cwd: string): Promise<void> {
  await run(o, o.python, ['-m', 'venv', ...(requirements ? [] : ['--without-pip']), dir], log, signal, 'python -m venv', home, cwd);
  if (requirements && requirementsFile) {
    const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-r', requirementsFile];
    if (o.pipIndexUrl) args.push('--index-url', o.pipIndexUrl);
    if (o.pipFindLinks) args.push('--find-links', o.pipFindLinks);
    await run(o, path.join(dir, 'bin', 'python'), args, log, signal, 'pip install -r requirements.txt', home, cwd);
  }
}

/**
 * The agent's own build, wheels only, through the shared cache: `uv venv` and `uv pip install --no-build`
 * as the agent (never as a run's uid: the cache is the agent's alone), from a copy of the requirements
 * the agent checked (sharedCacheEligible), so nothing can change them between the check and the install.
 */
async function buildShared(o: VenvOptions, uv: string, dir: string, requirements: string, log: (line: string) => void, signal: AbortSignal): Promise<void> {
  const cache = sharedCacheDir(o.venvDir);
  await mkdir(cache, { recursive: true, mode: 0o700 });
  const agent = { ...o, runAs: null };
  log(`[trainyard] installing with uv (wheels only, shared cache)`);
  const v = uvVenv(uv, o.python, dir, cache);
  await run(agent, v.command, v.args, log, signal, 'uv venv', o.venvDir, o.venvDir);
  if (!requirements) return;
  const checked = `${dir}.requirements.txt`;
  await writeFile(checked, requirements + '\n', { mode: 0o600 });
  try {
    const i = uvInstall(uv, { dir, requirementsFile: checked, cacheDir: cache, pipIndexUrl: o.pipIndexUrl, pipFindLinks: o.pipFindLinks, wheelsOnly: true });
    await run(agent, i.command, i.args, log, signal, 'uv pip install --no-build', o.venvDir, o.venvDir);
  } finally {
    await rm(checked, { force: true });
  }
}

let builds = 0;

async function run(o: Pick<VenvOptions, 'cgroupBase' | 'runAs' | 'helpers' | 'onStep'>, cmd: string, args: string[], log: (line: string) => void, signal: AbortSignal, what: string, home: string, cwd: string): Promise<void> {
  const cg = o.cgroupBase ? await timed(o, 'cgroup', () => RunCgroup.create(o.cgroupBase!, `venv-${++builds}-${process.pid}`)) : null;
  try {
    // As the run uid: the privileges are dropped below the root shell that puts it in its cgroup.
    const line = o.runAs && o.helpers ? asUser(o.helpers, o.runAs, cmd, args) : { command: cmd, args };
    const env = o.runAs ? { ...pipEnv(), HOME: home, TMPDIR: home, USER: o.runAs.name, LOGNAME: o.runAs.name } : pipEnv();
    await timed(o, what, () => runIn(cg, line.command, line.args, log, signal, what, env, cwd));
  } finally {
    if (cg) await timed(o, 'cgroup', () => cg.destroy()).catch((err: unknown) => log(`[trainyard] could not remove the build's cgroup ${cg.dir}: ${(err as Error).message}`));
  }
}

function runIn(cg: RunCgroup | null, cmd: string, args: string[], log: (line: string) => void, signal: AbortSignal, what: string, env: Record<string, string>, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const tail: string[] = [];
    const line = cg ? cg.wrap(cmd, args) : { command: cmd, args };
    const child = spawn(line.command, line.args, { stdio: ['ignore', 'pipe', 'pipe'], signal, env, cwd });
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
