// The pool of run uids (agent/run-uids.ts), on this box's real /etc/passwd, /proc and lease folder (root
// only): two pools over one range (two agents) never hand out one uid twice; a uid some process still runs
// as is passed over; a build's hold keeps the uid past its attempt; giving a uid back kills what is left
// of it and removes its files from /tmp.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { entriesOwnedBy, processesOf, RunUidPool } from '../../agent/run-uids.js';

// A range of its own, so the e2e tests' agents (61000-61063) are not in the way.
const RANGE = '61200-61201';
const [FIRST, LAST] = [61200, 61201];

const alive = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};

/** A process running as `uid` (setpriv; detached: a session of its own), like one a run left behind. */
function asUid(uid: number, script: string): number {
  const child = spawn('/usr/bin/setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', '--', '/bin/sh', '-c', script],
    { stdio: 'ignore', detached: true });
  child.unref();
  return child.pid!;
}

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) { if (await ok()) return; await new Promise((r) => setTimeout(r, 25)); }
  throw new Error(`never: ${what}`);
}

t.test('two pools over one range, a busy uid, a hold, and what giving back does', async (t) => {
  if (process.getuid?.() !== 0) { await t.skip('needs root (useradd, the lease folder, setpriv)'); return; }
  const one = await RunUidPool.open(RANGE);
  const two = await RunUidPool.open(RANGE);
  const a = await one.lease();
  const b = await two.lease();
  t.not(a.user.uid, b.user.uid, 'two agents\' pools over one range lease different uids');
  t.same([a.user.uid, b.user.uid].sort(), [FIRST, LAST]);
  t.equal(a.user.name, `trainyard-${a.user.uid}`, 'with a passwd entry made for it');
  await t.rejects(one.lease(), /every run uid of 61200-61201 is in use/, 'a third lease: refused, saying so');

  // What a's run leaves: a process that left its session, and a file in /tmp.
  const tmpFile = path.join('/tmp', `ty-left-${a.user.uid}-${process.pid}`);
  const stray = asUid(a.user.uid, `touch ${tmpFile}; exec sleep 300`);
  await until('the stray process runs as the uid', async () => (await processesOf(a.user.uid)).length > 0 && existsSync(tmpFile));
  // A build the attempt started holds the uid too: the attempt's release does not free it.
  const unhold = a.hold();
  await a.release();
  t.ok(alive(stray), 'held by a build: nothing of the uid is killed yet');
  await t.rejects(two.lease(), /in use/, 'and the uid is not leased again');
  await unhold();
  t.notOk(alive(stray), 'given back: the process it left is killed');
  t.notOk(existsSync(tmpFile), 'and its file in /tmp removed');
  const again = await two.lease();
  t.equal(again.user.uid, a.user.uid, 'the uid can be leased again');
  await again.release();

  // A uid some process still runs as (not one this pool killed: one nobody gave back) is passed over.
  await b.release();
  const busy = asUid(FIRST, 'exec sleep 300');
  t.teardown(() => { try { process.kill(busy, 'SIGKILL'); } catch { /* gone */ } });
  await until('the busy process runs', async () => (await processesOf(FIRST)).length > 0);
  const c = await one.lease();
  t.equal(c.user.uid, LAST, 'a uid with a live process is not leased');
  t.ok(alive(busy), 'and that process is left alone');
  await c.release();
});

t.test('a zombie of the uid (exited, its parent never reaps it) is not a live process of it', async (t) => {
  if (process.getuid?.() !== 0) { await t.skip('needs root (setpriv)'); return; }
  // A root shell starts a child as the uid, which exits at once, then becomes `sleep`, which never waits:
  // the child stays a zombie of the uid for as long as the sleep lives.
  const parent = spawn('/bin/sh', ['-c', `/usr/bin/setpriv --reuid ${LAST} --regid ${LAST} --clear-groups -- /bin/true & exec sleep 300`], { stdio: 'ignore', detached: true });
  parent.unref();
  t.teardown(() => { try { process.kill(parent.pid!, 'SIGKILL'); } catch { /* gone */ } });
  const zombieOfUid = () => {
    for (const e of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
      try {
        const st = readFileSync(`/proc/${e}/status`, 'utf8');
        if (/^State:\s+Z/m.test(st) && new RegExp(`^Uid:\\s+${LAST}\\b`, 'm').test(st) && new RegExp(`^PPid:\\s+${parent.pid}$`, 'm').test(st)) return true;
      } catch { /* gone */ }
    }
    return false;
  };
  await until('the uid\'s child is a zombie of the root parent', () => zombieOfUid());
  t.same(await processesOf(LAST), [], 'a zombie is not counted: the uid can be leased');
  const pool = await RunUidPool.open(`${LAST}`);
  const lease = await pool.lease();
  t.equal(lease.user.uid, LAST, 'and is leased');
  await lease.release();
});

t.test("a uid's entries in the shared temp folders, among many others' (looked at a batch per turn)", { skip: process.getuid?.() !== 0 && 'needs root (chown)' }, async (t) => {
  const { mkdtempSync, writeFileSync, mkdirSync, chownSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const dirs = [mkdtempSync(path.join(os.tmpdir(), 'ty-owned-')), mkdtempSync(path.join(os.tmpdir(), 'ty-owned-'))];
  t.teardown(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
  const mine: string[] = [];
  // More entries than one turn looks at, the uid's spread among them, a folder of its own among them too.
  for (let i = 0; i < 300; i++) {
    const p = path.join(dirs[i % 2]!, `e${i}`);
    if (i % 97 === 5) { mkdirSync(p); chownSync(p, FIRST, FIRST); mine.push(p); continue; }
    writeFileSync(p, '');
    if (i % 41 === 3) { chownSync(p, FIRST, FIRST); mine.push(p); } else if (i % 7 === 0) chownSync(p, LAST, LAST);
  }
  t.same((await entriesOwnedBy(FIRST, [...dirs, '/nonexistent-ty'])).sort(), mine.sort(), "exactly the uid's entries, none of another uid's or root's");
  t.same(await entriesOwnedBy(FIRST + 5, dirs), [], 'none for a uid that owns nothing');
});
