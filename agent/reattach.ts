// Runs outlive their agent daemon (issue 22; README, "Runs outlive their agent"). Once an attempt's run
// starts, the agent writes down what a restarted agent needs to take it over: the attempt (its dispatch:
// run, attempt, lease), its spool file (agent/spool.ts: the run's output and exit status, kept by the run's
// supervisor, agent/harness/trainyard_supervisor.py), its cgroup, and what the end report carries that was
// learnt before the start (its start time, its lineage). The record is a file of the agent's (0600) beside
// the attempt's folder, in the work dir; the restarted agent (same --name, same --work-dir) reads every
// record before it registers, so it lists those attempts as held (the scheduler then neither takes them
// back nor requeues them), watches each run's cgroup until it is empty, and goes on where the old agent
// stopped: it ships the spool from its acknowledged position, uploads, reports the end. What the scheduler
// no longer wants (killed, or the lease lost while the agent was away) it is told at register and at the
// next heartbeat, and stops as any attempt.
//
// A run's cgroup normally goes with its agent: an agent starting on the box removes the cgroups of agents
// that are gone (agent/cgroup.ts sweepLeftovers). A reattachable run's cgroup is named in a folder every
// agent on the box reads (/run/trainyard/reattachable/NAME, holding the work dir) and is left alone by
// every agent but the one of that work dir.
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatch } from '../shared/proto.js';
import type { ProcessExit } from './process.js';
import type { RunCgroup } from './cgroup.js';
import type { Spool } from './spool.js';
import { after } from '../shared/deadline.js';

/** Where the cgroups of runs that outlive their agent are named (one folder per box, like run-uid leases). */
export const REATTACH_REGISTRY = process.env.TRAINYARD_REATTACH_REGISTRY || '/run/trainyard/reattachable';

const RECORD_SUFFIX = '.reattach.json';

/** What a restarted agent needs to take an attempt over. */
export interface ReattachRecord {
  version: 1;
  dispatch: Dispatch;
  /** The attempt's cgroup folder. */
  cgroup: string;
  /** The run's supervisor (its process group). */
  pid: number;
  /** When train.py started (ms since the epoch): the run's --timeout counts from there. */
  startedAtMs: number;
  /** The end report's start time and lineage, learnt before the start. */
  startAt: number;
  lineage: object;
  /**
   * The lineage's data manifest was still being hashed when this was written (a large pull's hashes come
   * after it: agent/data-cache.ts, deferred hashes; rewritten once they are in): the agent that takes the run
   * over hashes the run's data folder for it.
   */
  dataPending?: boolean;
  /** The run uid's name, uid and gid, if it had one. */
  user: { name: string; uid: number; gid: number } | null;
}

export const recordFile = (attemptDir: string) => `${attemptDir}${RECORD_SUFFIX}`;

export async function saveRecord(attemptDir: string, rec: ReattachRecord): Promise<void> {
  const file = recordFile(attemptDir);
  await writeFile(`${file}.tmp`, JSON.stringify(rec), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
  await mkdir(REATTACH_REGISTRY, { recursive: true, mode: 0o755 });
  // Written whole and renamed into place: another agent's sweep reads the registry at any moment.
  const entry = path.join(REATTACH_REGISTRY, path.basename(rec.cgroup));
  await writeFile(`${entry}.tmp`, JSON.stringify({ workDir: path.dirname(attemptDir), cgroup: rec.cgroup }), { mode: 0o644 });
  await rename(`${entry}.tmp`, entry);
}

/** The attempt has ended here: its record and its cgroup's name in the registry go. */
export async function dropRecord(attemptDir: string, cgroup: string | null): Promise<void> {
  await rm(recordFile(attemptDir), { force: true });
  if (cgroup) await rm(path.join(REATTACH_REGISTRY, path.basename(cgroup)), { force: true });
}

/**
 * The names in the registry (read once per sweep). A name whose cgroup is gone, or empty (then removed:
 * rmdir takes only an empty cgroup), is dropped first: its run has ended, and the agent that comes back
 * for it finds its exit in the spool; only an agent that never came back leaves such names.
 */
export async function registryNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const name of await readdir(REATTACH_REGISTRY).catch(() => [] as string[])) {
    const file = path.join(REATTACH_REGISTRY, name);
    // An entry that cannot be read or parsed is kept, not swept, and never fails the sweep (it failed the
    // agent's cgroups: an entry read while another agent wrote it was empty).
    const cgroup = await readFile(file, 'utf8').then((t) => (JSON.parse(t) as { cgroup?: unknown }).cgroup).catch(() => null);
    if (typeof cgroup === 'string' && path.isAbsolute(cgroup) && path.basename(cgroup) === name) {
      const gone = await rmdir(cgroup).then(() => true, (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
      if (gone) { await rm(file, { force: true }); continue; }
    }
    names.add(name);
  }
  return names;
}

/**
 * The records in this work dir, each with its attempt folder. A record that cannot be read is removed
 * (with its registry name, its cgroup is then swept as any), and said in `bad`.
 */
export async function readRecords(workDir: string): Promise<{ records: { dir: string; rec: ReattachRecord }[]; bad: string[] }> {
  const records: { dir: string; rec: ReattachRecord }[] = [];
  const bad: string[] = [];
  for (const name of await readdir(workDir).catch(() => [] as string[])) {
    if (!name.endsWith(RECORD_SUFFIX)) continue;
    const dir = path.join(workDir, name.slice(0, -RECORD_SUFFIX.length));
    try {
      const rec = JSON.parse(await readFile(path.join(workDir, name), 'utf8')) as ReattachRecord;
      if (rec.version !== 1 || !rec.dispatch?.run_id || typeof rec.cgroup !== 'string' || !path.isAbsolute(rec.cgroup)) throw new Error('not a record of this agent version');
      records.push({ dir, rec });
    } catch (err) {
      bad.push(`${name}: ${(err as Error).message}`);
      await rm(path.join(workDir, name), { force: true });
    }
  }
  return { records, bad };
}

/**
 * An adopted run's process, as SupervisedProcess is a started one's: `exited` resolves once the run has
 * ended (its supervisor's exit record, or its cgroup found empty without one: it was killed while no agent
 * was there) and its cgroup is empty; `stop()` is SIGTERM to every process of the cgroup, the grace, then
 * the cgroup's kill.
 */
export class AdoptedProcess {
  readonly exited: Promise<ProcessExit>;
  #stopping = false;
  #done = false;

  constructor(readonly cgroup: RunCgroup, spool: Spool, private readonly o: { killGraceMs: number; signal: AbortSignal; deadlineMs: number; onTimeout: () => void; onWarn: (msg: string) => void }) {
    const onAbort = () => this.stop();
    o.signal.addEventListener('abort', onAbort, { once: true });
    const timeout = o.deadlineMs > 0 ? after(o.deadlineMs - Date.now(), () => o.onTimeout()) : null;
    this.exited = (async () => {
      for (;;) {
        await spool.readNow();
        if (spool.exit) break;
        if (!(await cgroup.populated())) {
          // Gone: the exit record, if it was written just before, is read once more.
          await spool.readNow();
          break;
        }
        await sleep(100);
      }
      // Whatever the run left behind (a background process) goes with it, as for a started run.
      if (!(await cgroup.kill())) o.onWarn(`processes of ${cgroup.dir} did not die`);
      return spool.exit ?? { code: null, signal: 'SIGKILL' as NodeJS.Signals };
    })().finally(() => {
      this.#done = true;
      timeout?.cancel();
      o.signal.removeEventListener('abort', onAbort);
    });
    if (o.signal.aborted) this.stop();
  }

  stop(): void {
    if (this.#stopping || this.#done) return;
    this.#stopping = true;
    void this.cgroup.signal('SIGTERM');
    setTimeout(() => { if (!this.#done) void this.cgroup.kill(0); }, this.o.killGraceMs).unref();
  }
}
