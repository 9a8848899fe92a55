// The agent's pool of run uids (`--run-uids 61000-61063`): every attempt, and every venv build, runs as a
// uid no other live attempt or build holds, so one run cannot read another's /proc/PID/environ or memory,
// its files or its data, whatever their projects (the kernel's own uid checks do it; nothing to race).
//
// A lease is a folder /run/trainyard/run-uids/UID holding its agent's pid, made with mkdir (atomic): two
// agents on one box whose ranges overlap never hold the same uid at once, and a lease of an agent that is
// gone is taken over. A uid is leased only when no process of it is alive, and given back only once none
// is (its cgroup was emptied; whatever is left of it is killed here, with the files it left in the shared
// temp folders), so the next holder finds nothing of the last one. Each uid gets a passwd entry
// (trainyard-UID, a group of its own, no home, no shell) the first time it is leased, so pip, getpass and
// pwd work as for any user.
import { lstatSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';
import { pidAlive } from './cgroup.js';
import { exec, type RunAsUser } from './run-as.js';

/** Where leases live: one folder for every agent on the box, so overlapping ranges cannot collide. */
export const LEASE_DIR = '/run/trainyard/run-uids';
/** Folders every user may write: what a run uid left there is removed when its lease ends. */
const SHARED_TEMP = ['/tmp', '/var/tmp', '/dev/shm'];
const PREFIX = 'trainyard-';

export class RunUidError extends TrainyardError {
  constructor(message: string) {
    super(ErrorCodes.FailedPrecondition, message);
    this.name = 'RunUidError';
  }
}

/** `FIRST-LAST` (or one uid), each above the system range and below nobody's (65534). */
export function parseRunUids(text: string): { first: number; last: number } {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+))?\s*$/.exec(text);
  const first = Number(m?.[1]);
  const last = Number(m?.[2] ?? m?.[1]);
  if (!m || !(first >= 1000 && last >= first && last < 65534)) {
    throw new RunUidError(`--run-uids "${text}": expected FIRST-LAST, uids from 1000 to 65533 (e.g. 61000-61063)`);
  }
  return { first, last };
}

interface PasswdEntry { name: string; uid: number; gid: number }

async function passwd(): Promise<PasswdEntry[]> {
  const text = await readFile('/etc/passwd', 'utf8').catch(() => '');
  return text.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4)
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) }));
}

/** How long giving a uid back keeps killing what is left of it before it lets the uid go all the same. */
const RELEASE_PATIENCE_MS = 5000;
/** /proc/PID/status files read (or temp entries looked at) between two turns of the event loop. */
const PROC_READS_PER_TURN = 64;

/**
 * Pids of live processes whose real, effective, saved or filesystem uid is `uid`: a zombie (exited, not
 * yet reaped by its parent) is not one, it runs nothing and holds nothing, and no kill makes it go.
 * On every run's path (the lease) and at its end: the status files are read synchronously, which procfs
 * answers from memory (about 1 ms for 150 processes here), where an async read is four trips through
 * libuv's thread pool per file and one file after the other took 24-30 ms; the loop lets the event loop
 * turn every 64 files, so a box with thousands of processes does not hold the agent's other work.
 */
export async function processesOf(uid: number): Promise<number[]> {
  const out: number[] = [];
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((e) => /^\d+$/.test(e));
  for (let i = 0; i < pids.length; i++) {
    if (i > 0 && i % PROC_READS_PER_TURN === 0) await new Promise<void>((r) => setImmediate(r));
    let status = '';
    try { status = readFileSync(`/proc/${pids[i]}/status`, 'utf8'); } catch { /* gone since the listing */ }
    const ids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
    if (ids.includes(uid) && !/^State:\s+[ZX]/m.test(status)) out.push(Number(pids[i]));
  }
  return out;
}

/**
 * The entries of `dirs` (not below them) that `uid` owns. Looked at synchronously, yielding every
 * PROC_READS_PER_TURN entries, for the reason processesOf reads /proc so: a busy /tmp is thousands of
 * entries, and one promise lstat after another cost the agent's thread a second per run's end (9,150
 * entries, profiled on this machine, issue 21), where lstatSync takes a few milliseconds.
 */
export async function entriesOwnedBy(uid: number, dirs: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const dir of dirs) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (let i = 0; i < names.length; i++) {
      if (i > 0 && i % PROC_READS_PER_TURN === 0) await new Promise<void>((r) => setImmediate(r));
      const p = path.join(dir, names[i]!);
      try { if (lstatSync(p).uid === uid) out.push(p); } catch { /* gone since the listing */ }
    }
  }
  return out;
}

export interface RunUidLease {
  readonly user: RunAsUser;
  /**
   * Another holder (a venv build the attempt started, which other runs may wait on): the uid stays leased
   * until every holder has let go. Returns the function that lets go.
   */
  hold(): () => Promise<void>;
  /**
   * The attempt lets go; when nobody holds the uid any more, what is left of it is killed, its files in
   * the shared temp folders removed, and it is freed.
   */
  release(): Promise<void>;
}

export class RunUidPool {
  #next = 0;
  private constructor(readonly first: number, readonly last: number) {}

  get size(): number { return this.last - this.first + 1; }

  /** Checks the range against the users on this box: a uid of it that is someone else's is refused. */
  static async open(range: string): Promise<RunUidPool> {
    const { first, last } = parseRunUids(range);
    for (const u of await passwd()) {
      if (u.uid >= first && u.uid <= last && u.name !== `${PREFIX}${u.uid}`) {
        throw new RunUidError(`--run-uids ${range}: uid ${u.uid} belongs to the user "${u.name}"; choose a range of uids nobody uses`);
      }
    }
    await mkdir(LEASE_DIR, { recursive: true, mode: 0o700 });
    return new RunUidPool(first, last);
  }

  /** A uid no other live attempt or build holds (any agent on this box), with its passwd entry. */
  async lease(): Promise<RunUidLease> {
    for (let i = 0; i < this.size; i++) {
      const uid = this.first + ((this.#next + i) % this.size);
      if (!(await this.#take(uid))) continue;
      this.#next = (uid - this.first + 1) % this.size;
      try {
        if ((await processesOf(uid)).length > 0) { await this.#free(uid); continue; } // not ours: left alone
        const user = await ensureUser(uid);
        return this.#lease(uid, user);
      } catch (err) {
        await this.#free(uid);
        throw err;
      }
    }
    throw new RunUidError(`every run uid of ${this.first}-${this.last} is in use (more runs and builds at once than the pool has uids: widen --run-uids)`);
  }

  #lease(uid: number, user: RunAsUser): RunUidLease {
    let holds = 0;
    let freed: Promise<void> | null = null;
    const holder = () => {
      holds++;
      let done = false;
      return (): Promise<void> => {
        if (done) return freed ?? Promise.resolve();
        done = true;
        return --holds > 0 ? Promise.resolve() : (freed ??= this.#release(uid));
      };
    };
    const release = holder();
    return { user, hold: holder, release };
  }

  async #take(uid: number): Promise<boolean> {
    const dir = path.join(LEASE_DIR, String(uid));
    for (let tries = 0; tries < 2; tries++) {
      try {
        await mkdir(dir, { mode: 0o700 });
        await writeFile(path.join(dir, 'pid'), String(process.pid));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = Number(await readFile(path.join(dir, 'pid'), 'utf8').catch(() => '0'));
      // No pid yet: another agent is between its mkdir and its write; the uid is its.
      if (owner <= 0 || pidAlive(owner)) return false;
      await rm(dir, { recursive: true, force: true });
    }
    return false;
  }

  async #free(uid: number): Promise<void> {
    await rm(path.join(LEASE_DIR, String(uid)), { recursive: true, force: true });
  }

  async #release(uid: number): Promise<void> {
    // Given time, not a number of rounds: a scan takes about a millisecond, and a process SIGKILLed on a
    // loaded box can take longer than 50 of them to be gone.
    const until = Date.now() + RELEASE_PATIENCE_MS;
    for (;;) {
      const left = await processesOf(uid);
      if (left.length === 0 || Date.now() > until) break;
      for (const pid of left) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const p of await entriesOwnedBy(uid, SHARED_TEMP)) await rm(p, { recursive: true, force: true }).catch(() => {});
    await this.#free(uid);
  }
}

/** The uid's passwd entry, made (trainyard-UID, a group of its own) when missing. */
async function ensureUser(uid: number): Promise<RunAsUser> {
  const name = `${PREFIX}${uid}`;
  for (let tries = 0; tries < 20; tries++) {
    const found = (await passwd()).find((u) => u.uid === uid);
    if (found) {
      if (found.name !== name) throw new RunUidError(`run uid ${uid} belongs to the user "${found.name}" now; it is not the agent's to use`);
      return { name, uid, gid: found.gid };
    }
    const r = await exec('/usr/sbin/useradd', ['--system', '--no-create-home', '--uid', String(uid), '--user-group',
      '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]);
    // 0: made; 9: the name was made meanwhile (another agent); 1 and 10: passwd or group file locked by
    // another useradd: tried again.
    if (r.code !== 0 && r.code !== 9 && r.code !== 1 && r.code !== 10) throw new RunUidError(`useradd ${name} failed: ${r.stderr.trim()}`);
    if (r.code === 1 || r.code === 10) await new Promise((res) => setTimeout(res, 50 + Math.random() * 100));
  }
  throw new RunUidError(`could not make the user ${name} (useradd kept finding /etc/passwd locked)`);
}
