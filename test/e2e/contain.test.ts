// Runs are contained (issue 8), through the real scheduler, agent and CLI: no process of a run outlives it
// (a setsid double-forked sleeper dies at success, kill and timeout: the attempt's cgroup); pip and
// train.py get a minimal environment (a setup.py and a train.py find none of the agent's secrets);
// with a pool of run uids (--run-uids), train.py and pip run as a uid that cannot read the agent's
// environ nor write the venv;
// an artifacts folder that leads out of the run's folder fails the run with nothing uploaded; the
// agent refuses a reserved env name that reached it; log lines are capped in length by the scheduler;
// and the CLI shows escape sequences from a run instead of sending them to the terminal.
import t, { type Test } from 'tap';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { cgroup2Mount, ownCgroupPath } from '../../agent/cgroup.js';
import { DEFER_HASH_FROM_BYTES, SPARE_FROM_FILES } from '../../agent/data-cache.js';

/** The scheduler's MinIO secret (services.sh's minio-users.env, exported by test.sh): nothing a run can read may hold it. */
const storageSecret = process.env.TRAINYARD_MINIO_SECRET_KEY || 'minioadmin';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Running (a zombie nobody reaped counts as gone). */
const alive = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};
async function waitForPid(file: string): Promise<number> {
  for (let i = 0; i < 600; i++) {
    try { const n = Number(readFileSync(file, 'utf8').trim()); if (n > 0) return n; } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`no pid in ${file}`);
}
async function goneWithin(pid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (!alive(pid)) return true;
  return !alive(pid);
}

// train() starts a sleeper that leaves its process group and session (setsid, then a double fork) and
// writes its pid; then returns once the test opens $GATE, or sleeps (MODE=sleep: to be killed or timed out).
const escaper = `
import os, subprocess, time
class Main:
    def train(self, d):
        pidfile = os.environ["PIDFILE"]
        subprocess.run(["setsid", "sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo $! > %s" % pidfile],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        print("sleeper started", flush=True)
        if os.environ.get("MODE") == "sleep":
            time.sleep(300)
        gate = os.environ.get("GATE")
        deadline = time.time() + 120
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.05)
    def save(self):
        pass
`;

t.test('a setsid double-forked sleeper does not outlive its run: success, kill, timeout', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1', killGraceMs: 500 }] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': escaper }), '--name', 'escaper']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const submit = async (pidfile: string, extra: string[]) => (await s.cliJson(['run', 'train', '--package', 'escaper', '--dataset', 'd', '--env', `PIDFILE=${pidfile}`, ...extra])).id as string;

  const gate = path.join(tempDir(), 'open');
  const cases: [string, string[], (id: string) => Promise<unknown>, string][] = [
    ['success', ['--env', `GATE=${gate}`], async () => writeFileSync(gate, ''), 'Successful'],
    ['kill', ['--env', 'MODE=sleep'], (id) => s.cliJson(['run', 'kill', id]), 'Killed'],
    ['timeout', ['--env', 'MODE=sleep', '--timeout', '3'], async () => {}, 'Failed'],
  ];
  for (const [name, extra, end, status] of cases) {
    const pidfile = path.join(tempDir(), 'sleeper.pid');
    const id = await submit(pidfile, extra);
    const pid = await waitForPid(pidfile);
    // `echo $!` names the forked shell as soon as it exists, a moment before it has become `sleep`.
    let cmdline = '';
    for (let i = 0; i < 100 && !/^sleep/.test(cmdline); i++) {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!/^sleep/.test(cmdline)) await sleep(20);
    }
    t.match(cmdline, /^sleep/, `${name}: the sleeper runs`);
    await end(id);
    const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 60_000);
    t.equal(run.status, status, `${name}: the run is ${status}`);
    t.ok(await goneWithin(pid, 2000), `${name}: the sleeper is gone once the run has ended`);
    if (!alive(pid)) continue;
    process.kill(pid, 'SIGKILL');
  }
  const mount = cgroup2Mount();
  if (mount) {
    // Named RUN-aN-AGENTPID (agent/attempt.ts); removed once the attempt has reported its end.
    const base = path.join(mount, ownCgroupPath(), 'trainyard');
    const agentPid = s.daemons.find((d) => d.name === 'a1')!.child.pid;
    const mine = () => (existsSync(base) ? readdirSync(base).filter((n) => n.endsWith(`-${agentPid}`)) : []);
    // Besides them, the agent keeps one spare child for the next run, in a cgroup of its own (warm-N-AGENTPID);
    // a run that started in a spare keeps that name, and its cgroup goes just after it reported its end.
    const attempts = () => mine().filter((n) => !n.startsWith('warm-'));
    for (let i = 0; i < 100 && (attempts().length || mine().length > 1); i++) await sleep(50);
    t.same(attempts(), [], 'the attempts\' cgroups were removed');
    t.ok(mine().length <= 1, `at most the one spare is left (${mine().join(', ')})`);
    t.equal(await s.daemons.find((d) => d.name === 'a1')!.stop(), 0, 'the agent stops cleanly');
    t.same(mine(), [], 'the agent\'s stop removes the spare too');
  }
});

// train.py (and, below, a requirement's build code) dumps its environment and what it can read of its
// ancestors' /proc/PID/environ.
const canary = `canary-${Math.random().toString(36).slice(2)}`;
const procDump = `
import os, json, pwd
def ancestors():
    out, pid = [], os.getppid()
    while pid > 1:
        try:
            env = open("/proc/%d/environ" % pid, "rb").read().decode("utf-8", "replace")
            out.append({"pid": pid, "readable": True, "environ": env})
        except OSError as e:
            out.append({"pid": pid, "readable": False, "error": str(e)})
        with open("/proc/%d/stat" % pid) as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])
    return out
`;
const dumpTrain = procDump + `
class Main:
    def train(self, d):
        venv = os.environ["VIRTUAL_ENV"]
        try:
            open(os.path.join(venv, "planted.py"), "w").write("x")
            venv_write = "written"
        except OSError as e:
            venv_write = str(e)
        home = os.environ["HOME"]
        open(os.path.join(home, "note"), "w").write("mine")
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        with open(os.path.join(os.environ["artifacts_directory"], "dump.json"), "w") as fh:
            json.dump({"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name, "env": dict(os.environ),
                       "ancestors": ancestors(), "venv_write": venv_write, "home": home, "cwd": os.getcwd()}, fh)
    def save(self):
        open("model.txt", "w").write("ok")
`;

/**
 * A local source package whose build code (an in-tree PEP 517 backend: what a setup.py is to setuptools,
 * and it needs no setuptools or wheel from an index, so pip runs offline) runs `probe` (Python, with os,
 * json and procDump's ancestors() in scope) when pip loads it. Its folder is one any user may read.
 */
function envdumpSdist(probe: string): string {
  const dir = writeTree(tempDir(), {
    'pyproject.toml': '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
    'backend.py': procDump + `
import base64, hashlib, zipfile
${probe}
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "envdump-0.1-py3-none-any.whl"
    files = {"envdump.py": "", "envdump-0.1.dist-info/METADATA": "Metadata-Version: 2.1\\nName: envdump\\nVersion: 0.1\\n",
             "envdump-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, text in files.items():
            data = text.encode()
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
        record.append("envdump-0.1.dist-info/RECORD,,")
        z.writestr("envdump-0.1.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
`,
  });
  chmodSync(dir, 0o755);
  return dir;
}

t.test('pip and train.py see none of the agent\'s secrets', async (t) => {
  const secret = `secret-${canary}`;
  const s = await Stack.create(t, { agents: [{ name: 'a1', env: {
    // Not a setting of the agent: something an operator's environment might hold.
    OPERATOR_API_KEY: secret,
  } }] });
  const dumpFile = path.join(tempDir(), 'setup-env.json');
  const sdist = envdumpSdist(`json.dump(dict(os.environ), open(${JSON.stringify(dumpFile)}, "w"))`);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': dumpTrain, 'requirements.txt': `--no-index\n${sdist}\n` }), '--name', 'dump']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const id = (await s.cliJson(['run', 'train', '--package', 'dump', '--dataset', 'd'])).id as string;
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 240_000);
  t.equal(run.status, 'Successful', `the run succeeds (${run.failure_reason ?? ''})`);
  t.ok(existsSync(dumpFile), 'setup.py ran and dumped its environment');
  const setupEnv = existsSync(dumpFile) ? readFileSync(dumpFile, 'utf8') : '';
  t.notMatch(setupEnv, storageSecret, 'setup.py does not see the storage keys');
  t.notMatch(setupEnv, secret, 'nor anything else of the agent\'s environment');
  t.notMatch(setupEnv, /TRAINYARD_/, 'nor any TRAINYARD_ setting');
  const dump = JSON.parse(await s.objectText(`runs/${id}/attempt-1/artifacts/dump.json`));
  const trainEnv = JSON.stringify(dump.env);
  t.notMatch(trainEnv, storageSecret, 'train.py\'s environment holds no storage key');
  t.notMatch(trainEnv, secret);
  t.same(Object.keys(dump.env).filter((k: string) => k.startsWith('TRAINYARD_')).sort(), ['TRAINYARD_ATTEMPT', 'TRAINYARD_METRICS_FILE', 'TRAINYARD_RUN_ID'], 'only the run\'s own TRAINYARD_ variables (its id, attempt, and where trainyard.log writes)');
  // Without run uids (--run-uids none, as test agents run) train.py is the agent's user: it can read the
  // agent's /proc/PID/environ. Said, not hidden (README, Security): this is what run uids are for.
  const agentPid = s.daemons.find((d) => d.name === 'a1')!.child.pid;
  const agentEntry = (dump.ancestors as { pid: number; readable: boolean }[]).find((a) => a.pid === agentPid);
  t.ok(agentEntry, 'train.py\'s parent chain reaches the agent');
  t.comment(`as the agent's own user, train.py ${agentEntry?.readable ? 'CAN' : 'cannot'} read /proc/${agentPid}/environ`);
  // Every storage credential train.py could find: none. The agent holds no storage keys at all (its
  // attempt's STS keys live in its memory only), yet the run's outputs are in the bucket.
  const agentEnviron = (agentEntry as { environ?: string } | undefined)?.environ ?? '';
  for (const [where, text] of [['train.py\'s env', trainEnv], ['setup.py\'s env', setupEnv], ['the agent\'s environ', agentEnviron]] as const) {
    t.notMatch(text, /MINIO_(ACCESS|SECRET)_KEY|AWS_(ACCESS_KEY|SECRET)|minioadmin/, `${where}: no storage key`);
    if (process.env.TRAINYARD_MINIO_SECRET_KEY) t.notMatch(text, process.env.TRAINYARD_MINIO_SECRET_KEY, `${where}: not the scheduler's MinIO secret`);
  }
});

/** Tries every change to its data folder it can think of, then hashes every file there (artifacts/tamper.json). */
const tamperTrain = `
import os, json, hashlib
class Main:
    def train(self, d):
        tried = {}
        def attempt(name, fn):
            try:
                fn()
                tried[name] = "done"
            except OSError as e:
                tried[name] = type(e).__name__
        sub = os.path.join(d, sorted(x for x in os.listdir(d) if os.path.isdir(os.path.join(d, x)))[0])
        first = os.path.join(sub, sorted(os.listdir(sub))[0])
        attempt("append", lambda: open(first, "a").write("x"))
        attempt("create", lambda: open(os.path.join(d, "new.txt"), "w").write("x"))
        attempt("create_below", lambda: open(os.path.join(sub, "new.txt"), "w").write("x"))
        attempt("unlink", lambda: os.unlink(first))
        attempt("rename", lambda: os.rename(first, first + ".moved"))
        attempt("chmod", lambda: os.chmod(first, 0o666))
        attempt("mkdir", lambda: os.mkdir(os.path.join(sub, "more")))
        files = {}
        for root, _, names in os.walk(d):
            for n in names:
                p = os.path.join(root, n)
                files[os.path.relpath(p, d)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        with open(os.path.join(os.environ["artifacts_directory"], "tamper.json"), "w") as fh:
            json.dump({"tried": tried, "files": files}, fh)
    def save(self):
        open("model.txt", "w").write("m")
`;

/** Run uids' passwd names (agent/run-uids.ts). */
const runUser = /^trainyard-6\d{4}$/;

/**
 * A pool of run uids (their users are made by the agent) and folders they can reach: the work dir and the
 * venv cache under a folder others may enter (mkdtemp's is 0700). Null, with the test skipped, where it
 * cannot be.
 */
async function runAsSetup(t: Test): Promise<{ env: Record<string, string>; open: string; work: string; venvs: string } | null> {
  if (process.getuid?.() !== 0) { await t.skip('the agent must be root to run as other uids'); return null; }
  if (spawnSync('setpriv', ['--version']).error) { await t.skip('setpriv (util-linux) is not installed'); return null; }
  const open = tempDir('ty-runas-');
  chmodSync(open, 0o755);
  const work = path.join(open, 'work');
  mkdirSync(work);
  const venvs = path.join(open, 'venvs');
  return { env: { TRAINYARD_RUN_UIDS: '61000-61063', TRAINYARD_SHARED_UID: '0', TRAINYARD_WORK_DIR: work, TRAINYARD_VENV_DIR: venvs }, open, work, venvs };
}

t.test('a run uid: train.py runs as a uid of the pool, cannot read the agent\'s environ or write the venv', async (t) => {
  const setup = await runAsSetup(t);
  if (!setup) return;
  const { work } = setup;
  const secret = `secret-${canary}`;
  const s = await Stack.create(t, { agents: [{ name: 'a1', env: { ...setup.env, OPERATOR_API_KEY: secret } }] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': dumpTrain }), '--name', 'dump']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const id = (await s.cliJson(['run', 'train', '--package', 'dump', '--dataset', 'd'])).id as string;
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 120_000);
  t.equal(run.status, 'Successful', `the run succeeds as a run uid: its folders are writable by it (${run.failure_reason ?? ''})`);
  const dump = JSON.parse(await s.objectText(`runs/${id}/attempt-1/artifacts/dump.json`));
  t.match(dump.user, runUser, 'train.py ran as a run uid, with a passwd entry');
  t.match(s.logOf('a1'), new RegExp(`"run":"${id}"[^\\n]*"warm":true[^\\n]*"msg":"train.py started"`), 'forked from the venv\'s warm interpreter (agent/warm-interpreter.ts)');
  t.not(dump.uid, 0);
  t.match(dump.venv_write, /Permission denied/, 'the venv is not writable by the run');
  t.match(dump.home, new RegExp(`^${work}/`), 'its HOME is a folder of the attempt');
  const agentPid = s.daemons.find((d) => d.name === 'a1')!.child.pid;
  const chain = dump.ancestors as { pid: number; readable: boolean; environ?: string }[];
  t.ok(chain.some((a) => a.pid === agentPid), 'train.py\'s parent chain reaches the agent');
  t.same(chain.filter((a) => a.readable).map((a) => a.pid), [], 'no ancestor\'s /proc/PID/environ is readable, the agent\'s included');
  t.notMatch(JSON.stringify(dump), storageSecret, 'no storage key anywhere train.py looked');
  t.notMatch(JSON.stringify(dump), secret);
  const files = await s.objects(`runs/${id}/attempt-1/`);
  t.ok(files.includes(`runs/${id}/attempt-1/package.zip`), 'the outputs were uploaded');

  // Version 1.0's second run is claimed ready: its process is set up before its package is in place
  // (agent/attempt.ts #earlyProcess). It must be the same process: the run user, its own HOME, the package
  // folder as working directory.
  const id2 = (await s.cliJson(['run', 'train', '--package', 'dump', '--version', '1.0', '--dataset', 'd'])).id as string;
  const run2 = await s.waitForStatus(id2, ['Successful', 'Failed', 'Killed'], 120_000);
  t.equal(run2.status, 'Successful', `the second run succeeds (${run2.failure_reason ?? ''})`);
  t.match(s.logOf('a1'), new RegExp(`"run":"${id2}"[^\\n]*"warm":true,"early":true[^\\n]*"msg":"train.py started"`), 'its process was set up early');
  const dump2 = JSON.parse(await s.objectText(`runs/${id2}/attempt-1/artifacts/dump.json`));
  t.match(dump2.user, runUser, 'as a run uid');
  t.equal(dump2.cwd, path.join(work, `${id2}-a1`, 'package'), 'in its package folder');
  t.match(dump2.home, new RegExp(`^${work}/${id2}-a1/`), 'with a HOME of its own attempt');
  t.not(dump2.home, dump.home);
  t.match(dump2.venv_write, /Permission denied/, 'the venv is still not writable');

  // Runs get links to the cache's entries here, so a large file's hash comes after the pull, from its entry
  // (agent/data-cache.ts deferHashes): the lineage still says each file as pushed.
  const big = { 'big.bin': randomBytes(DEFER_HASH_FROM_BYTES + 12_345), 'small.csv': Buffer.from('1,2\n') };
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), big), '--name', 'big']);
  const id3 = (await s.cliJson(['run', 'train', '--package', 'dump', '--version', '1.0', '--dataset', 'big'])).id as string;
  const run3 = await s.waitForStatus(id3, ['Successful', 'Failed', 'Killed'], 120_000);
  t.equal(run3.status, 'Successful', `a run over a large file succeeds (${run3.failure_reason ?? ''})`);
  const agent = s.daemons.find((d) => d.name === 'a1')!;
  const after = await agent.waitFor((l) => l.msg === 'the hashes of the pull\'s large files are in (hashed after it, for the lineage)' && l.run === id3, 5_000);
  t.equal(after.files, 1, 'the large file was hashed after the pull, the small one as it came');
  const lineage = JSON.parse(await s.objectText(`runs/${id3}/attempt-1/_lineage.json`)) as { data: { manifest: { path: string; size: number; sha256: string }[] } };
  t.same(lineage.data.manifest, Object.entries(big).map(([p, b]) => ({ path: p, size: b.length, sha256: createHash('sha256').update(b).digest('hex') })), 'the lineage: each file as pushed');

  // A full pipeline whose evaluation dataset is its dataset: the evaluation pull links the entries whose
  // hashes are still coming from the pull just before it, and its manifest waits for them (it is always
  // whole before process_data, which writes beside it, runs).
  // Large enough that its hash (tens of ms) is most likely still coming when the evaluation pull links it.
  const fresh = { 'big.bin': randomBytes(8 * DEFER_HASH_FROM_BYTES + 777) };
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), fresh), '--name', 'both']);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': 'class Main:\n    def train(self, d):\n        pass\n    def evaluate(self, d):\n        return 0.5\n    def save(self):\n        open("model.txt", "w").write("m")\n' }), '--name', 'ev']);
  const full = await s.cliJson(['run', 'full', '--package', 'ev', '--dataset', 'both', '--eval-dataset', 'both', '--wait']);
  t.equal(full.status, 'Successful', `the full run succeeds (${full.failure_reason ?? ''})`);
  const want = [{ path: 'big.bin', size: fresh['big.bin'].length, sha256: createHash('sha256').update(fresh['big.bin']).digest('hex') }];
  t.same(full.lineage.data.manifest, want, 'its data manifest');
  t.same(full.lineage.eval_data.manifest, want, 'and its evaluation data\'s, with the hash that came after the pull');

  // A run cannot change its data folder (the agent's, 0755, its files links to the cache's entries): what the
  // agent counts on to keep that folder, once the run is over, as the next run's spare (DataCache.recycle).
  // Each run tries every change it can think of, then hashes every file it sees; the second run gets the
  // first one's very folder, and sees exactly what was pushed.
  const many: Record<string, Buffer> = {};
  for (let i = 0; i < SPARE_FROM_FILES + 4; i++) many[`d${i % 2}/f${i}.txt`] = Buffer.from(`row ${i}\n`);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), many), '--name', 'many']);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': tamperTrain }), '--name', 'tamper']);
  const pushed = Object.fromEntries(Object.entries(many).map(([p, b]) => [p, createHash('sha256').update(b).digest('hex')]));
  for (const nth of [1, 2]) {
    const r = await s.cliJson(['run', 'train', '--package', 'tamper', '--dataset', 'many', '--wait']);
    t.equal(r.status, 'Successful', `tampering run ${nth} ends (${r.failure_reason ?? ''})`);
    const seen = JSON.parse(await s.objectText(`runs/${r.id}/attempt-1/artifacts/tamper.json`)) as { tried: Record<string, string>; files: Record<string, string> };
    t.same(Object.entries(seen.tried).filter(([, how]) => how !== 'PermissionError'), [], `run ${nth}: every change to its data folder is refused`);
    t.equal(Object.keys(seen.tried).length, 7, 'seven were tried');
    t.same(seen.files, pushed, `run ${nth} sees exactly what was pushed`);
    if (nth === 2) t.match((await s.cli(['run', 'logs', String(r.id)])).stdout, /linked ahead from this agent's cache/, 'the second run got a spare');
  }
  // The first run's own folder, unless it ran past the spare's delay (a loaded machine): then a spare was
  // linked meanwhile and the second run saw that one (test/unit/agent-data-cache.test.ts covers both ways).
  const kept = s.logOf('a1').includes('the run\'s data folder is kept for the next run of its dataset');
  t.comment(kept ? 'the second run got the first run\'s folder' : 'the first run outlasted the spare\'s delay: the second got a linked spare');
});

t.test('a run uid: pip\'s build code and train.py try every credential they can find; each is refused', async (t) => {
  const setup = await runAsSetup(t);
  if (!setup) return;
  const { open, work, venvs } = setup;
  // Where the build code leaves what it found: a folder the run user may write.
  const drop = path.join(open, 'drop');
  mkdirSync(drop);
  chmodSync(drop, 0o777);
  const found = path.join(drop, 'build.json');
  const identity = path.join(work, 'identity');
  const trial = `
def trial():
    got = {"uid": os.getuid(), "ancestors_readable": [a["pid"] for a in ancestors() if a["readable"]]}
    try:
        open(${JSON.stringify(identity)}).read()
        got["identity"] = "read"
    except OSError as e:
        got["identity"] = e.strerror
    return got
`;
  const sdist = envdumpSdist(`${trial}
json.dump(trial(), open(${JSON.stringify(found)}, "w"))`);
  const s = await Stack.create(t, { agents: [{ name: 'a1', env: setup.env }] });
  // Another project's dataset and a package: what stolen storage access would be worth.
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'secret.csv': 'theirs\n' }), '--name', 'other']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const thief = procDump + trial + `
import urllib.request, urllib.error
def s3(method, key, body=None):
    req = urllib.request.Request("%s/%s/%s" % (os.environ["S3"], os.environ["BUCKET"], key), data=body, method=method)
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
class Main:
    def train(self, d):
        got = trial()
        # Every credential-looking value it can see; none should be there to try.
        got["env_keys"] = sorted(k for k, v in os.environ.items() if any(w in k.upper() for w in ("KEY", "SECRET", "TOKEN", "PASS", "CRED")))
        got["get_other"] = s3("GET", "datasets/other/secret.csv")
        got["put_package"] = s3("PUT", "packages/stolen/%s/package.zip" % ("0" * 64), b"x")
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        json.dump(got, open(os.path.join(os.environ["artifacts_directory"], "found.json"), "w"))
    def save(self):
        open("model.txt", "w").write("ok")
`;
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': thief, 'requirements.txt': `--no-index\n${sdist}\n` }), '--name', 'thief']);
  const run = await s.cliJson(['run', 'train', '--package', 'thief', '--dataset', 'd', '--env', `S3=${s.minioEndpoint}`, '--env', `BUCKET=${s.bucket}`, '--wait']);
  t.equal(run.status, 'Successful', `the run succeeds (${String(run.failure_reason ?? '')})`);
  t.ok(existsSync(found), 'the requirement\'s build code ran');
  const build = JSON.parse(readFileSync(found, 'utf8'));
  const got = JSON.parse(await s.objectText(`runs/${String(run.id)}/attempt-1/artifacts/found.json`));
  const uid = Number(got.uid);
  t.ok(uid > 0, 'train.py ran as a run uid');
  t.equal(build.uid, uid, 'pip and the build code ran as the attempt\'s run uid, not as the agent\'s user');
  t.equal(build.identity, 'Permission denied', 'the build code cannot read the agent\'s credential');
  const agentPid = s.daemons.find((d) => d.name === 'a1')!.child.pid;
  // Its readable ancestors are pip's own processes (the run user's, with pip's minimal environment).
  t.notOk((build.ancestors_readable as number[]).includes(agentPid!), 'nor the agent\'s /proc/PID/environ');
  t.equal(got.identity, 'Permission denied', 'train.py cannot read the agent\'s credential');
  t.same(got.ancestors_readable, [], 'nor any ancestor\'s environ');
  t.same(got.env_keys, [], 'and its environment holds no credential to try');
  t.equal(got.get_other, 403, 'another dataset: AccessDenied');
  t.equal(got.put_package, 403, 'a write under packages/: AccessDenied');
  t.same(await s.objects('packages/stolen/'), [], 'nothing was written');
  const venv = readdirSync(venvs).find((f) => !f.includes('.'))!;
  const st = statSync(path.join(venvs, venv, 'bin', 'python'), { throwIfNoEntry: false }) ?? statSync(path.join(venvs, venv));
  t.equal(statSync(path.join(venvs, venv)).uid, 0, 'the built venv is root\'s once built');
  t.equal(st.mode & 0o022, 0, 'and nobody else may write it');
});

t.test('run uids that cannot reach the work dir: the agent refuses to start, naming it', async (t) => {
  if (process.getuid?.() !== 0) { await t.skip('the agent must be root to run as other uids'); return; }
  const s = await Stack.create(t, { agents: [] });
  const closed = tempDir('ty-closed-'); // 0700: the run uids cannot enter it
  const d = await s.startAgent('a1', { env: { TRAINYARD_RUN_UIDS: '61000-61063', TRAINYARD_SHARED_UID: '0', TRAINYARD_WORK_DIR: path.join(closed, 'work'), TRAINYARD_VENV_DIR: path.join(closed, 'venvs') }, expectExit: 1, waitForRegistered: false });
  t.equal(await d.exited, 1, 'the agent exits 1');
  t.match(s.logOf('a1'), /cannot enter/, 'saying which folder the user cannot enter');
});

t.test('an artifacts folder that leads out of the run\'s folder fails the run; nothing is uploaded', async (t) => {
  const s = await Stack.create(t);
  const above = tempDir('ty-outside-');
  const outside = path.join(above, 'inner');
  writeTree(outside, { 'secret.txt': 'not yours' });
  mkdirSync(path.join(above, 'art'));
  const linker = `
import os, shutil
class Main:
    def train(self, d):
        target = os.environ["LINK_TO"]
        top = os.environ["artifacts_directory"].split("/")[0]
        shutil.rmtree(top, ignore_errors=True)
        os.symlink(target, top)
    def save(self):
        pass
`;
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': linker }), '--name', 'linker']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  for (const [what, env] of [['the folder itself', 'artifacts'], ['a folder above it', 'out/art']] as const) {
    // out/art with out -> ABOVE resolves to ABOVE/art, which exists.
    const target = what === 'the folder itself' ? outside : above;
    const id = (await s.cliJson(['run', 'train', '--package', 'linker', '--dataset', 'd', '--env', `artifacts_directory=${env}`, '--env', `LINK_TO=${target}`])).id as string;
    const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
    t.equal(run.status, 'Failed', `${what} as a link: the run fails`);
    t.match(run.failure_reason, /leaves the run's folder/, 'saying why');
    t.same(await s.objects(`runs/${id}/`), [], 'nothing was uploaded');
  }
});

t.test('a reserved env name that reached the agent is refused there: Failed, nothing spawned', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const marker = path.join(tempDir(), 'ran');
  const touch = `
import os
open(os.environ["MARKER"], "w").write("spawned")
class Main:
    def train(self, d):
        pass
    def save(self):
        pass
`;
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': touch }), '--name', 'touch']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const id = (await s.cliJson(['run', 'train', '--package', 'touch', '--dataset', 'd', '--env', `MARKER=${marker}`])).id as string;
  // As a scheduler that did not check (or a forged row) would hand it out.
  await s.query(`UPDATE runs SET env = env || '{"LD_PRELOAD": "/nonexistent/evil.so"}'::jsonb WHERE id = $1`, [id]);
  await s.startAgent('a1');
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.equal(run.status, 'Failed');
  t.match(run.failure_reason, /LD_PRELOAD is reserved/, 'the reason names the variable');
  t.notOk(existsSync(marker), 'train.py never ran');
});

t.test('long lines arrive cut; the CLI shows escape sequences instead of obeying them', async (t) => {
  const s = await Stack.create(t);
  const noisy = `
import sys
class Main:
    def train(self, d):
        print("x" * 40000, flush=True)
        print("before \\x1b]52;c;aGVsbG8=\\x07 after \\x1b[2J\\x9b31m", flush=True)
    def save(self):
        raise ValueError("bad \\x1b]0;retitled\\x07 thing")
`;
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': noisy }), '--name', 'noisy']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const id = (await s.cliJson(['run', 'train', '--package', 'noisy', '--dataset', 'd'])).id as string;
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.equal(run.status, 'Failed');

  const json = await s.cli(['run', 'logs', id, '--json']);
  t.equal(json.code, 0);
  const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { text: string });
  const long = lines.filter((l) => l.text.startsWith('xxxx'));
  t.same(long.map((l) => l.text.length), [16384, 16384, 7232], 'a 40,000-character line arrives as records of at most 16 KiB (the scheduler cuts longer ones: test/unit/log-line-cap.test.ts)');
  const osc = lines.find((l) => l.text.startsWith('before'));
  t.equal(osc?.text, 'before \x1b]52;c;aGVsbG8=\x07 after \x1b[2J\x9b31m', '--json keeps the raw text');
  t.match(json.stdout, '\\u001b]52', 'JSON-escaped');

  const plain = await s.cli(['run', 'logs', id]);
  t.equal(plain.code, 0);
  t.notOk(plain.stdout.includes('\x1b'), 'run logs prints no ESC byte');
  t.notOk(/[\x07\x9b]/.test(plain.stdout), 'nor BEL or a one-byte CSI');
  t.match(plain.stdout, 'before \\x1b]52;c;aGVsbG8=\\x07 after \\x1b[2J\\x9b31m', 'the sequence is shown as visible escapes');

  const get = await s.cli(['run', 'get', id]);
  t.notOk(get.stdout.includes('\x1b'), 'run get prints no ESC byte');
  t.match(get.stdout, 'bad \\x1b]0;retitled\\x07 thing', 'the reason is shown with visible escapes');

  // File names are the run's to choose too: an artifact named with an escape sequence.
  const namer = `
import os
class Main:
    def train(self, d):
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        open(os.path.join(os.environ["artifacts_directory"], "evil\\x1b]52;c;aGk=\\x07.txt"), "w").write("x")
    def save(self):
        open("model.txt", "w").write("m")
`;
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': namer }), '--name', 'namer']);
  const named = await s.cliJson(['run', 'train', '--package', 'namer', '--dataset', 'd', '--wait']);
  t.equal(named.status, 'Successful', `the run with an oddly named artifact succeeds (${String(named.failure_reason ?? '')})`);
  const outs = await s.cli(['run', 'outputs', String(named.id), '--to', tempDir()]);
  t.equal(outs.code, 0, outs.stderr);
  t.notOk(/[\x07\x1b\x9b]/.test(outs.stdout + outs.stderr), 'run outputs prints no ESC, BEL or CSI byte for a file name');
  t.match(outs.stdout, 'evil\\x1b]52;c;aGk=\\x07.txt', 'the name is shown with visible escapes');
});
