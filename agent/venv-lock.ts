// The lock on a venv being built, shared by the agents that share a venv cache: a folder made atomically
// with its owner already inside it. A pid alone did not tell a dead owner (issue 20 #3): after a reboot or a
// restart in a container (the agent as PID 1 again) the pid was alive — someone else's, or the new agent's
// own — and the build waited for ever; a crash between making the folder and writing the pid left an
// owner of 0, never taken over. The owner is now the pid, the kernel's boot id and the process's start
// time (its 22nd /proc stat field), and the folder appears only with that file in it (made under another
// name, then renamed), so a lock is stale exactly when its process is not the one running now.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';

interface Owner { pid: number; boot: string; start: string }

/** This boot's id: a pid from another boot is no process of this one. */
async function bootId(): Promise<string> {
  return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
}

/** When `pid` started, in clock ticks since boot ('' when there is no such process). */
export async function processStart(pid: number): Promise<string> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? '';
}

async function me(): Promise<Owner> {
  return { pid: process.pid, boot: await bootId(), start: await processStart(process.pid) };
}

/** A lock is held while its owner runs: same boot, and that pid started when the owner did. */
async function stale(lockDir: string, legacyGraceMs: number): Promise<boolean> {
  const text = await readFile(path.join(lockDir, 'owner'), 'utf8').catch(() => null);
  if (text !== null) {
    let o: Partial<Owner>;
    try { o = JSON.parse(text) as Partial<Owner>; } catch { return true; }
    if (typeof o.pid !== 'number' || o.boot !== (await bootId())) return true;
    return (await processStart(o.pid)) !== o.start;
  }
  // A lock made by an older agent (a `pid` file written after the folder was made): its owner is dead if
  // its pid is; one with no pid yet is stale once it is older than a crash between the two steps could be.
  const pid = Number(await readFile(path.join(lockDir, 'pid'), 'utf8').catch(() => '0'));
  if (pid > 0) return (await processStart(pid)) === '';
  const made = await stat(lockDir).catch(() => null);
  return made === null || Date.now() - made.mtimeMs > legacyGraceMs;
}

/** What lockVenv returns when its `doneWhen` ended the wait: a release that does nothing (no lock is held). */
export const lockNotTaken = async (): Promise<void> => {};

/**
 * Takes the lock folder `lockDir`, waiting while a live owner holds it and taking over a stale one. Returns
 * the release. `onWait` is called once, when it first has to wait. `doneWhen`: checked while waiting; once
 * it holds, the wait ends without the lock (lockNotTaken is returned): a venv another agent built is ready
 * while that agent, still holding the lock, compiles its bytecode (agent/venv.ts).
 */
export async function lockVenv(lockDir: string, signal: AbortSignal, onWait: () => void, o: { pollMs?: number; legacyGraceMs?: number; doneWhen?: () => boolean } = {}): Promise<() => Promise<void>> {
  const owner = JSON.stringify(await me());
  let told = false;
  for (;;) {
    signal.throwIfAborted();
    const tmp = `${lockDir}.${randomBytes(6).toString('hex')}.new`;
    await mkdir(tmp);
    await writeFile(path.join(tmp, 'owner'), owner);
    try {
      await rename(tmp, lockDir); // fails while lockDir exists (a folder with a file in it)
      return () => removeAside(lockDir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw err;
    }
    const judged = await fingerprint(lockDir);
    if (judged === null) continue; // released meanwhile
    if (await stale(lockDir, o.legacyGraceMs ?? 30_000)) {
      await removeAside(lockDir, judged);
      continue;
    }
    if (o.doneWhen?.()) return lockNotTaken;
    if (!told) { onWait(); told = true; }
    await sleep(o.pollMs ?? 500, undefined, { signal });
  }
}

/**
 * What tells one lock folder from another: its inode and what it holds. The inode alone does not: one
 * freed by a removal is handed to the next folder made (ext4), so a live lock can have the stale one's.
 */
async function fingerprint(dir: string): Promise<string | null> {
  const s = await stat(dir).catch(() => null);
  if (!s) return null;
  const read = (name: string) => readFile(path.join(dir, name), 'utf8').catch(() => '');
  return JSON.stringify([s.ino, await read('owner'), await read('pid')]);
}

/**
 * Removes a lock folder in one step: renamed aside, then removed. A recursive rm empties the folder before
 * its rmdir, and another taker's rename onto the emptied folder in between succeeds (a rename replaces an
 * empty folder): the rmdir then failed ENOTEMPTY on that taker's lock, or a stale takeover removed a live
 * lock. With `judged` (a stale takeover), the folder moved aside must be the one judged stale; another taker
 * may have taken it over and put its live lock there since, and that one goes back. Gone already: done.
 */
async function removeAside(lockDir: string, judged?: string): Promise<void> {
  const old = `${lockDir}.${randomBytes(6).toString('hex')}.old`;
  try {
    await rename(lockDir, old);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (judged !== undefined && (await fingerprint(old)) !== judged) {
    // Back where it was. Should a third taker have got in within these microseconds (only after a crashed
    // owner's lock, with three takers at once), two builds overlap: rare enough to take over a lock server.
    await rename(old, lockDir).catch(() => {});
    return;
  }
  await rm(old, { recursive: true, force: true });
}
