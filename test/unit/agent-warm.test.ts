// Warm interpreters (agent/warm-interpreter.ts, agent/harness/trainyard_warm.py) on real processes and a
// real venv: a forked child is what a spawned harness would be (its environment exactly, its own process
// group, its cgroup, its exit status, its output on its own streams), the parent never holds a run's
// environment, and when the parent dies the next run gets a new one.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { needsFreshInterpreter, WarmInterpreter, WarmInterpreters, type ForkedRun } from '../../agent/warm-interpreter.js';
import { SupervisedProcess, type SuperviseOptions } from '../../agent/process.js';
import { prepareCgroupBase } from '../../agent/cgroup.js';

/** The interpreter the venvs here are made from: warm interpreters start as it, never as a venv's python. */
const basePython = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();

const tmp = (p: string) => mkdtempSync(path.join(os.tmpdir(), p));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};

const venv = path.join(tmp('ty-warm-venv-'), 'v');
const made = spawnSync(process.env.TRAINYARD_PYTHON ?? 'python3', ['-m', 'venv', '--without-pip', venv]);
if (made.status !== 0) throw new Error(`cannot make a venv: ${made.stderr}`);

/** A package whose train() writes what its process looks like to out.json (and prints a line on each stream). */
function pkg(trainBody: string): { dir: string; data: string; result: string } {
  const root = tmp('ty-warm-');
  const dir = path.join(root, 'package');
  const data = path.join(root, 'data');
  mkdirSync(dir);
  mkdirSync(data);
  writeFileSync(path.join(dir, 'train.py'), `import json, os, sys, time
class Main:
    def train(self, d):
${trainBody.split('\n').map((l) => `        ${l}`).join('\n')}
    def save(self):
        pass
`);
  return { dir, data, result: path.join(root, 'result.json') };
}

const describe = `print("out line", flush=True)
print("err line", file=sys.stderr, flush=True)
json.dump({"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "env": dict(os.environ), "cwd": os.getcwd(),
           "prefix": sys.prefix, "argv": sys.argv, "ppid": os.getppid()}, open("out.json", "w"))`;

/** A forked run's process, started (sent its environment), as the attempt does once its data is local. */
const started = (f: ForkedRun | null) => { f?.start(); return f?.child; };

function supervise(o: Partial<SuperviseOptions> & { out?: string[]; err?: string[] } = {}): SuperviseOptions {
  return {
    cwd: '/', env: {}, killGraceMs: 2000,
    onStdout: (l) => o.out?.push(l), onStderr: (l) => o.err?.push(l), ...o,
  };
}

const args = (p: { dir: string; data: string; result: string }) => ['--package-dir', p.dir, '--data-dir', p.data, '--result-file', p.result];

t.test('a forked child is the run\'s own process: its environment exactly, its group and session, its streams, its exit', async (t) => {
  const warm = new WarmInterpreters({ max: 2, log: pino({ level: 'silent' }), python: basePython });
  t.teardown(() => warm.close());
  const seen: Record<string, any>[] = [];
  const secrets = [`first-${randomBytes(8).toString('hex')}`, `second-${randomBytes(8).toString('hex')}`];
  for (const secret of secrets) {
    const p = pkg(describe);
    const env = { PATH: `${venv}/bin:/usr/bin:/bin`, HOME: p.dir, API_KEY: secret, PYTHONUNBUFFERED: '1' };
    const child = started(await warm.fork(venv, { argv: args(p), env, cwd: p.dir, cgroupBase: null, cgroupName: 'x', user: null }));
    t.ok(child, 'forked');
    const out: string[] = [];
    const err: string[] = [];
    const exit = await new SupervisedProcess(child!, supervise({ out, err })).exited;
    t.same(exit, { code: 0, signal: null }, 'exit status from the warm interpreter');
    t.same(out, ['out line'], 'stdout on its own stream');
    t.same(err, ['err line'], 'stderr on its own stream');
    const d = JSON.parse(readFileSync(path.join(p.dir, 'out.json'), 'utf8'));
    t.same(d.env, env, 'the environment is exactly the run\'s (nothing of the agent\'s, nothing of an earlier run\'s)');
    t.equal(d.pid, child!.pid, 'the pid the agent supervises is train.py\'s process');
    t.equal(d.pgid, d.pid, 'it leads its own process group');
    t.equal(d.sid, d.pid, 'and its own session');
    t.equal(d.cwd, p.dir, 'in the package folder');
    t.equal(d.prefix, venv, 'site.main() ran in the child: the venv is its prefix');
    seen.push(d);
  }
  t.equal(seen[0]!.ppid, seen[1]!.ppid, 'both came from the same warm interpreter');
  const parentCmd = readFileSync(`/proc/${seen[0]!.ppid}/cmdline`, 'utf8').split('\0');
  t.ok(parentCmd.includes('-S'), 'the parent was started without site (no .pth file of the venv ran in it)');
  const parentEnviron = readFileSync(`/proc/${seen[0]!.ppid}/environ`, 'utf8');
  for (const secret of secrets) t.notMatch(parentEnviron, secret, 'the parent\'s environment holds no run\'s variables');
});

t.test('user code errors, kills and timeouts end a forked child as they end a spawned one', async (t) => {
  const warm = new WarmInterpreters({ max: 2, log: pino({ level: 'silent' }), python: basePython });
  t.teardown(() => warm.close());
  const env = { PATH: '/usr/bin:/bin' };
  const bad = pkg('raise ValueError("bad data")');
  const e1 = await new SupervisedProcess(started(await warm.fork(venv, { argv: args(bad), env, cwd: bad.dir, cgroupBase: null, cgroupName: 'x', user: null }))!, supervise()).exited;
  t.same(e1, { code: 1, signal: null }, 'an exception in train() exits 1');
  t.match(JSON.parse(readFileSync(bad.result, 'utf8')).error.summary, 'ValueError: bad data', 'and the verdict says why');

  const slow = pkg('time.sleep(300)');
  const child = started(await warm.fork(venv, { argv: args(slow), env, cwd: slow.dir, cgroupBase: null, cgroupName: 'x', user: null }))!;
  const proc = new SupervisedProcess(child, supervise());
  await sleep(300);
  proc.stop();
  t.same(await proc.exited, { code: null, signal: 'SIGTERM' }, 'a stop is a SIGTERM to its group');
  t.notOk(alive(child.pid!), 'it is gone');
});

t.test('with a cgroup, the child is in it before its code runs, and what it leaves behind dies with it', async (t) => {
  const prepared = await prepareCgroupBase();
  if (prepared.base === null) { await t.skip(`no cgroup v2 to manage here: ${prepared.why}`); return; }
  const warm = new WarmInterpreters({ max: 2, log: pino({ level: 'silent' }), python: basePython });
  t.teardown(() => warm.close());
  const body = `import subprocess
open("cgroup.txt", "w").write(open("/proc/self/cgroup").read())
subprocess.Popen(["setsid", "sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo $! > sleeper.pid"]).wait()`;
  const names: string[] = [];
  for (const round of [1, 2, 3]) {
    const p = pkg(body);
    if (round > 1) await sleep(200); // the spare for the next run is made while this one runs
    const forked = (await warm.fork(venv, { argv: args(p), env: { PATH: '/usr/bin:/bin' }, cwd: p.dir, cgroupBase: prepared.base, cgroupName: `warm-test-${round}-${process.pid}`, user: null }))!;
    const cg = forked.cgroup!;
    t.ok(cg, 'the run has a cgroup');
    names.push(path.basename(cg.dir));
    const supervised = new SupervisedProcess(forked.child, supervise({ cgroup: cg }));
    forked.start();
    const exit = await supervised.exited;
    t.same(exit, { code: 0, signal: null });
    t.match(readFileSync(path.join(p.dir, 'cgroup.txt'), 'utf8'), `/${path.basename(cg.dir)}\n`, `round ${round}: train.py ran inside the attempt's cgroup`);
    const sleeper = Number(readFileSync(path.join(p.dir, 'sleeper.pid'), 'utf8'));
    t.ok(sleeper > 0);
    t.notOk(alive(sleeper), 'the setsid\'d sleeper it left died with the run');
    await cg.destroy();
    t.notOk(existsSync(cg.dir), 'the cgroup is removed with the attempt');
  }
  t.equal(names[0], `warm-test-1-${process.pid}`, 'the first run had no spare: a cgroup made for it');
  t.match(names[1], /^warm-\d+-\d+$/, 'later runs start in a spare child, already inside a cgroup of its own');
  t.not(names[1], names[2], 'one spare per run');
  await warm.close();
  const left = readdirSync(prepared.base).filter((n) => n.startsWith('warm-') && n.endsWith(`-${process.pid}`));
  t.same(left, [], 'closing removes the spare and its cgroup');
});

t.test('a run\'s process is set up ahead and runs nothing until started; called off, it ends unrun', async (t) => {
  const warm = new WarmInterpreters({ max: 2, log: pino({ level: 'silent' }), python: basePython });
  t.teardown(() => warm.close());
  const marker = `import json, os
open("imported.txt", "w").write(json.dumps(dict(os.environ)))
`;
  const go = pkg(describe);
  writeFileSync(path.join(go.dir, 'train.py'), marker + readFileSync(path.join(go.dir, 'train.py'), 'utf8'));
  const env = { PATH: '/usr/bin:/bin', TOKEN: `t-${randomBytes(6).toString('hex')}` };
  const forked = (await warm.fork(venv, { argv: args(go), env, cwd: go.dir, cgroupBase: null, cgroupName: 'x', user: null }))!;
  t.ok(alive(forked.child.pid!), 'set up: the process exists');
  forked.prime();
  await sleep(300);
  t.notOk(existsSync(path.join(go.dir, 'imported.txt')), 'primed (its environment sent, its interpreter start done), train.py is still not imported before start()');
  const proc = new SupervisedProcess(forked.child, supervise());
  forked.start();
  t.same(await proc.exited, { code: 0, signal: null });
  t.equal(JSON.parse(readFileSync(path.join(go.dir, 'imported.txt'), 'utf8')).TOKEN, env.TOKEN, 'started: it ran with the environment start() sent');

  const off = pkg(describe);
  writeFileSync(path.join(off.dir, 'train.py'), marker + readFileSync(path.join(off.dir, 'train.py'), 'utf8'));
  const unstarted = (await warm.fork(venv, { argv: args(off), env, cwd: off.dir, cgroupBase: null, cgroupName: 'x', user: null }))!;
  unstarted.cancel();
  t.same(await unstarted.child.exit, { code: 0, signal: null }, 'called off: it ends by itself');
  t.notOk(existsSync(path.join(off.dir, 'imported.txt')), 'having run nothing of the package');

  // Called off after it was primed: the same.
  const late = pkg(describe);
  writeFileSync(path.join(late.dir, 'train.py'), marker + readFileSync(path.join(late.dir, 'train.py'), 'utf8'));
  const primed = (await warm.fork(venv, { argv: args(late), env, cwd: late.dir, cgroupBase: null, cgroupName: 'x', user: null }))!;
  primed.prime();
  await sleep(200);
  primed.cancel();
  t.same(await primed.child.exit, { code: 0, signal: null }, 'primed, then called off: it ends by itself');
  t.notOk(existsSync(path.join(late.dir, 'imported.txt')), 'having run nothing of the package');
});

t.test('with a spool file the supervisor is forked before the go: the run waits below it, and called off both end unrun', async (t) => {
  const warm = new WarmInterpreters({ max: 2, log: pino({ level: 'silent' }), python: basePython });
  t.teardown(() => warm.close());
  const marker = `import json, os
open("imported.txt", "w").write(json.dumps(dict(os.environ)))
`;
  const env = { PATH: '/usr/bin:/bin', TOKEN: `t-${randomBytes(6).toString('hex')}` };
  const children = (pid: number) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const withSpool = () => {
    const p = pkg(describe);
    writeFileSync(path.join(p.dir, 'train.py'), marker + readFileSync(path.join(p.dir, 'train.py'), 'utf8'));
    const spool = path.join(path.dirname(p.dir), 'attempt.spool');
    writeFileSync(spool, '');
    return { ...p, spool };
  };

  const go = withSpool();
  const forked = (await warm.fork(venv, { argv: args(go), env, cwd: go.dir, cgroupBase: null, cgroupName: 'x', user: null, spool: go.spool }))!;
  forked.prime();
  let below: number[] = [];
  for (let i = 0; i < 100 && below.length === 0; i++) { await sleep(20); below = children(forked.child.pid!); }
  t.equal(below.length, 1, 'primed: the child is the run\'s supervisor already, with the run forked below it');
  t.notOk(existsSync(path.join(go.dir, 'imported.txt')), 'the run below it imports nothing before start()');
  const proc = new SupervisedProcess(forked.child, supervise());
  forked.start();
  t.same(await proc.exited, { code: 0, signal: null }, 'started: it runs, and the supervisor exits as the run did');
  t.equal(JSON.parse(readFileSync(path.join(go.dir, 'imported.txt'), 'utf8')).TOKEN, env.TOKEN, 'with the environment start() sent');
  const out = JSON.parse(readFileSync(path.join(go.dir, 'out.json'), 'utf8')) as { ppid: number };
  t.equal(out.ppid, forked.child.pid, 'the run is the supervisor\'s child');
  const records = readFileSync(go.spool, 'utf8').split('\n').filter(Boolean);
  t.ok(records.includes('o out line') && records.includes('e err line'), 'its output went to the spool');
  t.same(JSON.parse(records.at(-1)!.slice(2)), { code: 0, signal: null }, 'and its exit, last');

  const off = withSpool();
  const unstarted = (await warm.fork(venv, { argv: args(off), env, cwd: off.dir, cgroupBase: null, cgroupName: 'x', user: null, spool: off.spool }))!;
  unstarted.prime();
  await sleep(200);
  unstarted.cancel();
  t.same(await unstarted.child.exit, { code: 0, signal: null }, 'primed with its supervisor, then called off: it ends by itself');
  t.notOk(existsSync(path.join(off.dir, 'imported.txt')), 'having run nothing of the package');
  t.notOk(readFileSync(off.spool, 'utf8').split('\n').some((l) => l.startsWith('o ') || l.startsWith('e ')), 'and written no output');
});

t.test('a warm interpreter that dies: its running child ends as lost, and the next run gets a new one', async (t) => {
  const warm = new WarmInterpreters({ max: 2, log: pino({ level: 'silent' }), python: basePython });
  t.teardown(() => warm.close());
  const env = { PATH: '/usr/bin:/bin' };
  const slow = pkg('time.sleep(300)');
  const child = started(await warm.fork(venv, { argv: args(slow), env, cwd: slow.dir, cgroupBase: null, cgroupName: 'x', user: null }))!;
  const proc = new SupervisedProcess(child, supervise());
  const parent = Number(readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
  process.kill(parent, 'SIGKILL');
  const exit = await proc.exited;
  t.equal(exit.signal, 'SIGKILL', 'the child\'s end is reported (its exit status was lost with its parent)');
  t.notOk(alive(child.pid!), 'and the child was killed, not left running unsupervised');
  const again = pkg(describe);
  const next = await warm.fork(venv, { argv: args(again), env, cwd: again.dir, cgroupBase: null, cgroupName: 'x', user: null });
  t.ok(next, 'the next run forks from a new warm interpreter');
  t.same(await new SupervisedProcess(started(next)!, supervise()).exited, { code: 0, signal: null });
  t.not(JSON.parse(readFileSync(path.join(again.dir, 'out.json'), 'utf8')).ppid, parent, 'a new parent');
});

t.test('a run that sets what an interpreter reads only at its start gets a fresh interpreter', async (t) => {
  t.ok(needsFreshInterpreter({ PYTHONHASHSEED: '0' }));
  t.ok(needsFreshInterpreter({ PYTHONIOENCODING: 'latin-1' }));
  t.ok(needsFreshInterpreter({ LANG: 'de_DE.UTF-8' }));
  t.ok(needsFreshInterpreter({ LC_ALL: 'C' }));
  t.notOk(needsFreshInterpreter({ PYTHONUNBUFFERED: '1', EPOCHS: '3', artifacts_directory: 'out' }));
  const off = new WarmInterpreters({ max: 0, log: pino({ level: 'silent' }), python: basePython });
  t.equal(await off.fork(venv, { argv: [], env: {}, cwd: '/', cgroupBase: null, cgroupName: 'x', user: null }), null, '--warm-interpreters 0: every run spawns');
});

// Issue 20 (suspected, confirmed): an exit nobody waited for (a spare that died unused) was kept by pid for
// ever; a later child given the same pid was then ended at once with the dead one's status. The kernel is
// made to hand out that pid again (ns_last_pid, as CRIU does), so the reuse is exact, not hoped for.
t.test('an exit kept for a dead child is not taken for a later child with the same pid', async (t) => {
  const w = new WarmInterpreter(venv, basePython, pino({ level: 'silent' }));
  t.teardown(() => w.close());
  await w.ready;
  const gone = (pid: number) => !existsSync(`/proc/${pid}`);
  for (let tries = 1; ; tries++) {
    const dead = await w.spare(null);
    process.kill(dead, 'SIGKILL');
    while (!gone(dead)) await sleep(10); // reaped by the warm interpreter, which reports its exit to nobody
    writeFileSync('/proc/sys/kernel/ns_last_pid', String(dead - 1));
    const next = await w.spare(null);
    if (next !== dead) {
      // Another process on the machine took the pid first: try again.
      process.kill(next, 'SIGKILL');
      if (tries < 50) continue;
      t.fail(`the kernel never gave the pid ${dead} out again in ${tries} tries`);
      return;
    }
    t.ok(alive(next), `a new child has the dead one's pid ${dead} (try ${tries})`);
    const exit = w.exitOf(next);
    process.kill(next, 'SIGTERM');
    t.same(await exit, { code: null, signal: 'SIGTERM' }, 'its exit is its own, not the dead child\'s SIGKILL');
    return;
  }
});
