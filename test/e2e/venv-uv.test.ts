// Issue 21, environments built with uv, through the real scheduler, agent and CLI, the agent as root with
// a pool of run uids. Requirements that are all wheels of an index go through the shared uv cache, which
// only the agent writes, and are hard-linked from it; a package with a wheel of its own under the same
// name and version is built as its run's uid, apart from that cache; a run cannot write the cache, nor
// the files its venv shares with it: a later run of another project still gets the index's wheel.
// --installer pip builds with pip, and so does an agent that cannot get uv. Tiny local wheels only (the
// agent's --pip-find-links); the agent installs uv itself, the one download from PyPI here.
import t, { type Test } from 'tap';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { wheel } from '../helpers/wheel.js';
import { until } from '../helpers/packages.js';

const RANGE = '61000-61063';

/**
 * The agent's folders, under a root-owned folder nobody else may write (not /tmp: root runs the uv it
 * installs in the work dir only when every folder above it is root's alone), enterable by run uids.
 */
function agentFolders(): { work: string; venvs: string; wheels: string } {
  const base = '/var/lib/trainyard-tests';
  mkdirSync(base, { recursive: true, mode: 0o755 });
  const open = mkdtempSync(path.join(base, 'venv-uv-'));
  chmodSync(open, 0o755);
  const wheels = path.join(open, 'wheelhouse');
  mkdirSync(wheels, { mode: 0o755 });
  t.teardown(() => { spawnSync('rm', ['-rf', open]); });
  return { work: path.join(open, 'work'), venvs: path.join(open, 'venvs'), wheels };
}

/** train.py: reports which `tiny` it got, how many links its file has, and what writing the cache did. */
const probe = (cache: string) => `
import json, os, tiny
def attempt(f):
    try:
        f()
        return "written"
    except OSError as e:
        return "denied: %s" % e.strerror
class Main:
    def train(self, d):
        st = os.stat(tiny.__file__)
        got = {"who": tiny.WHO, "links": st.st_nlink, "uid": os.getuid(),
               "cache_list": attempt(lambda: os.listdir(${JSON.stringify(cache)})),
               "cache_write": attempt(lambda: open(os.path.join(${JSON.stringify(cache)}, "planted"), "w").close()),
               "venv_file": attempt(lambda: open(tiny.__file__, "a").write("\\nWHO = 'poisoned'\\n"))}
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        open(os.path.join(os.environ["artifacts_directory"], "probe.json"), "w").write(json.dumps(got))
    def save(self):
        open("model.txt", "w").write("ok")
`;

async function uvStack(t: Test, env: Record<string, string>, f: { work: string; venvs: string; wheels: string }): Promise<Stack | null> {
  if (process.getuid?.() !== 0) { await t.skip('the agent must be root to run as other uids'); return null; }
  return Stack.create(t, { agents: [{ name: 'a1', cpus: 2, env: {
    TRAINYARD_RUN_UIDS: RANGE, TRAINYARD_SHARED_UID: '0', TRAINYARD_MAX_RUNS: '1',
    TRAINYARD_WORK_DIR: f.work, TRAINYARD_VENV_DIR: f.venvs, TRAINYARD_PIP_FIND_LINKS: f.wheels, ...env,
  } }] });
}

type Cli = (args: string[]) => Promise<Record<string, any>>;

/** The CLI as a member of `project` (its own token). */
async function member(s: Stack, project: string): Promise<Cli> {
  const token = (await s.cliJson(['tokens', 'create', '--project', project, '--role', 'member'])).token as string;
  return async (args) => {
    const r = await s.cli([...args, '--json', '--token', token]);
    if (r.code !== 0) throw new Error(`trainyard ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, any>;
  };
}

async function runProbe(s: Stack, t: Test, name: string, files: Record<string, string>, pkgDir: string, cli: Cli = (a) => s.cliJson(a), dataset = 'd'): Promise<Record<string, any>> {
  const pkg = writeTree(pkgDir, files);
  await cli(['package', 'push', pkg, '--name', name]);
  const id = String((await cli(['run', 'train', '--package', name, '--dataset', dataset])).id);
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 300_000);
  t.equal(run.status, 'Successful', `${name} runs (${String(run.failure_reason ?? '')})`);
  return JSON.parse(await s.objectText(`runs/${id}/attempt-1/artifacts/probe.json`)) as Record<string, any>;
}

t.test('uv through a cache only the agent writes: a run cannot poison what another project\'s venv gets', async (t) => {
  const f = agentFolders();
  wheel(f.wheels, 'tiny', '0.1', { 'tiny.py': 'WHO = "genuine"\n' });
  const s = await uvStack(t, { TRAINYARD_INSTALLER: 'uv' }, f);
  if (!s) return;
  const cache = path.join(f.venvs, '.uv-cache');
  const alpha = await member(s, 'alpha');
  const beta = await member(s, 'beta');
  for (const [cli, name] of [[alpha, 'd-alpha'], [beta, 'd-beta']] as const) await cli(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', name]);

  // 1. A package of project alpha brings its own wheel of `tiny` (0.1+evil: it satisfies ==0.1 and >=0.1,
  // and wins over the index's 0.1 wherever both are seen): built as its uid, with a uv cache of its own.
  const own = tempDir();
  wheel(path.join(own, 'wheels'), 'tiny', '0.1+evil', { 'tiny.py': 'WHO = "evil"\n' });
  const evil = await runProbe(s, t, 'evil', { 'requirements.txt': '--no-index\n--find-links ./wheels\ntiny==0.1\n', 'train.py': probe(cache) }, own, alpha, 'd-alpha');
  t.equal(evil.who, 'evil', 'the package with its own wheel gets it (its own choice)');
  // 2. A run of alpha whose venv came through the shared cache tries to change it, and its own venv's files.
  const shared = await runProbe(s, t, 'writer', { 'requirements.txt': '--no-index\ntiny==0.1\n', 'train.py': probe(cache) }, tempDir(), alpha, 'd-alpha');
  t.equal(shared.who, 'genuine', 'index requirements get the index\'s wheel, not the wheel another package brought');
  t.ok(shared.links >= 2, `its file is hard-linked from the shared cache (links: ${shared.links})`);
  for (const r of [evil, shared]) {
    t.ok(r.uid >= 61000, `the run ran as a run uid (${r.uid})`);
    t.match(r.cache_list, /^denied/, `listing the shared cache is refused (${r.cache_list})`);
    t.match(r.cache_write, /^denied/, `writing into the shared cache is refused (${r.cache_write})`);
    t.match(r.venv_file, /^denied/, `changing its venv's file (the cache's, hard-linked) is refused (${r.venv_file})`);
  }
  // 3. Project beta, other requirements text (a venv of its own), the same wheel: the genuine one.
  const victim = await runProbe(s, t, 'victim', { 'requirements.txt': '--no-index\ntiny>=0.1\n', 'train.py': probe(cache) }, tempDir(), beta, 'd-beta');
  t.equal(victim.who, 'genuine', 'another project\'s later run gets the index\'s wheel, unchanged');
  t.ok(victim.links >= 3, `its file is the same cached file again (links: ${victim.links})`);
  t.notOk(existsSync(path.join(cache, 'planted')), 'nothing was planted in the cache');
  const st = statSync(cache);
  t.equal(st.uid, 0, 'the shared cache is root\'s');
  t.equal(st.mode & 0o777, 0o700, 'and nobody else\'s to enter');
  const venvs = readdirSync(f.venvs).filter((n) => !n.includes('.'));
  t.equal(venvs.length, 3, 'three venvs');
  for (const v of venvs) t.notOk(existsSync(path.join(f.venvs, v, 'bin', 'pip')), `${v} was built by uv (no pip in it)`);
  t.match(s.logOf('a1'), /"installer":"uv"/, 'the agent says it builds with uv');

  // uv installs no bytecode and runs cannot write their sealed venv: the agent compiles it after the venv
  // is ready (else every run compiles every module it imports, every time). The files it adds are as
  // sealed as the rest: root's, nobody else may write them.
  for (const v of venvs) {
    const site = readdirSync(path.join(f.venvs, v, 'lib')).map((py) => path.join(f.venvs, v, 'lib', py, 'site-packages'))[0]!;
    const cacheDir = path.join(site, '__pycache__');
    const pyc = await until(`${v}'s bytecode`, async () => existsSync(cacheDir) && readdirSync(cacheDir).find((n) => /^tiny\.cpython-\d+\.pyc$/.test(n)), 30_000)
      .catch(() => undefined);
    t.ok(pyc, `${v}: tiny.py is compiled to bytecode in the venv`);
    if (!pyc) continue;
    for (const p of [cacheDir, path.join(cacheDir, pyc)]) {
      const ps = statSync(p);
      t.equal(ps.uid, 0, `${path.basename(p)} is root's`);
      t.equal(ps.mode & 0o022, 0, `${path.basename(p)} is writable by nobody else (mode ${(ps.mode & 0o777).toString(8)})`);
    }
    // The compile held the build's lock and gives it back once it has marked the venv.
    await until(`${v} marked and unlocked`, async () => existsSync(path.join(f.venvs, v, '.trainyard-compiled')) && !existsSync(`${path.join(f.venvs, v)}.lock`), 10_000)
      .catch(() => null);
    t.ok(existsSync(path.join(f.venvs, v, '.trainyard-compiled')), `${v} is marked compiled`);
    t.notOk(existsSync(`${path.join(f.venvs, v)}.lock`), `and its lock is released`);
  }
});

t.test('--installer pip builds with pip; so does an agent that cannot get uv', async (t) => {
  for (const [what, env] of [
    ['--installer pip', { TRAINYARD_INSTALLER: 'pip' }],
    // An index that answers nothing: uv cannot be installed (the requirements themselves say --no-index).
    ['no uv to be had', { TRAINYARD_INSTALLER: 'uv', TRAINYARD_PIP_INDEX_URL: 'http://127.0.0.1:9/simple' }],
  ] as const) {
    await t.test(what, async (t) => {
      const f = agentFolders();
      wheel(f.wheels, 'tiny', '0.1', { 'tiny.py': 'WHO = "genuine"\n' });
      const s = await uvStack(t, env, f);
      if (!s) return;
      await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
      const r = await runProbe(s, t, 'p', { 'requirements.txt': '--no-index\ntiny==0.1\n', 'train.py': probe(path.join(f.venvs, '.uv-cache')) }, tempDir());
      t.equal(r.who, 'genuine', 'the run gets its requirement');
      const venv = readdirSync(f.venvs).find((n) => !n.includes('.'))!;
      t.ok(existsSync(path.join(f.venvs, venv, 'bin', 'pip')), 'built by pip (pip is in the venv)');
      t.notOk(existsSync(path.join(f.venvs, '.uv-cache')), 'no uv cache');
      t.match(s.logOf('a1'), /"installer":"pip"/, 'the agent says it builds with pip');
    });
  }
});
