// The attempt's cgroup (agent/cgroup.ts) with process supervision (agent/process.ts), on real processes:
// a process that left the process group (setsid, a double fork) dies when the leader exits, when the
// process is stopped, and the cgroup is gone afterwards. Skipped where no cgroup v2 can be managed.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroup2Mount, ownCgroupPath, prepareCgroupBase, RunCgroup, sweepLeftovers } from '../../agent/cgroup.js';
import { SupervisedProcess } from '../../agent/process.js';

const dir = () => mkdtempSync(path.join(os.tmpdir(), 'ty-cg-'));
/** Running (a zombie nobody reaped counts as gone). */
const alive = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForPid(file: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    try { const n = Number(readFileSync(file, 'utf8').trim()); if (n > 0) return n; } catch { /* not yet */ }
    await sleep(20);
  }
  throw new Error(`no pid in ${file}`);
}

/** A setsid'ed, double-forked sleeper whose pid lands in `pidFile`; its output goes nowhere, so no pipe holds the parent. */
const escaper = (pidFile: string) => `setsid sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $! > ${pidFile}' </dev/null >/dev/null 2>&1`;

t.test('the v2 mount and our own cgroup are read from /proc', async (t) => {
  t.equal(cgroup2Mount('cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n'), '/sys/fs/cgroup/unified', 'hybrid host');
  t.equal(cgroup2Mount('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n'), '/sys/fs/cgroup', 'pure v2 host');
  t.equal(cgroup2Mount('cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n'), null, 'v1 only');
  t.equal(ownCgroupPath('1:cpu:/x\n0::/system.slice/trainyard.service\n'), '/system.slice/trainyard.service');
  t.equal(ownCgroupPath('0::/../../outside\n'), '/', 'a path outside our namespace is not used');
});

t.test('with a cgroup, nothing a process started outlives it', async (t) => {
  const prepared = await prepareCgroupBase();
  if (prepared.base === null) { await t.skip(`no cgroup v2 to manage here: ${prepared.why}`); return; }
  const base = prepared.base;

  await t.test('the leader exits: the setsid double-forked sleeper dies too, and the cgroup is removed', async (t) => {
    const pidFile = path.join(dir(), 'pid');
    const cg = await RunCgroup.create(base, `unit-exit-${process.pid}`);
    const p = SupervisedProcess.spawn('bash', ['-c', `${escaper(pidFile)}; echo done`], {
      cwd: dir(), env: { PATH: process.env.PATH }, onStdout: () => {}, onStderr: () => {}, killGraceMs: 500, cgroup: cg,
    });
    const exit = await p.exited;
    t.same(exit, { code: 0, signal: null });
    const pid = await waitForPid(pidFile);
    t.notOk(alive(pid), 'the sleeper that left the process group is dead once `exited` resolves');
    t.same(await cg.pids(), [], 'the cgroup is empty');
    await cg.destroy();
    t.notOk(existsSync(cg.dir), 'and removed');
  });

  await t.test('a stop (kill, timeout) kills the escaped sleeper while the leader still runs', async (t) => {
    const pidFile = path.join(dir(), 'pid');
    const cg = await RunCgroup.create(base, `unit-stop-${process.pid}`);
    const p = SupervisedProcess.spawn('bash', ['-c', `${escaper(pidFile)}; echo started; sleep 300`], {
      cwd: dir(), env: { PATH: process.env.PATH }, onStdout: () => {}, onStderr: () => {}, killGraceMs: 300, cgroup: cg,
    });
    const pid = await waitForPid(pidFile);
    t.ok(alive(pid), 'the sleeper runs, outside the process group');
    t.ok((await cg.pids()).includes(pid), 'but inside the cgroup');
    p.stop();
    await p.exited;
    t.notOk(alive(pid), 'the sleeper died with the stop');
    await cg.destroy();
    t.notOk(existsSync(cg.dir));
  });

  await t.test('a stop is one SIGTERM to each process of the run, in the process group or out of it', async (t) => {
    // A second SIGTERM a few ms after the first runs a Python handler again inside itself: a checkpoint
    // being saved in the grace is started over, and a handler that exits on its first call only never
    // exits. Each process here counts the SIGTERMs it got, taking 300 ms over each (as a save would), and
    // writes its pid once its handler is in place.
    const d = dir();
    for (const name of ['leader', 'escaped']) {
      writeFileSync(path.join(d, `${name}.py`), `import signal, time, os, sys
n = 0
def on_term(*a):
    global n
    n += 1
    with open("${name}", "a") as f: f.write("TERM\\n")
    time.sleep(0.3)
    if n == 1: sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
with open("${name}.pid", "w") as f: f.write(str(os.getpid()))
while True: time.sleep(0.05)
`);
    }
    const cg = await RunCgroup.create(base, `unit-term-${process.pid}`);
    // The escaper leaves the process group (setsid) but stays in the cgroup.
    const p = SupervisedProcess.spawn('bash', ['-c', 'setsid python3 escaped.py </dev/null >/dev/null 2>&1 & exec python3 leader.py'], {
      cwd: d, env: { PATH: process.env.PATH }, onStdout: () => {}, onStderr: () => {}, killGraceMs: 5000, cgroup: cg,
    });
    for (const name of ['leader', 'escaped']) await waitForPid(path.join(d, `${name}.pid`));
    p.stop();
    await p.exited;
    t.equal(readFileSync(path.join(d, 'leader'), 'utf8'), 'TERM\n', 'the leader got one SIGTERM, not one from its group and one from its cgroup');
    t.equal(readFileSync(path.join(d, 'escaped'), 'utf8'), 'TERM\n', 'the process outside the group got one too (from the cgroup)');
    await cg.destroy();
  });

  await t.test('without a cgroup the same sleeper survives (what the cgroup is for)', async (t) => {
    const pidFile = path.join(dir(), 'pid');
    const p = SupervisedProcess.spawn('bash', ['-c', `${escaper(pidFile)}; echo done`], {
      cwd: dir(), env: { PATH: process.env.PATH }, onStdout: () => {}, onStderr: () => {}, killGraceMs: 300,
    });
    await p.exited;
    const pid = await waitForPid(pidFile);
    t.ok(alive(pid), 'a process-group kill does not reach a setsid process');
    process.kill(pid, 'SIGKILL');
  });

  await t.test('a dead agent\'s cgroups are swept at start, with what still runs in them; a live one\'s are not', async (t) => {
    const { spawnSync } = await import('node:child_process');
    const deadPid = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim();
    const pidFile = path.join(dir(), 'pid');
    const dead = await RunCgroup.create(base, `run_unit-a1-${deadPid}`);
    const wrapped = dead.wrap('bash', ['-c', escaper(pidFile)]);
    spawnSync(wrapped.command, wrapped.args, { stdio: 'ignore' });
    const pid = await waitForPid(pidFile);
    const live = await RunCgroup.create(base, `run_unit-a1-${process.ppid}`);
    t.ok(alive(pid), 'a process the dead agent\'s attempt left runs');
    const removed = await sweepLeftovers(base);
    t.ok(removed.includes(`run_unit-a1-${deadPid}`), 'its cgroup is swept');
    t.notOk(existsSync(dead.dir));
    t.notOk(alive(pid), 'and what ran in it is dead');
    t.ok(existsSync(live.dir), 'a live agent\'s cgroup stays');
    await live.destroy();
  });

  await t.test('a leftover cgroup (an agent that died mid-attempt) is emptied and made afresh', async (t) => {
    const pidFile = path.join(dir(), 'pid');
    const first = await RunCgroup.create(base, `unit-left-${process.pid}`);
    const wrapped = first.wrap('bash', ['-c', escaper(pidFile)]);
    const { spawnSync } = await import('node:child_process');
    spawnSync(wrapped.command, wrapped.args, { stdio: 'ignore' });
    const pid = await waitForPid(pidFile);
    t.ok(alive(pid));
    const again = await RunCgroup.create(base, `unit-left-${process.pid}`);
    t.notOk(alive(pid), 'what the old cgroup held was killed');
    t.same(await again.pids(), []);
    await again.destroy();
  });
});
