// Warm interpreters: one Python process per venv, started once, that forks a clean child for each run
// (agent/harness/trainyard_warm.py says what the parent holds and what a child does before the run's code
// runs). A run then skips the interpreter's start, the largest fixed cost between dispatch and train().
// The child is what a spawned harness would be: its own session and process group, its cgroup, the run
// user, the run's environment; its output comes to this agent over a Unix socket of the agent's (IoServer),
// and its exit status from the warm interpreter, which reaps it. It is forked and set up ahead (while the
// run's data is made local), takes its environment and does its interpreter start meanwhile (prime), and
// runs train.py when the attempt says the run may start.
// A run whose environment changes what an interpreter reads only at its start (PYTHON*, LANG, LC_*) is spawned fresh instead, as is every run
// when a warm interpreter cannot be had (the agent logs why; the run does not notice).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { projectRoot } from '../shared/proto.js';
import { errorMessage } from '../shared/errors.js';
import type { ProcessExit, RunningChild } from './process.js';
import type { RunAsUser } from './run-as.js';
import { RunCgroup } from './cgroup.js';
import { lineSplitter } from './lines.js';

/** How long a set-up child's output connections may take to be read (they were made before it said so). */
const STREAMS_TIMEOUT_MS = 10_000;

export const warmHarnessPath = () => path.join(projectRoot(), 'agent', 'harness', 'trainyard_warm.py');

/** Variables an interpreter reads only when it starts: a run that sets one gets a fresh interpreter. */
export function needsFreshInterpreter(runEnv: Readonly<Record<string, string>>): boolean {
  return Object.keys(runEnv).some((k) => (/^PYTHON/i.test(k) && k !== 'PYTHONUNBUFFERED') || /^(LANG|LC_.*)$/i.test(k));
}

export interface ForkRequest {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Where the attempt's cgroup goes (agent/cgroup.ts); null: no cgroup. */
  cgroupBase: string | null;
  /** The cgroup's name when one is made for this run (a spare child's comes with its own). */
  cgroupName: string;
  user: RunAsUser | null;
  /** The attempt's spool file (agent/spool.ts): the child becomes the run's supervisor at its start; absent: output over the sockets. */
  spool?: string | null;
}

/** A run's process, set up and waiting for its environment (WarmInterpreters.fork). */
export interface ForkedRun {
  child: RunningChild;
  cgroup: RunCgroup | null;
  /**
   * Sends the child its environment: it does what an interpreter does at its start (the venv's
   * site-packages), and waits for start(). Called as soon as the run's process is set up.
   */
  prime(): void;
  /** The run's code starts (primed first if it was not). */
  start(): void;
  /** Closes its connections: a child not started ends without running anything. */
  cancel(): void;
}

/** What the warm interpreter is sent for a run (never the environment). */
type RunRequest = { spare: number | null; cgroup: string | null; argv: string[]; cwd: string; user: RunAsUser | null; io: string; token: string; spool: string | null };

/** Where forked children connect their stdout and stderr: one socket per agent, connections told apart by a token. */
class IoServer {
  readonly #dir = mkdtempSync(path.join(os.tmpdir(), 'trainyard-io-'));
  readonly path = path.join(this.#dir, 'io.sock');
  readonly #server: net.Server;
  readonly #waiting = new Map<string, { o?: net.Socket; e?: net.Socket; done: (s: { o: net.Socket; e: net.Socket }) => void }>();
  readonly listening: Promise<void>;

  constructor() {
    this.#server = net.createServer((sock) => this.#accept(sock));
    this.listening = new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.path, () => resolve());
    });
  }

  /**
   * A token, and the child's two streams once it has connected both. The child that presents the token on
   * its stdout connection is later sent its environment there (the warm interpreter itself never sees it).
   */
  expect(): { token: string; streams: Promise<{ o: net.Socket; e: net.Socket }>; forget: () => void } {
    const token = randomBytes(16).toString('hex');
    const streams = new Promise<{ o: net.Socket; e: net.Socket }>((done) => this.#waiting.set(token, { done }));
    return { token, streams, forget: () => this.#waiting.delete(token) };
  }

  #accept(sock: net.Socket): void {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf(10);
      if (nl < 0) {
        if (head.length > 64) sock.destroy();
        return;
      }
      sock.off('data', onData);
      sock.pause();
      const [token = '', which = ''] = head.subarray(0, nl).toString().split(' ');
      const w = this.#waiting.get(token);
      if (!w || (which !== 'o' && which !== 'e') || w[which]) { sock.destroy(); return; }
      const rest = head.subarray(nl + 1);
      if (rest.length) sock.unshift(rest);
      w[which] = sock;
      if (w.o && w.e) {
        this.#waiting.delete(token);
        w.done({ o: w.o, e: w.e });
      }
    };
    sock.on('data', onData);
    sock.on('error', () => {});
  }

  close(): void {
    this.#server.close();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** One venv's warm interpreter (exported for its tests; the agent uses WarmInterpreters). */
export class WarmInterpreter {
  readonly #child: ChildProcess;
  #nextId = 1;
  readonly #forks = new Map<number, { resolve: (pid: number) => void; reject: (err: Error) => void }>();
  readonly #exits = new Map<number, (e: ProcessExit) => void>();
  /** Exits that came before anyone waited for them (a child that ended at once); forgotten when the pid is forked again. */
  readonly #early = new Map<number, ProcessExit>();
  #dead: string | null = null;
  #closing = false;
  readonly ready: Promise<void>;

  /**
   * `python`: the base interpreter (agent/run-as.ts resolveHelpers), never the venv's bin/python, which a
   * requirement could have replaced: this parent may be root. `-I -S`: no environment, no site, nothing of
   * the venv; each child adds the venv (site-packages, .pth files) itself, once it is the run's uid.
   */
  constructor(readonly venv: string, python: string, private readonly log: Logger) {
    this.#child = spawn(python, ['-I', '-S', '-u', warmHarnessPath(), venv], {
      // Its own session: a signal to the agent's terminal or group does not reach it.
      detached: true, stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: process.env.LANG ?? 'C.UTF-8', PYTHONUNBUFFERED: '1' },
    });
    let onReady: (() => void) | null = null;
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      this.#child.once('error', reject);
      this.#child.once('exit', (code, sig) => reject(new Error(`it exited before it was ready (${sig ?? `code ${code}`})`)));
    });
    this.ready.catch(() => {});
    let stderr = '';
    this.#child.stderr!.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-2000); });
    const replies = lineSplitter((line) => {
      let m: { ready?: boolean; id?: number; pid?: number; error?: string; exit?: number; code?: number | null; signal?: string | null };
      try { m = JSON.parse(line); } catch { return; }
      if (m.ready) onReady?.();
      else if (m.exit !== undefined) this.#exited(m.exit, { code: m.code ?? null, signal: (m.signal ?? null) as NodeJS.Signals | null });
      else if (m.id !== undefined) {
        const f = this.#forks.get(m.id);
        this.#forks.delete(m.id);
        if (m.error) f?.reject(new Error(m.error));
        else {
          // A new child has this pid: an exit kept for an earlier one of the same pid (a spare or a child
          // nobody waited for) is not this child's, and must not end it at once (issue 20, pid reuse).
          this.#early.delete(m.pid!);
          f?.resolve(m.pid!);
        }
      }
    });
    this.#child.stdout!.on('data', (c: Buffer) => replies.write(c));
    this.#child.on('exit', (code, sig) => {
      this.#dead = `the warm interpreter of ${venv} exited (${sig ?? `code ${code}`})${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`;
      const err = new Error(this.#dead);
      for (const f of this.#forks.values()) f.reject(err);
      this.#forks.clear();
      // Its children were reparented and cannot be reaped here: they end as a lost exit status (the
      // attempt fails, saying so), killed by their owners' cgroup and group kills.
      for (const done of this.#exits.values()) done({ code: null, signal: 'SIGKILL' });
      this.#exits.clear();
      if (this.#closing && code === 0) log.info({ venv }, 'warm interpreter closed');
      else log.warn({ venv, why: this.#dead }, 'warm interpreter ended');
    });
    this.#child.stdin!.on('error', () => {});
  }

  get alive(): boolean { return this.#dead === null; }

  #exited(pid: number, e: ProcessExit): void {
    const done = this.#exits.get(pid);
    if (done) { this.#exits.delete(pid); done(e); } else this.#early.set(pid, e);
  }

  /** Asks for the run's process (in a spare, or forked now); resolves with its pid once it is set up. */
  run(req: RunRequest): Promise<number> {
    return this.#ask(req);
  }

  /** Asks for a spare child inside `cgroup` (set up ahead, so a run does not wait for the move). */
  spare(cgroup: string | null): Promise<number> {
    return this.#ask({ op: 'spare', cgroup });
  }

  #ask(req: object): Promise<number> {
    if (this.#dead) return Promise.reject(new Error(this.#dead));
    const id = this.#nextId++;
    return new Promise<number>((resolve, reject) => {
      this.#forks.set(id, { resolve, reject });
      this.#child.stdin!.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  exitOf(pid: number): Promise<ProcessExit> {
    const early = this.#early.get(pid);
    if (early) { this.#early.delete(pid); return Promise.resolve(early); }
    return new Promise((resolve) => this.#exits.set(pid, resolve));
  }

  close(): void {
    this.#closing = true;
    this.#child.stdin!.end();
  }
}

/**
 * The agent's warm interpreters, at most `max`: the least recently used one is closed to make room (it
 * forks no more and ends once the children it has are reaped, so their exit statuses still come here).
 */
export class WarmInterpreters {
  readonly #byVenv = new Map<string, WarmInterpreter>();
  /** At most one spare child per venv, set up in a cgroup of its own, for the next run there. */
  readonly #spares = new Map<string, { w: WarmInterpreter; pid: number; cgroup: RunCgroup }>();
  readonly #makingSpare = new Set<string>();
  #spareSeq = 0;
  #io: IoServer | null = null;

  /** `max`: warm interpreters kept at once (0: none, every run is spawned); `python`: the base interpreter they start as. */
  constructor(private readonly o: { max: number; log: Logger; python: string }) {}

  /**
   * The run's process, forked from `venv`'s warm interpreter (started if need be) and set up, waiting to
   * start: `start()` sends it the run's environment and it runs; `cancel()` (or its cgroup's end) ends it
   * unrun. With the cgroup it runs in (the caller destroys it at the end, as its own); null when no warm
   * interpreter can be had (the caller spawns instead).
   */
  /** Whether a warm interpreter runs from `venv` (the venv cache's cap leaves such a venv alone). */
  has(venv: string): boolean {
    return this.#byVenv.has(venv);
  }

  async fork(venv: string, req: ForkRequest): Promise<ForkedRun | null> {
    if (this.o.max <= 0) return null;
    let w = this.#byVenv.get(venv);
    try {
      this.#io ??= new IoServer();
      await this.#io.listening;
      if (!w || !w.alive) {
        w = new WarmInterpreter(venv, this.o.python, this.o.log);
        this.#byVenv.set(venv, w);
        this.#trim();
      }
      // Most recently used last.
      this.#byVenv.delete(venv);
      this.#byVenv.set(venv, w);
      await w.ready;
    } catch (err) {
      this.#byVenv.delete(venv);
      this.o.log.warn({ venv, err: errorMessage(err) }, 'no warm interpreter for this venv; runs spawn a fresh one');
      return null;
    }
    let cgroup: RunCgroup | null = null;
    let spare: number | null = null;
    if (req.cgroupBase) {
      const s = this.#spares.get(venv);
      this.#spares.delete(venv);
      if (s && s.w === w && w.alive) {
        spare = s.pid;
        cgroup = s.cgroup;
      } else {
        if (s) void s.cgroup.destroy().catch(() => {});
        cgroup = await RunCgroup.create(req.cgroupBase, req.cgroupName);
      }
      // The next run's spare is made while this one runs.
      this.#makeSpare(venv, w, req.cgroupBase);
    }
    const io = this.#io.expect();
    let pid: number;
    try {
      pid = await w.run({ spare, cgroup: cgroup?.dir ?? null, argv: req.argv, cwd: req.cwd, user: req.user, io: this.#io.path, token: io.token, spool: req.spool ?? null });
    } catch (err) {
      io.forget();
      // The child may have been made, then failed its set-up (a folder it cannot enter): that is the run's
      // failure to report, not a reason to spawn it again. Whatever it left goes with its cgroup.
      await cgroup?.destroy().catch(() => {});
      throw new Error(`could not start the run's process: ${errorMessage(err)}`);
    }
    const exit = w.exitOf(pid);
    // The child reported itself set up only after both connections were made (and the first answered), so
    // they are here or about to be: the agent may not have read the second one's first line yet, and a
    // quick run may even have ended by then (its exit status can arrive first). A bound all the same.
    let timer: NodeJS.Timeout | undefined;
    const streams = await Promise.race([io.streams, new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), STREAMS_TIMEOUT_MS); })]);
    clearTimeout(timer);
    if (!streams) {
      io.forget();
      await cgroup?.destroy().catch(() => {});
      throw new Error(`the run's output was not connected within ${STREAMS_TIMEOUT_MS} ms of its start`);
    }
    const ended = (s: net.Socket) => new Promise<void>((resolve) => { if (s.destroyed || s.readableEnded) resolve(); else s.once('close', () => resolve()); });
    const close = exit.then(async (e) => { await Promise.all([ended(streams.o), ended(streams.e)]); return e; });
    let primed = false;
    const prime = () => {
      if (primed) return;
      primed = true;
      streams.o.write(`${JSON.stringify(req.env)}\n`);
    };
    return {
      child: { pid, stdout: streams.o, stderr: streams.e, exit, close }, cgroup, prime,
      start: () => { prime(); streams.o.write('go\n'); },
      cancel: () => { streams.o.destroy(); streams.e.destroy(); },
    };
  }

  #makeSpare(venv: string, w: WarmInterpreter, base: string): void {
    if (this.#spares.has(venv) || this.#makingSpare.has(venv)) return;
    this.#makingSpare.add(venv);
    void (async () => {
      // Named like an attempt's (...-AGENTPID), so a crashed agent's spares are swept at its next start.
      const cgroup = await RunCgroup.create(base, `warm-${++this.#spareSeq}-${process.pid}`);
      try {
        const pid = await w.spare(cgroup.dir);
        if (w.alive && this.#byVenv.get(venv) === w && !this.#spares.has(venv)) this.#spares.set(venv, { w, pid, cgroup });
        else await cgroup.destroy();
      } catch (err) {
        await cgroup.destroy().catch(() => {});
        this.o.log.debug({ venv, err: errorMessage(err) }, 'no spare child for the next run');
      }
    })().catch((err: unknown) => this.o.log.debug({ venv, err: errorMessage(err) }, 'no spare child for the next run'))
      .finally(() => this.#makingSpare.delete(venv));
  }

  #trim(): void {
    while (this.#byVenv.size > this.o.max) {
      const [venv, w] = this.#byVenv.entries().next().value as [string, WarmInterpreter];
      this.#byVenv.delete(venv);
      void this.#dropSpare(venv);
      w.close();
    }
  }

  #dropSpare(venv: string): Promise<void> {
    const s = this.#spares.get(venv);
    this.#spares.delete(venv);
    // Kills the spare (it ran nothing) and removes its cgroup.
    return s ? s.cgroup.destroy().catch(() => {}) : Promise.resolve();
  }

  /** Closes every warm interpreter (each ends once its running children are reaped) and removes the spares. */
  async close(): Promise<void> {
    const spares = [...this.#spares.keys()].map((venv) => this.#dropSpare(venv));
    for (const w of this.#byVenv.values()) w.close();
    this.#byVenv.clear();
    this.#io?.close();
    this.#io = null;
    await Promise.all(spares);
  }
}
