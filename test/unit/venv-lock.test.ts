// The venv build lock (agent/venv-lock.ts), issue 20 #3: a stale lock is told by more than a pid. Before,
// a lock whose pid was alive again (reused after a reboot or a container restart: the agent as PID 1) or
// whose owner was 0 (a crash between making the folder and writing the pid) made Packaging wait for ever.
import t from 'tap';
import { mkdirSync, readFileSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { lockVenv, processStart } from '../../agent/venv-lock.js';
import { tempDir } from '../helpers/stack.js';
import { deadline } from '../../shared/deadline.js';

const never = new AbortController().signal;
const fast = { pollMs: 20, legacyGraceMs: 1000 };
/** Takes the lock within 5 s, or fails saying it waited (the old code waited for ever). */
const take = (dir: string) => lockVenv(dir, deadline(5000, never), () => {}, fast);

t.test('a lock held by a live owner is waited for; released, it is taken', async (t) => {
  const dir = path.join(tempDir('ty-lock-'), 'v.lock');
  const release = await take(dir);
  t.ok(JSON.parse(readFileSync(path.join(dir, 'owner'), 'utf8')).pid === process.pid, 'the owner is written with the lock');
  let waited = false;
  const second = lockVenv(dir, never, () => { waited = true; }, fast);
  await new Promise((r) => setTimeout(r, 200));
  t.ok(waited, 'a second taker waits');
  await release();
  await (await second)();
  t.notOk(existsSync(dir), 'released');
});

/**
 * Another taker on a thread of its own, renaming its lock folder onto `dir` as fast as it can (nothing but
 * the rename in the loop) until one rename goes through. Resolves with whether it did within `ms`.
 */
function racer(dir: string, ms: number, owner = '{"racer":true}'): { ready: Promise<void>; done: Promise<boolean> } {
  const w = new Worker(`
    const { mkdirSync, writeFileSync, renameSync } = require('node:fs');
    const { workerData: { dir, ms, owner }, parentPort } = require('node:worker_threads');
    const tmp = dir + '.racer';
    mkdirSync(tmp); writeFileSync(tmp + '/owner', owner);
    parentPort.postMessage('ready');
    const end = Date.now() + ms;
    let won = false;
    while (!won && Date.now() < end) { try { renameSync(tmp, dir); won = true; } catch {} }
    parentPort.postMessage(won);`, { eval: true, workerData: { dir, ms, owner } });
  let ready!: () => void;
  const readyP = new Promise<void>((r) => { ready = r; });
  const done = new Promise<boolean>((resolve, reject) => {
    w.on('message', (m) => { if (m === 'ready') ready(); else resolve(m as boolean); });
    w.on('error', reject);
  });
  return { ready: readyP, done };
}

t.test('a taker whose doneWhen comes true stops waiting, without the lock, and its release leaves the holder\'s', async (t) => {
  // A venv another agent made ready is used at once, not after that agent's bytecode compile (agent/venv.ts).
  const dir = path.join(tempDir('ty-lock-'), 'v.lock');
  const release = await take(dir);
  let ready = false;
  const second = lockVenv(dir, deadline(5000, never), () => {}, { ...fast, doneWhen: () => ready });
  await new Promise((r) => setTimeout(r, 100));
  ready = true;
  const none = await second;
  await none();
  t.ok(existsSync(dir), 'the holder still holds the lock');
  t.equal(JSON.parse(readFileSync(path.join(dir, 'owner'), 'utf8')).pid, process.pid);
  await release();
  t.notOk(existsSync(dir), 'and releases it');
});

t.test('a release raced by a taker on another thread: the release never fails and the taker\'s lock stays whole', async (t) => {
  // The release used to empty the folder, then rmdir it; a rename onto the emptied folder in between
  // succeeded (rename replaces an empty folder) and the rmdir failed ENOTEMPTY on the other taker's lock,
  // seen in the suite under load. A taker on its own thread hits that window nearly every time.
  for (let round = 0; round < 30; round++) {
    const dir = path.join(tempDir('ty-lock-'), 'v.lock');
    const release = await take(dir);
    const r = racer(dir, 5000);
    await r.ready;
    const released = await release().then(() => null, (err: Error) => err);
    if (released) { t.fail(`round ${round}: the release failed: ${released.message}`); return; }
    t.equal(await r.done, true, `round ${round}: the other taker got the lock once it was free`);
    if (readFileSync(path.join(dir, 'owner'), 'utf8') !== '{"racer":true}') { t.fail(`round ${round}: the taker's lock lost its owner`); return; }
  }
});

t.test('a stale lock taken over while another taker races for it: no error, and never two holders', async (t) => {
  // The takeover removed the stale folder with a recursive rm too: the racer's rename onto the emptied
  // folder made the takeover fail ENOTEMPTY. The racer's owner is this live process, so its lock holds.
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  // Marked, since this taker's owner is the same process: only the mark tells the two locks apart.
  const live = JSON.stringify({ pid: process.pid, boot, start: await processStart(process.pid), racer: true });
  for (let round = 0; round < 10; round++) {
    const dir = path.join(tempDir('ty-lock-'), 'v.lock');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'owner'), JSON.stringify({ pid: 1, boot: 'another-boot', start: '1' }));
    const r = racer(dir, 5000, live);
    await r.ready;
    const got = await lockVenv(dir, deadline(150), () => {}, fast).then((release) => release, (err: Error) => err);
    if (got instanceof Error && got.name !== 'TimeoutError' && got.name !== 'AbortError') { t.fail(`round ${round}: the takeover failed: ${got.message}`); return; }
    if (got instanceof Error) {
      // The racer won: its lock is whole, and this taker waited on it.
      t.equal(await r.done, true, `round ${round}: the racer holds it`);
      t.equal(readFileSync(path.join(dir, 'owner'), 'utf8'), live, `round ${round}: the racer's lock is whole`);
    } else {
      // This taker won: the racer cannot have, until the release (had the takeover removed a lock the
      // racer had won, both would hold it: the racer's done would be in already).
      t.not(readFileSync(path.join(dir, 'owner'), 'utf8'), live, `round ${round}: this taker's lock, not the racer's`);
      t.equal(await Promise.race([r.done, new Promise((res) => setTimeout(() => res('still racing'), 30))]), 'still racing', `round ${round}: the racer holds nothing`);
      await got();
      t.equal(await r.done, true, `round ${round}: the racer takes it after the release`);
    }
  }
});

t.test('a lock whose pid is alive but is another process (pid reuse) is taken over', async (t) => {
  const dir = path.join(tempDir('ty-lock-'), 'v.lock');
  mkdirSync(dir);
  // This very process, but "started" at another moment: what a reused pid looks like.
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  writeFileSync(path.join(dir, 'owner'), JSON.stringify({ pid: process.pid, boot, start: '1' }));
  await (await take(dir))();
  t.pass('taken over');
});

t.test('a lock from another boot is taken over, even if its pid runs now', async (t) => {
  const dir = path.join(tempDir('ty-lock-'), 'v.lock');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'owner'), JSON.stringify({ pid: 1, boot: 'another-boot', start: await processStart(1) }));
  await (await take(dir))();
  t.pass('taken over');
});

t.test('an older agent\'s lock: a live pid holds it, a reused pid 1 from a crash does not matter, no pid ages out', async (t) => {
  const child = spawn('sleep', ['30']);
  t.teardown(() => child.kill());
  const held = path.join(tempDir('ty-lock-'), 'v.lock');
  mkdirSync(held);
  writeFileSync(path.join(held, 'pid'), String(child.pid));
  await t.rejects(take(held), /timeout|aborted/i, 'a live owner\'s old-style lock is waited on');
  child.kill();
  await new Promise((r) => child.once('exit', r));
  await (await take(held))();
  t.pass('its owner dead, it is taken');
  // Made, and the agent crashed before it wrote the pid: owner 0.
  const empty = path.join(tempDir('ty-lock-'), 'v.lock');
  mkdirSync(empty);
  const old = new Date(Date.now() - 60_000);
  utimesSync(empty, old, old);
  await (await take(empty))();
  t.pass('an ownerless lock older than the grace is taken');
});
