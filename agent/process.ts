// Supervision of one child process (train.py through the harness): it runs in its own process group so a
// stop reaches whatever it started too; a stop is SIGTERM to the group, a grace period, then SIGKILL; a
// timeout asks the owner to stop it; and once the leader has exited, anything it left in the group is
// killed, so no stray process outlives its attempt. With a cgroup (agent/cgroup.ts) the same holds for
// processes that left the group (setsid, a double fork): every stop and the leader's exit kill the whole
// cgroup, and `exited` resolves only once it is empty.
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { lineSplitter } from './lines.js';
import type { RunCgroup } from './cgroup.js';
import { after } from '../shared/deadline.js';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SuperviseOptions {
  /** For spawn(); a forked child was given its own. */
  cwd: string;
  env: NodeJS.ProcessEnv;
  onStdout: (line: string) => void;
  onStderr: (line: string) => void;
  /** Between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** After this long, onTimeout is called (the owner decides how to stop); 0 or absent: no limit. */
  timeoutMs?: number;
  onTimeout?: () => void;
  /** Aborting it stops the process group (SIGTERM, grace, SIGKILL); already aborted stops it at once. */
  signal?: AbortSignal;
  /** The cgroup the process runs in (created empty by the owner, who also removes it); absent: the process group only. */
  cgroup?: RunCgroup;
  /** Told when the cgroup could not be emptied (a process stuck in the kernel). */
  onWarn?: (msg: string) => void;
}

/**
 * A started child, however it was started: spawned here (spawnChild) or forked by a warm interpreter
 * (agent/warm-interpreter.ts). Either way it leads its own process group.
 */
export interface RunningChild {
  readonly pid: number | undefined;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the leader has exited (its group may still hold the output open); rejects if it never started. */
  readonly exit: Promise<ProcessExit>;
  /** Resolves once, after the leader's exit, its output has been read to the end. */
  readonly close: Promise<ProcessExit>;
}

/** Spawns `command args` leading a process group of its own (inside `cgroup` when given, before it runs). */
export function spawnChild(command: string, args: string[], o: { cwd: string; env: NodeJS.ProcessEnv; cgroup?: RunCgroup }): RunningChild {
  const run = o.cgroup ? o.cgroup.wrap(command, args) : { command, args };
  const child = spawn(run.command, run.args, {
    cwd: o.cwd,
    env: o.env,
    detached: true, // its own process group, so a stop reaches train.py's children too
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exit = new Promise<ProcessExit>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  // 'close' comes once the output is read to its end.
  const close = new Promise<ProcessExit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  return { pid: child.pid, stdout: child.stdout!, stderr: child.stderr!, exit, close };
}

export class SupervisedProcess {
  readonly #child: RunningChild;
  readonly #graceMs: number;
  readonly #cgroup: RunCgroup | undefined;
  #killTimer: NodeJS.Timeout | null = null;
  #exited = false;
  /** Resolves when the leader has exited and its group is gone; rejects if it could not be started. */
  readonly exited: Promise<ProcessExit>;

  /** Spawns `command args` and supervises it. */
  static spawn(command: string, args: string[], o: SuperviseOptions): SupervisedProcess {
    return new SupervisedProcess(spawnChild(command, args, o), o);
  }

  constructor(child: RunningChild, o: SuperviseOptions) {
    this.#graceMs = o.killGraceMs;
    this.#cgroup = o.cgroup;
    this.#child = child;
    const out = lineSplitter(o.onStdout);
    const err = lineSplitter(o.onStderr);
    // resume(): a forked child's sockets come paused (their first line was the agent's to read).
    child.stdout.on('data', (c: Buffer) => out.write(c)).resume();
    child.stderr.on('data', (c: Buffer) => err.write(c)).resume();
    // after(), not setTimeout: a --timeout past 24.8 days would fire at once (shared/deadline.ts).
    const timeout = o.timeoutMs ? after(o.timeoutMs, () => o.onTimeout?.()) : null;
    const onAbort = () => this.stop();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    // The leader is gone; anything it left in the group goes with it. At once, not when the output
    // closes: a background process holding our stdout would otherwise keep the attempt open until it ends.
    child.exit.then(() => {
      this.#exited = true;
      if (child.pid) signalGroup(child.pid, 'SIGKILL');
      void o.cgroup?.kill(0);
    }, () => { this.#exited = true; });
    this.exited = child.close.then(async (exit) => {
      // Whatever left the process group is still in the cgroup: nothing of the run may outlive it.
      if (o.cgroup && !(await o.cgroup.kill())) o.onWarn?.(`processes of ${o.cgroup.dir} did not die`);
      return exit;
    }).finally(() => {
      out.end();
      err.end();
      timeout?.cancel();
      if (this.#killTimer) clearTimeout(this.#killTimer);
      o.signal?.removeEventListener('abort', onAbort);
      if (child.pid) signalGroup(child.pid, 'SIGKILL');
    });
    if (o.signal?.aborted) this.stop();
  }

  get pid(): number | undefined { return this.#child.pid; }

  get running(): boolean { return !this.#exited; }

  /** SIGTERM to the group now, SIGKILL after the grace period; a second call changes nothing. */
  stop(): void {
    const pid = this.#child.pid;
    if (!pid || !this.running || this.#killTimer) return;
    signalGroup(pid, 'SIGTERM');
    // The processes that left the group: each process of the run gets one SIGTERM.
    void this.#cgroup?.signal('SIGTERM', { exceptGroup: pid });
    this.#killTimer = setTimeout(() => {
      signalGroup(pid, 'SIGKILL');
      void this.#cgroup?.kill(0);
    }, this.#graceMs);
  }
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try { process.kill(-pid, sig); } catch { /* already gone */ }
}
