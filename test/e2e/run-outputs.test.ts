// Issue 19, a run's outputs and its result file, through the real scheduler, agent and CLI: a co-located
// run of another project that swaps the victim's artifacts folder for a link to the agent's work dir, or
// for a folder of links to the agent's credential (renameat2 RENAME_EXCHANGE, in a loop, while the agent
// reads), never gets a file of the agent's into the victim's outputs; a result file replaced by a FIFO fails the run with a reason instead of holding the
// agent (four such runs, then a kill and a normal run, all end); a result file that is a link is refused;
// a run that writes past --run-disk-mb fails "disk limit"; outputs over --max-output-mb fail the run with
// nothing in the bucket.
import t, { type Test } from 'tap';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const ended = ['Successful', 'Failed', 'Killed'];

/** A member token of `project`, and the CLI run with it (--json): { code, out, err }. */
async function member(s: Stack, project: string): Promise<(args: string[]) => Promise<Record<string, any>>> {
  const token = (await s.cliJson(['tokens', 'create', '--project', project, '--role', 'member'])).token as string;
  return async (args) => {
    const r = await s.cli([...args, '--json', '--token', token]);
    if (r.code !== 0) throw new Error(`trainyard ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, any>;
  };
}

/** The run user (made with useradd if missing) and a work dir it can reach; null, skipped, where it cannot be. */
async function runUser(t: Test): Promise<{ user: string; open: string } | null> {
  const user = 'trainyard-run';
  if (spawnSync('id', ['-u', user]).status !== 0) {
    const made = spawnSync('useradd', ['-r', '-M', '-s', '/usr/sbin/nologin', user]);
    if (made.error || made.status !== 0) { await t.skip(`cannot create the user ${user}: ${made.error?.message ?? made.stderr.toString()}`); return null; }
  }
  const open = tempDir('ty-outputs-');
  chmodSync(open, 0o755);
  return { user, open };
}

// The victim: writes its artifacts, then (so that the attacker's swapping overlaps the agent's reading)
// waits until the attacker says it is watching, and returns.
const victim = `
import os, time
class Main:
    def train(self, d):
        run = os.environ["TRAINYARD_RUN_ID"]
        os.makedirs("artifacts/sub", exist_ok=True)
        for i in range(20):
            open("artifacts/model-%02d.txt" % i, "w").write("victim %s %d" % (run, i))
        open("artifacts/sub/deep.txt", "w").write("victim %s deep" % run)
        open("artifacts/DONE", "w").write("victim %s done" % run)
        seen = os.path.join(os.environ["SYNC"], "seen-" + run)
        deadline = time.time() + 60
        while not os.path.exists(seen) and time.time() < deadline:
            time.sleep(0.01)
    def save(self):
        pass
`;

// The attacker (another project, same agent, the same uid): for every other attempt whose artifacts are
// DONE, says it is watching, then swaps that artifacts folder, with RENAME_EXCHANGE as fast as it can until
// the attempt's folder is gone, for one of two things (by turns): a link to the agent's work dir, or a
// folder of links named like the victim's files, each to the agent's credential (<work dir>/identity).
// Until the test says stop.
const attacker = `
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
class Main:
    def train(self, d):
        sync = os.environ["SYNC"]
        mine = os.path.dirname(os.getcwd())
        work = os.path.dirname(mine)
        swaps, turn = 0, 0
        deadline = time.time() + 280
        while not os.path.exists(os.path.join(sync, "stop")) and time.time() < deadline:
            for name in os.listdir(work):
                attempt = os.path.join(work, name)
                art = os.path.join(attempt, "package", "artifacts")
                other = os.path.join(attempt, "package", ".swap")
                if attempt == mine or not os.path.exists(os.path.join(art, "DONE")) or os.path.lexists(other):
                    continue
                run = name.rsplit("-a", 1)[0]
                try:
                    if turn % 2 == 0:
                        os.mkdir(other)
                        for n in os.listdir(art):
                            os.symlink(os.path.join(work, "identity"), os.path.join(other, n))
                    else:
                        os.symlink(work, other)
                except OSError:
                    continue
                turn += 1
                open(os.path.join(sync, "seen-" + run), "w").close()
                n = 0
                while os.path.isdir(attempt) and n < 5000000:
                    if libc.renameat2(-100, art.encode(), -100, other.encode(), 2) == 0:
                        n += 1
                swaps += n
                open(os.path.join(sync, "swaps-" + run), "w").write(str(n))
            time.sleep(0.002)
        print("swapped %d times" % swaps, flush=True)
    def save(self):
        pass
`;

t.test('a co-located run of another project swaps the victim\'s artifacts for a link to the agent\'s work dir: nothing of the agent\'s is uploaded', async (t) => {
  const setup = await runUser(t);
  if (!setup) return;
  const work = path.join(setup.open, 'work');
  mkdirSync(work);
  const sync = path.join(setup.open, 'sync');
  mkdirSync(sync);
  chmodSync(sync, 0o777);
  const s = await Stack.create(t, { agents: [{ name: 'a1', killGraceMs: 500, env: {
    // Runs share one uid (the agent's: --run-uids none --shared-uid 1, the single-tenant mode): the attacker
    // can reach the victim's folder, so this tests the agent's own reading. With run uids (the default for a
    // root agent) it could not even enter it (tenants.test.ts).
    TRAINYARD_RUN_UIDS: 'none', TRAINYARD_SHARED_UID: '1',
    TRAINYARD_WORK_DIR: work, TRAINYARD_VENV_DIR: path.join(setup.open, 'venvs'), TRAINYARD_MAX_RUNS: '2',
  } }] });
  const alpha = await member(s, 'alpha');
  const beta = await member(s, 'beta');
  await alpha(['package', 'push', writeTree(tempDir(), { 'train.py': victim }), '--name', 'victim']);
  await alpha(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'da']);
  await beta(['package', 'push', writeTree(tempDir(), { 'train.py': attacker }), '--name', 'attacker']);
  await beta(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'db']);
  const identity = readFileSync(path.join(work, 'identity'), 'utf8');
  t.ok(identity.length > 0, 'the agent keeps its credential in the work dir');

  const bad = (await beta(['run', 'train', '--package', 'attacker', '--dataset', 'db', '--env', `SYNC=${sync}`])).id as string;
  await s.waitForStatus(bad, ['Running'], 120_000);
  let swapped = 0;
  for (let i = 0; i < 6; i++) {
    const id = (await alpha(['run', 'train', '--package', 'victim', '--dataset', 'da', '--env', `SYNC=${sync}`])).id as string;
    const run = await s.waitForStatus(id, ended, 120_000);
    const swaps = Number(existsSync(path.join(sync, `swaps-${id}`)) ? readFileSync(path.join(sync, `swaps-${id}`), 'utf8') : 0);
    swapped += swaps;
    const keys = await s.objects(`runs/${id}/`);
    t.comment(`victim ${i + 1}: ${run.status} ${run.failure_reason ?? ''} (${swaps} swaps while the agent read; ${keys.length} objects)`);
    t.ok(run.status === 'Successful' || /leaves the run's folder|symbolic link|is a link, which is not followed|replaced|removed/.test(run.failure_reason ?? ''), `victim ${i + 1}: it succeeds, or fails saying its artifacts folder was swapped`);
    const artifacts = keys.filter((k) => k.includes('/artifacts/'));
    t.same(artifacts.filter((k) => !/\/artifacts\/(model-\d\d\.txt|sub\/deep\.txt|DONE)$/.test(k)), [], `victim ${i + 1}: no object but its own files`);
    for (const k of artifacts) {
      const text = await s.objectText(k);
      if (!text.startsWith(`victim ${id} `)) t.fail(`victim ${i + 1}: ${k} holds what the victim did not write: ${JSON.stringify(text.slice(0, 60))}`);
      if (text.includes(identity)) t.fail(`victim ${i + 1}: the agent's credential was uploaded as ${k}`);
    }
  }
  t.ok(swapped > 0, `the attacker swapped the folder while the agent read it (${swapped} swaps)`);
  writeFileSync(path.join(sync, 'stop'), '');
  const badRun = await s.waitForStatus(bad, ended, 60_000);
  t.equal(badRun.status, 'Successful', 'the attacker\'s run ends');
});

// MODE=fifo: the result file becomes a FIFO and the process exits at once (the harness writes nothing
// more). MODE=fifo-sleep: the same, then it sleeps until killed. MODE=link: the result file becomes a link
// to /etc/shadow. Otherwise a normal run.
const fifo = `
import os, time
class Main:
    def train(self, d):
        mode = os.environ.get("MODE", "")
        result = os.path.join(os.path.dirname(os.getcwd()), "result", "result.json")
        if mode.startswith("fifo"):
            os.unlink(result)
            os.mkfifo(result)
            if mode == "fifo-sleep":
                open(os.environ["MARK"], "w").close()
                time.sleep(300)
            os._exit(0)
        if mode == "link":
            os.unlink(result)
            os.symlink("/etc/shadow", result)
            os._exit(0)
    def save(self):
        pass
`;

t.test('a result file replaced by a FIFO fails the run with a reason; four of them, a kill and a normal run all end', async (t) => {
  const grace = 500;
  const s = await Stack.create(t, { agents: [{ name: 'a1', killGraceMs: grace, cpus: 8, env: { TRAINYARD_MAX_RUNS: '8' } }] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': fifo }), '--name', 'fifo']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const submit = async (mode: string) => (await s.cliJson(['run', 'train', '--package', 'fifo', '--dataset', 'd', '--env', `MODE=${mode}`])).id as string;

  // Four at once: today each held a thread of libuv's pool of four in open(), for ever.
  const fifos = await Promise.all([1, 2, 3, 4].map(() => submit('fifo')));
  for (const [i, id] of fifos.entries()) {
    const run = await s.waitForStatus(id, ended, 90_000);
    t.equal(run.status, 'Failed', `FIFO run ${i + 1} fails`);
    t.match(run.failure_reason, /result file was refused: .* is a FIFO, not a regular file/, 'saying why');
  }
  const mark = path.join(tempDir(), 'fifo-made');
  const sleeper = (await s.cliJson(['run', 'train', '--package', 'fifo', '--dataset', 'd', '--env', 'MODE=fifo-sleep', '--env', `MARK=${mark}`])).id as string;
  for (let i = 0; i < 1200 && !existsSync(mark); i++) await new Promise((r) => setTimeout(r, 100));
  t.ok(existsSync(mark), 'the sleeping run made its result file a FIFO');
  await s.cliJson(['run', 'kill', sleeper]);
  // Bounded by the grace period plus a few seconds: the test's wait, not a timing claim.
  const killed = await s.waitForStatus(sleeper, ended, grace + 10_000);
  t.equal(killed.status, 'Killed', 'run kill ends a run that left a FIFO behind');

  const link = await submit('link');
  const linked = await s.waitForStatus(link, ended, 90_000);
  t.equal(linked.status, 'Failed', 'a result file that is a link to /etc/shadow fails the run');
  t.match(linked.failure_reason, /result file was refused: .* is a symbolic link/, 'refused, not read');
  t.notMatch(JSON.stringify(linked), /root:/, 'nothing of /etc/shadow in the run');

  const normal = await submit('');
  const ok = await s.waitForStatus(normal, ended, 90_000);
  t.equal(ok.status, 'Successful', `the agent still serves other runs (${ok.failure_reason ?? ''})`);
});

// MODE=big: one file of SIZE_MB (RLIMIT_FSIZE stops it). MODE=many: SIZE_MB files of 1 MiB each, then
// return. MODE=hold: the same files, then sleep (the agent's measure ends it). MODE=out: SIZE_MB of
// artifacts, random (so nothing compresses them away).
const filler = `
import os, time
class Main:
    def train(self, d):
        mode, mb = os.environ["MODE"], int(os.environ["SIZE_MB"])
        os.makedirs("artifacts", exist_ok=True)
        if mode == "big":
            with open("artifacts/big.bin", "wb") as f:
                for _ in range(mb):
                    f.write(b"x" * 1048576)
        elif mode in ("many", "hold"):
            for i in range(mb):
                with open("artifacts/part-%03d.bin" % i, "wb") as f:
                    f.write(b"y" * 1048576)
            if mode == "hold":
                print("written", flush=True)
                time.sleep(300)
        elif mode == "out":
            with open("artifacts/weights.bin", "wb") as f:
                f.write(os.urandom(mb * 1048576))
    def save(self):
        pass
`;

t.test('--run-disk-mb: a run writing past it fails "disk limit" and the agent goes on; --max-output-mb: nothing is uploaded', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1', killGraceMs: 500, env: { TRAINYARD_RUN_DISK_MB: '8', TRAINYARD_MAX_OUTPUT_MB: '2' } }] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': filler }), '--name', 'filler']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const run = async (mode: string, mb: number) => {
    const id = (await s.cliJson(['run', 'train', '--package', 'filler', '--dataset', 'd', '--env', `MODE=${mode}`, '--env', `SIZE_MB=${mb}`])).id as string;
    return { id, ...(await s.waitForStatus(id, ended, 120_000)) };
  };
  for (const [mode, what] of [['big', 'one file past the limit'], ['many', 'many files, each under it'], ['hold', 'many files, then waiting']] as const) {
    const r = await run(mode, 20);
    t.equal(r.status, 'Failed', `${what}: the run fails`);
    t.match(r.failure_reason, /^disk limit: .*--run-disk-mb of 8 MiB/, 'saying "disk limit"');
    t.same(await s.objects(`runs/${r.id}/`), [], 'nothing was uploaded');
  }
  const over = await run('out', 3);
  t.equal(over.status, 'Failed', 'outputs over --max-output-mb: the run fails');
  t.match(over.failure_reason, /^output limit: the outputs come to 3\.\d MiB, over the agent's --max-output-mb of 2 MiB; nothing was uploaded/);
  t.same(await s.objects(`runs/${over.id}/`), [], 'nothing under its attempt in the bucket');
  const fine = await run('out', 1);
  t.equal(fine.status, 'Successful', `the agent goes on: a run within both limits succeeds (${fine.failure_reason ?? ''})`);
  t.ok((await s.objects(`runs/${fine.id}/`)).includes(`runs/${fine.id}/attempt-1/artifacts/weights.bin`), 'with its outputs');
});
