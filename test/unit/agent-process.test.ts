// Process supervision (agent/process.ts) on real processes: a stop reaches the whole process group
// (SIGTERM, then SIGKILL after the grace for what ignores it), an already fired signal stops the process
// at once, a timeout is reported to the owner, and nothing of the group outlives its leader.
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SupervisedProcess } from '../../agent/process.js';

const dir = () => mkdtempSync(path.join(os.tmpdir(), 'ty-proc-'));
/** Running (a zombie nobody reaped, as in a container whose init does not reap, counts as gone). */
const alive = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sh(script: string, o: { signal?: AbortSignal; killGraceMs?: number; timeoutMs?: number; onTimeout?: () => void } = {}) {
  const out: string[] = [];
  const p = SupervisedProcess.spawn('bash', ['-c', script], {
    cwd: dir(), env: { PATH: process.env.PATH }, onStdout: (l) => out.push(l), onStderr: (l) => out.push(`err: ${l}`),
    killGraceMs: o.killGraceMs ?? 500, ...o,
  });
  return { p, out };
}

t.test('output arrives line by line and the exit is reported', async (t) => {
  const { p, out } = sh('echo one; echo two >&2; exit 3');
  t.same(await p.exited, { code: 3, signal: null });
  t.same(out.sort(), ['err: two', 'one']);
});

t.test('a stop reaches a child that ignores SIGTERM: SIGKILL after the grace, and the group is gone', async (t) => {
  const pidFile = path.join(dir(), 'grandchild');
  const { p } = sh(`trap '' TERM; (trap '' TERM; sleep 60) & echo $! > ${pidFile}; echo started; wait`, { killGraceMs: 300 });
  while (true) { try { if (readFileSync(pidFile, 'utf8').trim()) break; } catch { /* not yet */ } await sleep(20); }
  const grandchild = Number(readFileSync(pidFile, 'utf8'));
  const started = Date.now();
  p.stop();
  const exit = await p.exited;
  t.equal(exit.signal, 'SIGKILL', 'SIGTERM was ignored, SIGKILL ended it');
  t.ok(Date.now() - started >= 250, 'after the grace');
  await sleep(100);
  t.notOk(alive(grandchild), 'the grandchild in the group is gone too');
});

t.test('an aborted signal stops it (SIGTERM first)', async (t) => {
  const ac = new AbortController();
  const { p } = sh('sleep 60');
  setTimeout(() => ac.abort(), 100);
  ac.signal.addEventListener('abort', () => p.stop());
  t.equal((await p.exited).signal, 'SIGTERM');
  const { p: p2 } = sh('sleep 60', { signal: AbortSignal.abort() });
  t.equal((await p2.exited).signal, 'SIGTERM', 'already aborted: stopped at once');
});

t.test('a timeout is handed to the owner, who decides to stop', async (t) => {
  let timedOut = false;
  const { p } = sh('sleep 60', { timeoutMs: 200, onTimeout: () => { timedOut = true; p.stop(); } });
  t.equal((await p.exited).signal, 'SIGTERM');
  t.ok(timedOut);
});

t.test('a timeout longer than setTimeout can hold (30 days, the CLI\'s maximum) does not fire at once', async (t) => {
  // setTimeout sets a delay past 2^31 - 1 ms to 1 ms: a run submitted with --timeout 2592000 was "timed out"
  // as it started.
  let timedOut = false;
  const { p } = sh('sleep 0.3; exit 0', { timeoutMs: 30 * 86400 * 1000, onTimeout: () => { timedOut = true; p.stop(); } });
  t.same(await p.exited, { code: 0, signal: null }, 'it ran to its end');
  t.notOk(timedOut, 'and was not timed out');
});

t.test('what the leader leaves behind in its group is killed when it exits', async (t) => {
  const pidFile = path.join(dir(), 'orphan');
  const { p } = sh(`sleep 60 & echo $! > ${pidFile}; exit 0`);
  const started = Date.now();
  t.equal((await p.exited).code, 0);
  t.ok(Date.now() - started < 5000, 'the leader\'s exit ends it, though the orphan holds its stdout');
  const orphan = Number(readFileSync(pidFile, 'utf8'));
  await sleep(100);
  t.notOk(alive(orphan), 'no stray process outlives its attempt');
});
