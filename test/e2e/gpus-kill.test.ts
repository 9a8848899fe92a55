// GPUs as a fake nvidia-smi reports them: exact assignment through CUDA_VISIBLE_DEVICES, no GPU given
// twice, waiting when none is free; kill and timeout end the whole process group.
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const sleeper = `
import os, json, time, subprocess
class Main:
    def train(self, d):
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        with open(os.path.join(os.environ["artifacts_directory"], "env.json"), "w") as fh:
            json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "order": os.environ.get("CUDA_DEVICE_ORDER")}, fh)
        pidfile = os.environ.get("PIDFILE")
        if pidfile:
            child = subprocess.Popen(["sleep", "300"])
            with open(pidfile, "w") as fh:
                fh.write(str(child.pid))
        print("sleeping", flush=True)
        time.sleep(float(os.environ.get("SLEEP", "0")))
        # A gate the test opens, so "still running" does not depend on timing.
        gate = os.environ.get("GATE")
        deadline = time.time() + 120
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.1)
    def save(self):
        pass
`;

const gpus = ['0, GPU-11111111, NVIDIA H100 80GB HBM3, 81559', '1, GPU-22222222, NVIDIA H100 80GB HBM3, 81559'];

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

t.test('GPU runs get distinct GPUs, and wait when none is free', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'gpubox', gpus }] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': sleeper }), '--name', 'sleeper']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);

  const agents = await s.cliJson<any[]>(['agents']);
  t.same(agents[0].gpus.map((g: any) => [g.index, g.uuid, g.name, Number(g.memory_mb)]), [
    [0, 'GPU-11111111', 'NVIDIA H100 80GB HBM3', 81559], [1, 'GPU-22222222', 'NVIDIA H100 80GB HBM3', 81559],
  ], 'the agent advertises what nvidia-smi reported');

  const gate = path.join(tempDir(), 'open');
  const submit = async () => (await s.cliJson(['run', 'train', '--package', 'sleeper', '--dataset', 'd', '--gpu', '--env', `GATE=${gate}`])).id as string;
  const a = await submit();
  const b = await submit();
  await s.waitForStatus(a, ['Running']);
  await s.waitForStatus(b, ['Running']);
  const c = await submit();
  const waiting = await s.waitForStatus(c, ['Waiting for resources']);
  t.match(waiting.status_detail, /waiting for a free agent with 1 GPU/);

  const held = await s.cliJson<any[]>(['agents']);
  t.same(held[0].gpus.map((g: any) => g.run_id).sort(), [a, b].sort(), 'agents shows which run holds each GPU');
  writeFileSync(gate, '');

  const [ra, rb, rc] = await Promise.all([a, b, c].map((id) => s.waitForStatus(id, ['Successful', 'Failed'])));
  t.equal(ra!.status, 'Successful');
  t.equal(rb!.status, 'Successful');
  t.equal(rc!.status, 'Successful', 'the waiting run ran once a GPU was free');
  const cudaOf = async (id: string) => JSON.parse(await s.objectText(`runs/${id}/attempt-1/artifacts/env.json`)).cuda as string;
  const seen = [await cudaOf(a), await cudaOf(b)].sort();
  t.equal(JSON.parse(await s.objectText(`runs/${a}/attempt-1/artifacts/env.json`)).order, 'PCI_BUS_ID', 'CUDA_DEVICE_ORDER=PCI_BUS_ID, so UUIDs and indices name the same GPUs as nvidia-smi');
  t.same(seen, ['GPU-11111111', 'GPU-22222222'], 'each concurrent run saw exactly its own GPU, by UUID, in CUDA_VISIBLE_DEVICES');
  t.same([...ra!.gpu_indices, ...rb!.gpu_indices].sort(), [0, 1]);
  // Each run's lineage names the GPU it had, as nvidia-smi reported it: index, name and UUID.
  const fake = { 0: 'GPU-11111111', 1: 'GPU-22222222' } as Record<number, string>;
  for (const r of [ra!, rb!]) {
    const [index] = r.gpu_indices as number[];
    t.strictSame(r.lineage?.agent, { name: 'gpubox', gpus: [{ index, name: 'NVIDIA H100 80GB HBM3', uuid: fake[index!] }] }, `run ${r.id}'s lineage: the agent and GPU ${index}, by name and UUID`);
  }
  t.same(await s.query('SELECT * FROM gpu_leases'), [], 'every GPU lease is released at the end');
});

t.test('kill: the process group dies, the run is Killed; a queued run killed never starts', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'onegpu', gpus: gpus.slice(0, 1), killGraceMs: 1000 }] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': sleeper }), '--name', 'sleeper']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const pidfile = path.join(tempDir(), 'child.pid');
  const running = (await s.cliJson(['run', 'train', '--package', 'sleeper', '--dataset', 'd', '--gpu', '--env', 'SLEEP=300', '--env', `PIDFILE=${pidfile}`])).id as string;
  await s.waitForStatus(running, ['Running']);
  const queued = (await s.cliJson(['run', 'train', '--package', 'sleeper', '--dataset', 'd', '--gpu'])).id as string;
  await s.waitForStatus(queued, ['Waiting for resources']);

  const k1 = await s.cliJson(['run', 'kill', queued]);
  t.equal(k1.status, 'Killed', 'a run not yet placed is Killed at once');

  for (let i = 0; i < 100 && !existsSync(pidfile); i++) await new Promise((r) => setTimeout(r, 100));
  const childPid = Number(readFileSync(pidfile, 'utf8'));
  t.ok(alive(childPid), 'train.py\'s child is running');
  await s.cliJson(['run', 'kill', running]);
  const killed = await s.waitForStatus(running, ['Killed', 'Failed', 'Successful'], 30_000);
  t.equal(killed.status, 'Killed');
  for (let i = 0; i < 50 && alive(childPid); i++) await new Promise((r) => setTimeout(r, 100));
  t.notOk(alive(childPid), 'the child of train.py died with it');

  const [q] = await s.query('SELECT status, attempt FROM runs WHERE id = $1', [queued]);
  t.same(q, { status: 'Killed', attempt: 0 }, 'the killed queued run never got an attempt');
});

t.test('--timeout ends the run as Failed, "timed out"', async (t) => {
  const s = await Stack.create(t);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': sleeper }), '--name', 'sleeper']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const r = await s.cli(['run', 'train', '--package', 'sleeper', '--dataset', 'd', '--env', 'SLEEP=120', '--timeout', '2', '--wait', '--json']);
  t.equal(r.code, 1);
  const run = JSON.parse(r.stdout);
  t.equal(run.status, 'Failed');
  t.equal(run.failure_reason, 'timed out');
});

t.test('the same idempotency key gives the same run', async (t) => {
  const s = await Stack.create(t);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': sleeper }), '--name', 'sleeper']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const args = ['run', 'train', '--package', 'sleeper', '--dataset', 'd', '--idempotency-key', 'order-42'];
  const [one, two] = await Promise.all([s.cliJson(args), s.cliJson(args)]);
  const three = await s.cliJson(args);
  t.equal(one.id, two.id);
  t.equal(one.id, three.id);
  t.equal((await s.query('SELECT id FROM runs')).length, 1, 'one run row');
  await s.waitForStatus(one.id, ['Successful']);
});

t.test('an attempt whose end is reported is neither held nor stopped while it is torn down', async (t) => {
  const s = await Stack.create(t);
  // Files beside the package that are no output: the teardown after the end report removes them, which
  // takes long enough for several heartbeats (500 ms apart here) to be answered meanwhile.
  const litter = [
    'import os',
    'class Main:',
    '    def train(self, d):',
    '        scratch = os.path.join(os.path.dirname(os.getcwd()), "scratch")',
    '        os.makedirs(scratch)',
    '        for i in range(100000):',
    '            open(os.path.join(scratch, str(i)), "w").close()',
    '    def save(self):',
    '        pass',
    '',
  ].join('\n');
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': litter }), '--name', 'litter']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const agent = s.daemons.find((d) => d.name === 'agent1')!;
  const id = (await s.cliJson(['run', 'train', '--package', 'litter', '--dataset', 'd'])).id as string;
  const finished = await agent.waitFor((l) => l.run === id && l.msg === 'attempt finished', 120_000);
  t.equal(finished.status, 'Successful');
  const dir = path.join(s.dir, 'work-agent1', `${id}-a1`);
  const end = Date.now() + 60_000;
  while (existsSync(dir) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  t.notOk(existsSync(dir), 'the attempt\'s folder was removed');
  // The premise: heartbeats were answered while the reported attempt was torn down.
  const took = Date.now() - Date.parse(String(finished.time));
  t.ok(took >= 1000, `the teardown took ${took} ms: a heartbeat or more was answered in it (500 ms apart)`);
  const stopped = agent.lines.filter((l) => l.includes('"stopping attempt"') && l.includes(id));
  t.same(stopped, [], 'no "stopping attempt" (a cancel\'s "killed") for a run that ended Successful');
  t.equal((await s.waitForStatus(id, ['Successful'])).status, 'Successful');
});
