// Issue 19, a run is a tenant of its own (agent side), through the real scheduler, agent and CLI, with the
// agent as root and a pool of run uids: nothing a build or a run wrote ever runs as root (a wheel's .pth
// and scripts named setpriv, sh and python in the venv's bin/, on the warm and the fresh path); two
// packages whose requirements.txt say the same but name other local wheels get venvs of their own; two
// co-located runs of different projects cannot read each other's environ, memory, data or package, nor
// change each other's train.py; and an agent whose runs would share its uid refuses more than one slot.
import t, { type Test } from 'tap';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { projectRoot } from '../../shared/proto.js';
import { wheel } from '../helpers/wheel.js';

const RANGE = '61000-61063';

/**
 * Folders run uids can reach (mkdtemp's are 0700): the agent's work dir and venv cache, and a sticky
 * drop folder every uid may write, where the tests' probes leave marker files.
 */
function openFolders(): { work: string; venvs: string; drop: string } {
  const open = tempDir('ty-tenants-');
  chmodSync(open, 0o755);
  const drop = path.join(open, 'drop');
  mkdirSync(drop);
  chmodSync(drop, 0o1777);
  return { work: path.join(open, 'work'), venvs: path.join(open, 'venvs'), drop };
}

/** Submits a run (as the admin) and waits for its end; the run's record (failure_reason says why it failed). */
async function runToEnd(s: Stack, args: string[]): Promise<Record<string, any>> {
  const id = String((await s.cliJson(['run', 'train', ...args])).id);
  return s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 300_000);
}

async function poolStack(t: Test, f: { work: string; venvs: string }, maxRuns = 1): Promise<Stack | null> {
  if (process.getuid?.() !== 0) { await t.skip('the agent must be root to run as other uids'); return null; }
  if (spawnSync('/usr/sbin/useradd', ['--help']).error) { await t.skip('useradd is not installed'); return null; }
  return Stack.create(t, { agents: [{ name: 'a1', cpus: 2, env: {
    TRAINYARD_RUN_UIDS: RANGE, TRAINYARD_SHARED_UID: '0', TRAINYARD_MAX_RUNS: String(maxRuns),
    TRAINYARD_WORK_DIR: f.work, TRAINYARD_VENV_DIR: f.venvs,
  } }] });
}

/** Marker files `KIND-UID-PID` in the drop folder: who ran each probe. */
const markers = (drop: string) => readdirSync(drop).map((n) => /^(pth|setpriv|sh|python)-(\d+)-\d+$/.exec(n)).filter((m) => m !== null)
  .map((m) => ({ kind: m[1]!, uid: Number(m[2]) }));

t.test('nothing a build or a run wrote runs as root: a .pth, setpriv, sh and python in the venv, warm and fresh', async (t) => {
  const f = openFolders();
  const s = await poolStack(t, f);
  if (!s) return;
  const touch = (kind: string, then: string) => `#!/bin/sh\ntouch "${f.drop}/${kind}-$(id -u)-$$"\n${then}\n`;
  const pkg = tempDir();
  wheel(path.join(pkg, 'wheels'), 'evil', '0.1', {
    'evil.py': '',
    // Runs whenever an interpreter starts with the venv's site-packages: the lineage's `pip freeze` did, as root.
    'evil.pth': `import os; open(os.path.join(${JSON.stringify(f.drop)}, "pth-%d-%d" % (os.getuid(), os.getpid())), "w").close()\n`,
    // Found first in PATH by anything that runs these by name with the run's PATH (the venv's bin/ first).
    'evil-0.1.data/scripts/setpriv': touch('setpriv', 'exec /usr/bin/setpriv "$@"'),
    'evil-0.1.data/scripts/sh': touch('sh', 'exec /bin/sh "$@"'),
    // Replaces the venv's own bin/python (pip unlinks it first): what ran it as root ran this.
    'evil-0.1.data/scripts/python': touch('python', 'exec "$(dirname "$0")/python3" "$@"'),
  });
  writeTree(pkg, {
    'requirements.txt': '--no-index\n--find-links wheels\nevil\n',
    'train.py': `
import subprocess
class Main:
    def train(self, d):
        # The run itself uses the planted helpers (as its own uid): proof that they work and are found.
        subprocess.run(["sh", "-c", "true"], check=True)
        subprocess.run(["setpriv", "--version"], check=True, stdout=subprocess.DEVNULL)
    def save(self):
        open("model.txt", "w").write("ok")
`,
  });
  await s.cliJson(['package', 'push', pkg, '--name', 'evil']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const warm = await runToEnd(s, ['--package', 'evil', '--version', '1.0', '--dataset', 'd']);
  t.equal(warm.status, 'Successful', `the first run (it builds the venv) succeeds (${String(warm.failure_reason ?? '')})`);
  t.match(s.logOf('a1'), new RegExp(`"run":"${String(warm.id)}"[^\\n]*"warm":true[^\\n]*"msg":"train.py started"`), 'forked from a warm interpreter');
  // LANG: read by an interpreter only at its start, so this run gets a fresh one (setpriv, the venv's python).
  const fresh = await runToEnd(s, ['--package', 'evil', '--version', '1.0', '--dataset', 'd', '--env', 'LANG=C.UTF-8']);
  t.equal(fresh.status, 'Successful', `the fresh-interpreter run succeeds (${String(fresh.failure_reason ?? '')})`);
  t.match(s.logOf('a1'), new RegExp(`"run":"${String(fresh.id)}"[^\\n]*"warm":false[^\\n]*"msg":"train.py started"`), 'spawned fresh');
  const got = markers(f.drop);
  t.comment(`markers: ${JSON.stringify(got)}`);
  t.same(got.filter((m) => m.uid === 0), [], 'no probe ever ran as uid 0');
  for (const kind of ['pth', 'setpriv', 'sh', 'python']) t.ok(got.some((m) => m.kind === kind && m.uid > 0), `the ${kind} probe did run, as a run uid`);
  const venv = readdirSync(f.venvs).find((n) => !n.includes('.'))!;
  t.equal(spawnSync('stat', ['-c', '%u', path.join(f.venvs, venv, 'bin', 'python')], { encoding: 'utf8' }).stdout.trim(), '0', 'the venv\'s files are root\'s once built');
});

t.test('the same requirements.txt with other local wheels: a venv of its own, never the other package\'s', async (t) => {
  const f = openFolders();
  const s = await poolStack(t, f);
  if (!s) return;
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const who: Record<string, string> = {};
  for (const name of ['plug-a', 'plug-b']) {
    const pkg = tempDir();
    // Same name, same version, same requirements text: only the wheel file differs.
    wheel(path.join(pkg, 'wheels'), 'plug', '0.1', { 'plug.py': `WHO = ${JSON.stringify(name)}\n` });
    writeTree(pkg, {
      'requirements.txt': '--no-index\n--find-links wheels\nplug\n',
      'train.py': `
import os, plug
class Main:
    def train(self, d):
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        open(os.path.join(os.environ["artifacts_directory"], "who.txt"), "w").write(plug.WHO)
    def save(self):
        open("model.txt", "w").write("ok")
`,
    });
    await s.cliJson(['package', 'push', pkg, '--name', name]);
    const run = await runToEnd(s, ['--package', name, '--dataset', 'd']);
    t.equal(run.status, 'Successful', `${name} runs (${String(run.failure_reason ?? '')})`);
    who[name] = await s.objectText(`runs/${String(run.id)}/attempt-1/artifacts/who.txt`);
  }
  t.equal(who['plug-a'], 'plug-a', 'the first package ran its own wheel');
  t.equal(who['plug-b'], 'plug-b', 'the second ran its own wheel, not the first one\'s venv');
  t.equal(readdirSync(f.venvs).filter((n) => !n.includes('.')).length, 2, 'two venvs');
});

t.test('two co-located runs of different projects: B cannot read A\'s environ, memory, data or package, nor change its train.py', async (t) => {
  const f = openFolders();
  const s = await poolStack(t, f, 2);
  if (!s) return;
  const token = async (project: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', 'member'])).token as string;
  const as = (tok: string) => async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', tok]);
    if (r.code !== 0) throw new Error(`trainyard ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const A = as(await token('alpha'));
  const B = as(await token('beta'));
  const canary = `canary-${Math.random().toString(36).slice(2)}`;
  const victim = `
import json, os, time
class Main:
    def train(self, d):
        drop = os.environ["DROP"]
        info = {"pid": os.getpid(), "uid": os.getuid(), "data": os.environ["training_data_directory"], "pkg": os.getcwd()}
        tmp = os.path.join(drop, "victim.tmp")
        with open(tmp, "w") as fh:
            json.dump(info, fh)
        os.chmod(tmp, 0o644)
        os.rename(tmp, os.path.join(drop, "victim.json"))
        deadline = time.time() + 180
        while not os.path.exists(os.path.join(drop, "attacker-done")) and time.time() < deadline:
            time.sleep(0.05)
    def save(self):
        open("model.txt", "w").write("victim")
`;
  const attacker = `
import json, os, time
def attempt(f):
    try:
        return f()
    except OSError as e:
        return "denied: %s" % e.strerror
class Main:
    def train(self, d):
        drop = os.environ["DROP"]
        p = os.path.join(drop, "victim.json")
        deadline = time.time() + 180
        while not os.path.exists(p) and time.time() < deadline:
            time.sleep(0.05)
        v = json.load(open(p))
        got = {"uid": os.getuid(), "victim_uid": v["uid"]}
        got["environ"] = attempt(lambda: open("/proc/%d/environ" % v["pid"], "rb").read().decode("utf-8", "replace"))
        def mem():
            with open("/proc/%d/mem" % v["pid"], "rb") as fh:
                start = int(open("/proc/%d/maps" % v["pid"]).readline().split("-")[0], 16)
                fh.seek(start)
                return "read %d bytes" % len(fh.read(64))
        got["mem"] = attempt(mem)
        got["data"] = attempt(lambda: os.listdir(v["data"]))
        got["data_file"] = attempt(lambda: open(os.path.join(v["data"], "x.csv")).read())
        got["package"] = attempt(lambda: os.listdir(v["pkg"]))
        def tamper():
            with open(os.path.join(v["pkg"], "train.py"), "a") as fh:
                fh.write("\\n# planted by the attacker\\n")
            return "appended"
        got["tamper"] = attempt(tamper)
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        json.dump(got, open(os.path.join(os.environ["artifacts_directory"], "found.json"), "w"))
        open(os.path.join(drop, "attacker-done"), "w").close()
    def save(self):
        open("model.txt", "w").write("attacker")
`;
  await A(['package', 'push', writeTree(tempDir(), { 'train.py': victim }), '--name', 'victim']);
  await A(['dataset', 'push', writeTree(tempDir(), { 'x.csv': 'alpha-only\n' }), '--name', 'data-a']);
  await B(['package', 'push', writeTree(tempDir(), { 'train.py': attacker }), '--name', 'attacker']);
  await B(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'data-b']);
  const idA = String((await A(['run', 'train', '--package', 'victim', '--dataset', 'data-a', '--env', `DROP=${f.drop}`, '--secret', `A_KEY=${canary}`])).id);
  const idB = String((await B(['run', 'train', '--package', 'attacker', '--dataset', 'data-b', '--env', `DROP=${f.drop}`])).id);
  const runA = await s.waitForStatus(idA, ['Successful', 'Failed', 'Killed'], 300_000);
  const runB = await s.waitForStatus(idB, ['Successful', 'Failed', 'Killed'], 300_000);
  t.equal(runA.status, 'Successful', `A's run succeeds (${runA.failure_reason ?? ''})`);
  t.equal(runB.status, 'Successful', `B's run succeeds (${runB.failure_reason ?? ''})`);
  // One agent, two slots: both ran there, at once (B waited for A's pid file, A for B's end).
  const got = JSON.parse(await s.objectText(`runs/${idB}/attempt-1/artifacts/found.json`)) as Record<string, unknown>;
  t.comment(JSON.stringify(got));
  t.ok(Number(got.uid) > 0 && Number(got.victim_uid) > 0, 'both run as unprivileged uids');
  t.not(got.uid, got.victim_uid, 'of their own');
  for (const what of ['environ', 'mem', 'data', 'data_file', 'package', 'tamper']) t.match(got[what], /^denied: Permission denied/, `B's ${what} attempt is denied`);
  t.notMatch(JSON.stringify(got), canary, 'A\'s secret is nowhere in what B found');
  t.notMatch(JSON.stringify(got), 'alpha-only', 'nor A\'s data');
});

t.test('runs that would share the agent\'s uid: more than one slot is refused without --shared-uid; --run-as-user is refused', async (t) => {
  if (process.getuid?.() !== 0) { await t.skip('needs root to start the agent as another user'); return; }
  const open = tempDir('ty-nonroot-');
  chmodSync(open, 0o755);
  for (const d of ['work', 'venvs']) { mkdirSync(path.join(open, d)); chownSync(path.join(open, d), 65534, 65534); }
  // Nothing to connect to: the refusal comes before any connection; an accepted start gets as far as its
  // capabilities line, then fails to reach NATS.
  // The interpreter itself, not a shim (pyenv's needs its own HOME, which this agent's is not).
  const python = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();
  const env = {
    PATH: process.env.PATH, HOME: open, TRAINYARD_PYTHON: python, LANG: 'C.UTF-8', TRAINYARD_LOG_LEVEL: 'info',
    TRAINYARD_WORK_DIR: path.join(open, 'work'), TRAINYARD_VENV_DIR: path.join(open, 'venvs'), TRAINYARD_NVIDIA_SMI: '/nonexistent',
    TRAINYARD_NATS_URL: 'nats://127.0.0.1:1', TRAINYARD_SCHEDULER: '127.0.0.1:1', TRAINYARD_JOIN_TOKEN: 'x',
  };
  const agent = (as: string[], extra: Record<string, string>) => new Promise<{ code: number | null; out: string }>((resolve) => {
    const line = [...as, process.execPath, path.join(projectRoot(), 'bin', 'trainyard.js'), 'agent'];
    const child = spawn(line[0]!, line.slice(1), { env: { ...env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (c: Buffer) => {
      out += c.toString();
      // Accepted: past the containment checks; nothing more to see here.
      if (/"msg":"capabilities"/.test(out)) child.kill('SIGKILL');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code) => resolve({ code, out }));
  });
  const nobody = ['/usr/bin/setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', '--'];
  const refused = await agent(nobody, { TRAINYARD_MAX_RUNS: '2' });
  t.equal(refused.code, 2, 'a non-root agent with --max-runs 2 exits 2 (a bad setting)');
  t.match(refused.out, /runs would share the agent's uid/, 'saying why');
  t.match(refused.out, /--shared-uid 1/, 'and how to accept it');
  t.notMatch(refused.out, /"msg":"capabilities"/, 'before it went any further');
  const shared = await agent(nobody, { TRAINYARD_MAX_RUNS: '2', TRAINYARD_SHARED_UID: '1' });
  t.match(shared.out, /runs share the agent's uid/, 'with --shared-uid 1 it starts, warning that runs share its uid');
  t.match(shared.out, /"msg":"capabilities"/, 'and goes on');
  const one = await agent(nobody, { TRAINYARD_MAX_RUNS: '1' });
  t.match(one.out, /"msg":"capabilities"/, 'one slot needs no --shared-uid');
  const runAs = await agent([], { TRAINYARD_RUN_AS_USER: 'nobody', TRAINYARD_MAX_RUNS: '1' });
  t.equal(runAs.code, 2, '--run-as-user: the agent exits 2 (a bad setting)');
  t.match(runAs.out, /--run-as-user was replaced by --run-uids/, 'pointing at --run-uids');
  t.notOk(existsSync(path.join(open, 'work', 'identity')), 'nothing was joined');
});
