// Issue 23, metrics from the run: train.py's `import trainyard` → the agent → AppendMetrics → Postgres →
// `trainyard run metrics`. What the package logged comes back exactly (CSV), live with --follow, once and
// in order across an agent kill and a resumed attempt, and never to another project's token.
import t from 'tap';
import { existsSync } from 'node:fs';
import { Stack, fakeGpus, tempDir, writeTree } from '../helpers/stack.js';
import { Gate, until, waitForAttempt } from '../helpers/packages.js';

/**
 * Logs `loss` at explicit steps, `acc` every 10 steps, `lr` without a step, a NaN and a summary; writes
 * what it logged (name, step or null, value) to artifacts/logged.json, so the test compares with the
 * package's own record, not with a copy of its formulas. With $GATE it logs the first half, then waits.
 */
const loggingTrainPy = `
import json, math, os, time
import trainyard
class Main:
    def train(self, d):
        logged = []
        def log(step, **kv):
            trainyard.log(step=step, **kv)
            for k, v in kv.items():
                logged.append([k, step, None if v != v else v])  # JSON has no NaN: null
        n = int(os.environ.get("POINTS", "200"))
        gate = os.environ.get("GATE")
        for i in range(n):
            if gate and i == n // 2:
                deadline = time.time() + 300
                while not os.path.exists(gate) and time.time() < deadline:
                    time.sleep(0.05)
            log(i, loss=1.0 / (i + 1) + (i % 7) * 1e-3)
            if i % 10 == 0:
                log(i, acc=min(1.0, i / n + 0.123456789012345))
            log(None, lr=0.1 * 0.99 ** i)
        log(n, loss=float("nan"))
        trainyard.summary(best_acc=0.987654321, final_loss=1.0 / n)
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        with open(os.path.join(os.environ["artifacts_directory"], "logged.json"), "w") as fh:
            json.dump(logged, fh)
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;

interface Row { name: string; step: number; value: number; attempt: number }

function parseCsv(text: string): Row[] {
  const [header, ...lines] = text.trim().split('\n');
  if (header !== 'name,step,value,attempt,time') throw new Error(`unexpected CSV header: ${header}`);
  return lines.map((l) => {
    const [name, step, value, attempt] = l.split(',');
    return { name: name!, step: Number(step), value: Number(value), attempt: Number(attempt) };
  });
}

/** What the package logged, with the steps the rule gives (a step-less point: the name's next step). */
function expected(logged: [string, number | null, number | null][]): { name: string; step: number; value: number }[] {
  const last = new Map<string, number>();
  const out = logged.map(([name, step, value]) => {
    const s = step ?? (last.get(name) ?? -1) + 1;
    last.set(name, s);
    return { name, step: s, value: value ?? NaN };
  });
  return out.sort((a, b) => (a.name === b.name ? a.step - b.step : a.name < b.name ? -1 : 1));
}

const same = (a: number, b: number) => Object.is(a, b) || a === b;

t.test('run metrics --csv equals what the package logged; --follow prints it live; run get shows the summary', async (t) => {
  const s = await Stack.create(t);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': loggingTrainPy }), '--name', 'logger']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const gate = new Gate();
  const { id } = await s.cliJson(['run', 'train', '--package', 'logger', '--dataset', 'd', '--env', `GATE=${gate.file}`, '--env', 'POINTS=200']);
  // The first half is stored while the run waits: a reader started now sees the rest arrive.
  await until('the first half of the points', async () => {
    const [r] = await s.query(`SELECT points FROM run_metric_series sr WHERE run_id = $1 AND name = 'loss'`, [id]);
    return r && Number(r.points) === 100;
  });
  const whileRunning = await s.cli(['run', 'metrics', id, '--name', 'loss', '--json']);
  t.equal(whileRunning.code, 0, whileRunning.stderr);
  t.match(JSON.parse(whileRunning.stdout), { live: true, series: [{ name: 'loss', total_points: 100 }] }, 'while it runs: half stored, live');
  const following = s.cli(['run', 'metrics', id, '--follow', '--csv'], { timeoutMs: 180_000 });
  // The follower has read the first half before the rest is logged (it prints the header first).
  await new Promise((r) => setTimeout(r, 1500));
  gate.open();
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', String(run.failure_reason));

  const logged = JSON.parse(await s.objectText(`runs/${id}/attempt-1/artifacts/logged.json`)) as [string, number | null, number | null][];
  const want = expected(logged);
  const csv = await s.cli(['run', 'metrics', id, '--csv']);
  t.equal(csv.code, 0, csv.stderr);
  const all = parseCsv(csv.stdout);
  // The agent's samples of the run (sys/..., every 5 s) come beside what train.py logged.
  const got = all.filter((r) => !r.name.startsWith('sys/'));
  t.equal(got.length, want.length, `every logged point is there once (${want.length})`);
  t.ok(want.every((w, i) => got[i]?.name === w.name && got[i]?.step === w.step && same(got[i]!.value, w.value)), 'name, step and value equal what train.py logged, NaN included');
  t.ok(got.every((r) => r.attempt === 1), 'all from attempt 1');

  const followed = await following;
  t.equal(followed.code, 0, followed.stderr);
  const live = parseCsv(followed.stdout).sort((a, b) => (a.name === b.name ? a.step - b.step : a.name < b.name ? -1 : 1));
  t.same(live.map((r) => `${r.name}:${r.step}`), all.map((r) => `${r.name}:${r.step}`), '--follow printed every point once, and ended with the run');

  const one = parseCsv((await s.cli(['run', 'metrics', id, '--name', 'acc', '--csv'])).stdout);
  t.same(one.map((r) => r.step), want.filter((w) => w.name === 'acc').map((w) => w.step), '--name: only that series');

  const table = await s.cli(['run', 'metrics', id]);
  t.match(table.stdout, /loss\s+201\s+200\s+NaN/, 'the table: points, last step, last value');
  t.match(table.stdout, /best_acc\s+0\.987654321/, 'and the summary');
  const get = await s.cli(['run', 'get', id]);
  t.match(get.stdout, /metrics summary[\s\S]*best_acc\s+0\.987654321/, 'run get shows the summary');
  t.match((await s.cliJson(['run', 'get', id])).metrics_summary, { best_acc: 0.987654321, final_loss: 1 / 200 }, 'run get --json too');

  // Downsampled on read: first, last, lowest and highest of each bucket; never more than asked.
  const api = s.api();
  t.teardown(() => api.close());
  const small = await api.getRunMetrics({ run_id: id, names: ['lr'], max_points: 40 });
  const lr = small.series[0]!;
  t.ok(lr.downsampled && lr.steps.length <= 40 && lr.steps.length >= 20, `lr downsampled to ${lr.steps.length} points`);
  t.equal(Number(lr.steps[0]), 0, 'the first point kept');
  t.equal(Number(lr.steps.at(-1)), 199, 'the last point kept');
  t.equal(Math.min(...lr.values), Math.min(...want.filter((w) => w.name === 'lr').map((w) => w.value)), 'the lowest value kept');
  const bad = await api.getRunMetrics({ run_id: id, max_points: 3 }).catch((e: Error) => e);
  t.match(String(bad), /max_points must be 0 \(every point\) or at least 8/, 'a uselessly small max_points is refused');
  const both = await s.cli(['run', 'metrics', id, '--csv', '--json']);
  t.not(both.code, 0, '--csv with --json is refused');
  t.match(both.stderr, /give one/);
});

t.test('every point once and in order across an agent kill and a resumed attempt', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'doomed' }] });
  // Attempt 1 logs loss at steps 1..40 and lr 40 times (no step), then hangs; attempt 2 resumes from its
  // "checkpoint" at step 31 (steps 31..40 again: already stored) and logs to 100, and lr 60 more times.
  const resumeTrainPy = `
import os, time
import trainyard
class Main:
    def train(self, d):
        if os.environ["TRAINYARD_ATTEMPT"] == "1":
            for i in range(1, 41):
                trainyard.log(step=i, loss=float(i))
                trainyard.log(lr=1000.0 + i)
            gate = os.environ["GATE"]
            deadline = time.time() + 300
            while not os.path.exists(gate) and time.time() < deadline:
                time.sleep(0.05)
            return
        for i in range(31, 101):
            trainyard.log(step=i, loss=float(i) + 0.5)
        for i in range(60):
            trainyard.log(lr=2000.0 + i)
    def save(self):
        open("model.txt", "w").write("ok")
`;
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': resumeTrainPy }), '--name', 'resumer']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  // Attempt 1's train.py outlives its agent (it is not the agent's child any more): the gate ends it.
  const gate = new Gate();
  t.teardown(() => gate.open());
  const { id } = await s.cliJson(['run', 'train', '--package', 'resumer', '--dataset', 'd', '--env', `GATE=${gate.file}`]);
  await waitForAttempt(s, id, 1);
  await until('attempt 1\'s points stored', async () => {
    const rows = await s.query(`SELECT name, points FROM run_metric_series WHERE run_id = $1 AND name IN ('loss', 'lr') ORDER BY name`, [id]);
    return rows.length === 2 && rows.every((r) => Number(r.points) === 40);
  });
  await s.daemons.find((d) => d.name === 'doomed')!.kill9();
  await s.startAgent('rescuer');
  await waitForAttempt(s, id, 2, 'Running').catch(() => null);
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', String(run.failure_reason));
  t.equal(run.attempt, 2, 'it ended on attempt 2');

  const rows = parseCsv((await s.cli(['run', 'metrics', id, '--csv'])).stdout);
  const loss = rows.filter((r) => r.name === 'loss');
  t.same(loss.map((r) => r.step), Array.from({ length: 100 }, (_, i) => i + 1), 'loss: steps 1..100, each once, no gap');
  t.ok(loss.every((r) => r.step <= 40 ? r.attempt === 1 && r.value === r.step : r.attempt === 2 && r.value === r.step + 0.5),
    'steps 1..40 from attempt 1; the resumed attempt\'s repeats of 31..40 were not stored, 41..100 are its own');
  const lr = rows.filter((r) => r.name === 'lr');
  t.same(lr.map((r) => r.step), Array.from({ length: 100 }, (_, i) => i), 'lr (no step given): 0..99, attempt 2 continues where attempt 1 ended');
  t.same(lr.map((r) => r.value), [...Array.from({ length: 40 }, (_, i) => 1001 + i), ...Array.from({ length: 60 }, (_, i) => 2000 + i)], 'in the order logged');
});

t.test('another project\'s metrics are NOT_FOUND, as a run that does not exist', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const token = async (project: string, role: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const [alpha, beta] = [await token('alpha', 'reader'), await token('beta', 'member')];
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': loggingTrainPy }), '--name', 'logger', '--token', beta]);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd', '--token', beta]);
  const { id } = await s.cliJson(['run', 'train', '--package', 'logger', '--dataset', 'd', '--token', beta]);
  const asA = await s.cli(['run', 'metrics', id, '--csv', '--token', alpha]);
  const missing = await s.cli(['run', 'metrics', 'run_nosuchrun0000000', '--csv', '--token', alpha]);
  t.equal(asA.code, 1, 'project alpha\'s token: refused');
  t.match(asA.stderr, /not found/);
  t.equal(asA.stderr.replaceAll(id, 'X'), missing.stderr.replaceAll('run_nosuchrun0000000', 'X'), 'the same answer as for a run that does not exist');
  t.notMatch(asA.stderr, /beta/, 'not naming project beta');
  const asB = await s.cli(['run', 'metrics', id, '--json', '--token', beta]);
  t.equal(asB.code, 0, 'beta\'s own token reads them');
  t.match(JSON.parse(asB.stdout), { run_id: id, series: [], live: true });
});

t.test('system metrics: the run\'s own GPU and cgroup, sampled by the agent; train.py cannot write sys/ series', async (t) => {
  const s = await Stack.create(t, { agents: [{ gpus: fakeGpus(2, 'sys'), env: { TRAINYARD_SYS_SAMPLE_SECONDS: '1', FAKE_NVIDIA_SMI_UTIL: '61', FAKE_NVIDIA_SMI_MEM_USED: '2048' } }] });
  // Waits for the gate (the test opens it once samples are stored); first it tries to forge a GPU sample by
  // writing the metrics file itself, and to log a sys/ name through the module (refused).
  const sysTrainPy = `
import json, os, time
import trainyard
class Main:
    def train(self, d):
        with open(os.environ["TRAINYARD_METRICS_FILE"], "a") as fh:
            fh.write(json.dumps([["sys/gpu0_util_pct", None, 99.0, time.time()], ["loss", 0, 1.0, time.time()]]) + "\\n")
        try:
            trainyard.log(**{"sys/gpu0_util_pct": 99.0})
            print("sys name accepted", flush=True)
        except ValueError as e:
            print("refused: %s" % e, flush=True)
        gate = os.environ["GATE"]
        deadline = time.time() + 300
        while not os.path.exists(gate) and time.time() < deadline:
            sum(i * i for i in range(20000))
    def save(self):
        open("model.txt", "w").write("ok")
`;
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': sysTrainPy }), '--name', 'sys']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const gate = new Gate();
  t.teardown(() => gate.open());
  const { id } = await s.cliJson(['run', 'train', '--package', 'sys', '--dataset', 'd', '--gpus', '1', '--env', `GATE=${gate.file}`]);
  await until('three GPU samples', async () => {
    const [r] = await s.query(`SELECT points FROM run_metric_series WHERE run_id = $1 AND name = 'sys/gpu0_util_pct'`, [id]);
    return r && Number(r.points) >= 3;
  });
  gate.open();
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', String(run.failure_reason));
  const m = await s.cliJson(['run', 'metrics', id]);
  const byName = new Map((m.series as { name: string; values: number[]; steps: number[] }[]).map((x) => [x.name, x]));
  t.ok(byName.get('sys/gpu0_util_pct')!.values.every((v) => v === 61), 'the run\'s GPU: its utilisation as nvidia-smi reports it, never the forged 99');
  t.ok(byName.get('sys/gpu0_mem_mb')!.values.every((v) => v === 2048), 'and its memory used');
  t.notOk(byName.has('sys/gpu1_util_pct'), 'only the GPUs the run was given');
  const steps = byName.get('sys/gpu0_util_pct')!.steps;
  t.same(steps, steps.map((_, i) => i), 'samples on their own step axis, 0, 1, 2, ...');
  t.same(byName.get('loss')?.values, [1], 'the run\'s own point in the same forged line is kept');
  const logs = (await s.cli(['run', 'logs', id])).stdout;
  t.match(logs, /refused: trainyard: 'sys\/gpu0_util_pct' is not a metric name/, 'the module refuses a sys/ name');
  t.match(logs, /metrics: dropped a point that is not \[name, step, value, time\]/, 'the agent drops a forged one and says so in the run\'s log');
  if (existsSync('/sys/fs/cgroup/unified/cgroup.procs') || existsSync('/sys/fs/cgroup/cgroup.procs')) {
    t.ok(byName.get('sys/cpu_pct')?.values.some((v) => v > 0), 'the run\'s cgroup CPU, busy while it computed');
  }
});
