// The venv build lock (agent/venv-lock.ts), issue 20 #3: a stale lock is told by more than a pid. Before,
// a lock whose pid was alive again (reused after a reboot or a container restart: the agent as PID 1) or
// whose owner was 0 (a crash between making the folder and writing the pid) made Packaging wait for ever.
import t from 'tap';
import { mkdirSync, readFileSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { lockVenv, processStart } from '../../agent/venv-lock.js';
import { tempDir } from '../helpers/stack.js';

const never = new AbortController().signal;
const fast = { pollMs: 20, legacyGraceMs: 1000 };
/** Takes the lock within 5 s, or fails saying it waited (the old code waited for ever). */
const take = (dir: string) => lockVenv(dir, AbortSignal.any([never, AbortSignal.timeout(5000)]), () => {}, fast);

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
