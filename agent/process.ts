// Supervision of one child process (train.py through the harness): it runs in its own process group so a
// stop reaches whatever it started too; a stop is SIGTERM to the group, a grace period, then SIGKILL; a
// timeout asks the owner to stop it; and once the leader has exited, anything it left in the group is
// killed, so no stray process outlives its attempt. With a cgroup (agent/cgroup.ts) the same holds for
// processes that left the group (setsid, a double fork): every stop and the leader's exit kill the whole
// cgroup, and `exited` resolves only once it is empty.
import { spawn, type ChildProcess } from 'node:child_process';
import { lineSplitter } from './lines.js';
import type { RunCgroup } from './cgroup.js';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SuperviseOptions {
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

export class SupervisedProcess {
  readonly #child: ChildProcess;
  readonly #graceMs: number;
  readonly #cgroup: RunCgroup | undefined;
  #killTimer: NodeJS.Timeout | null = null;
  /** Resolves when the leader has exited and its group is gone; rejects if it could not be started. */
  readonly exited: Promise<ProcessExit>;

  constructor(command: string, args: string[], o: SuperviseOptions) {
    this.#graceMs = o.killGraceMs;
    this.#cgroup = o.cgroup;
    const run = o.cgroup ? o.cgroup.wrap(command, args) : { command, args };
    const child = spawn(run.command, run.args, {
      cwd: o.cwd,
      env: o.env,
      detached: true, // its own process group, so a stop reaches train.py's children too
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    const out = lineSplitter(o.onStdout);
    const err = lineSplitter(o.onStderr);
    child.stdout!.on('data', (c: Buffer) => out.write(c));
    child.stderr!.on('data', (c: Buffer) => err.write(c));
    const timeout = o.timeoutMs ? setTimeout(() => o.onTimeout?.(), o.timeoutMs) : null;
    const onAbort = () => this.stop();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    this.exited = new Promise<ProcessExit>((resolve, reject) => {
      child.on('error', reject);
      // The leader is gone; anything it left in the group goes with it. At once, not when the pipes
      // close: a background process holding our stdout would otherwise keep the attempt open until it ends.
      child.on('exit', () => {
        if (child.pid) signalGroup(child.pid, 'SIGKILL');
        void o.cgroup?.kill(0);
      });
      // 'close' comes once the output is read to its end.
      child.on('close', (code, signal) => resolve({ code, signal }));
    }).then(async (exit) => {
      // Whatever left the process group is still in the cgroup: nothing of the run may outlive it.
      if (o.cgroup && !(await o.cgroup.kill())) o.onWarn?.(`processes of ${o.cgroup.dir} did not die`);
      return exit;
    }).finally(() => {
      out.end();
      err.end();
      if (timeout) clearTimeout(timeout);
      if (this.#killTimer) clearTimeout(this.#killTimer);
      o.signal?.removeEventListener('abort', onAbort);
      if (child.pid) signalGroup(child.pid, 'SIGKILL');
    });
    if (o.signal?.aborted) this.stop();
  }

  get pid(): number | undefined { return this.#child.pid; }

  get running(): boolean { return this.#child.exitCode === null && this.#child.signalCode === null; }

  /** SIGTERM to the group now, SIGKILL after the grace period; a second call changes nothing. */
  stop(): void {
    const pid = this.#child.pid;
    if (!pid || !this.running || this.#killTimer) return;
    signalGroup(pid, 'SIGTERM');
    void this.#cgroup?.signal('SIGTERM');
    this.#killTimer = setTimeout(() => {
      signalGroup(pid, 'SIGKILL');
      void this.#cgroup?.kill(0);
    }, this.#graceMs);
  }
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try { process.kill(-pid, sig); } catch { /* already gone */ }
}
