// Issue 22, "GPUs never idle between runs": while a run trains, its agent prepares the run queued for it
// next (agent/prepare-next.ts, AgentLink.PeekNextRun): the data made local in a staged folder, the package
// unpacked, the venv built. First a real 1-GPU agent: run 2 is queued while run 1 trains (held by a gate),
// and all of run 2's preparation is done before run 1 ends; run 2's own make-local then takes the staged
// folder, its venv and package are cache hits. Then the rules: an agent learns only runs it could be
// placed (a project's --agents binding, its own --accept-projects, impersonation), and the keys that come
// with an answer only read that run's package and data.
import t from 'tap';
import path from 'node:path';
import * as Minio from 'minio';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { Gate, gatedTrainPy, until, waitForAttempt } from '../helpers/packages.js';
import { wheel } from '../helpers/wheel.js';
import { RunStatus } from '../../shared/run-states.js';
import { holdingStore } from '../helpers/holding-store.js';
import { readdirSync } from 'node:fs';

const gpu = ['0, GPU-22222222, NVIDIA H100 80GB HBM3, 81559'];

t.test('run 2, queued while run 1 trains on a 1-GPU agent, is prepared before run 1 ends', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const agent = await s.startAgent('gpubox', { gpus: gpu });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': gatedTrainPy }), '--name', 'first']);
  // Run 2's package needs a venv of its own (a local wheel): nothing of run 1's serves it.
  const pkg = tempDir();
  wheel(path.join(pkg, 'wheels'), 'helper22', '0.1', { 'helper22.py': 'WHO = "helper22"\n' });
  writeTree(pkg, {
    'requirements.txt': '--no-index\n--find-links wheels\nhelper22\n',
    'train.py': 'import helper22, os\nclass Main:\n    def train(self, d):\n        print("files", sorted(os.listdir(d)), helper22.WHO, flush=True)\n    def save(self):\n        pass\n',
  });
  await s.cliJson(['package', 'push', pkg, '--name', 'second']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'a.bin': 'a'.repeat(100_000), 'sub/b.bin': 'b'.repeat(50_000) }), '--name', 'd2']);

  const gate = new Gate();
  const first = await s.cliJson(['run', 'train', '--package', 'first', '--dataset', 'd', '--gpu', '--env', `GATE=${gate.file}`]);
  await waitForAttempt(s, first.id, 1, 'Running');
  const second = await s.cliJson(['run', 'train', '--package', 'second', '--dataset', 'd2', '--gpu']);
  const prepared = await agent.waitFor((l) => l.msg === 'next run prepared: data staged, package unpacked, venv ready' && l.run === second.id, 120_000);
  t.ok(prepared, 'the agent prepared run 2');
  const [r1] = await s.query('SELECT status, released_at FROM runs WHERE id = $1', [first.id]);
  t.equal(r1!.status, 'Running', 'while run 1 still trains');
  t.equal(r1!.released_at, null, 'and still holds the GPU');
  const [r2] = await s.query('SELECT status, agent FROM runs WHERE id = $1', [second.id]);
  t.equal(r2!.agent, null, 'run 2 is still queued: preparing it placed nothing');

  gate.open();
  t.equal((await s.waitForStatus(first.id, ['Successful', 'Failed', 'Killed'])).status, 'Successful', 'run 1 succeeds');
  const done = await s.waitForStatus(second.id, ['Successful', 'Failed', 'Killed']);
  t.equal(done.status, 'Successful', `run 2 succeeds ${done.failure_reason ?? ''}`);
  const lines = (await s.query('SELECT text FROM run_logs WHERE run_id = $1 ORDER BY seq', [second.id])).map((r) => r.text as string);
  t.ok(lines.some((l) => /dataset d2: 2 files, 150000 bytes made local \(prepared while the run before it trained\)/.test(l)), 'its make-local took the staged folder');
  t.ok(lines.some((l) => /^\[trainyard\] reusing environment /.test(l)), 'its venv was a cache hit');
  t.ok(lines.some((l) => /^\[trainyard\] package second .* from this agent's cache/.test(l)), 'its package came from the package cache');
  t.ok(lines.some((l) => l.includes("files ['a.bin', 'sub'] helper22")), 'its train() saw the data and the venv\'s wheel');
  // The claim found the version ready (package unpacked, venv built): no Packaging step at all.
  const events = (await s.query('SELECT status FROM run_events WHERE run_id = $1 ORDER BY id', [second.id])).map((r) => r.status as string);
  t.notOk(events.includes('Packaging'), `run 2 went from its claim straight to Running (${events.join(' → ')})`);
});

t.test('a preparation is called off when another run is claimed, and leaves nothing staged', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  // The agent reads the store through a proxy that holds run 2's dataset reads: its preparation hangs there.
  const store = await holdingStore(t, s.minioEndpoint);
  const agent = await s.startAgent('gpubox', { gpus: gpu, env: { TRAINYARD_MINIO_ENDPOINT: store.endpoint } });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': gatedTrainPy }), '--name', 'gated']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'y.csv': '2\n' }), '--name', 'held']);
  const gate = new Gate();
  const first = await s.cliJson(['run', 'train', '--package', 'gated', '--dataset', 'd', '--gpu', '--env', `GATE=${gate.file}`]);
  await waitForAttempt(s, first.id, 1, 'Running');
  store.hold((req) => req.method === 'GET' && (req.url ?? '').includes('/datasets/held/'));
  const second = await s.cliJson(['run', 'train', '--package', 'gated', '--dataset', 'held', '--gpu', '--env', `GATE=${gate.file}`]);
  await agent.waitFor((l) => l.msg === 'preparing the next run while this one trains' && l.run === second.id, 120_000);
  await until('the preparation\'s read to be held', async () => store.held > 0);
  // A run without a GPU is placed beside run 1 at once: its claim calls the preparation off.
  const third = await s.cliJson(['run', 'train', '--package', 'gated', '--dataset', 'd', '--env', `GATE=${gate.file}`]);
  const off = await agent.waitFor((l) => l.msg === 'preparation of the next run called off' && l.run === second.id, 60_000);
  t.match(String(off.why), new RegExp(`run ${third.id} was claimed`), 'called off by the claim of run 3');
  t.same(readdirSync(path.join(s.dir, 'work-gpubox', 'data-staged')), [], 'nothing is left staged');
  store.letGo();
  gate.open();
  for (const r of [first, second, third]) t.equal((await s.waitForStatus(r.id, ['Successful', 'Failed', 'Killed'])).status, 'Successful', `${r.id} succeeds`);
});

t.test('an agent learns only runs it could be placed, and the keys only read that run\'s inputs', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  t.equal((await s.cli(['projects', 'set', 'alpha', '--agents', 'pool=a'])).code, 0, 'alpha is bound to pool=a');
  const token = (await s.cliJson(['tokens', 'create', '--project', 'alpha', '--role', 'member'])).token as string;
  const asAlpha = (args: string[]) => s.cliJson([...args, '--token', token]);
  await asAlpha(['package', 'push', writeTree(tempDir(), { 'train.py': gatedTrainPy }), '--name', 'pa']);
  await asAlpha(['dataset', 'push', writeTree(tempDir(), { 'x.csv': 'alpha\n' }), '--name', 'da']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'y.csv': 'another team\n' }), '--name', 'other']);

  // a1 (pool=a, one GPU) runs alpha's first run; the second waits for that GPU.
  const a1 = await FakeAgent.start(s, 'a1', { gpus: 1, labels: { pool: 'a' } });
  t.teardown(() => a1.close());
  await asAlpha(['run', 'train', '--package', 'pa', '--dataset', 'da', '--gpu']);
  await a1.nextDispatch();
  const queued = await asAlpha(['run', 'train', '--package', 'pa', '--dataset', 'da', '--gpu']);
  await until('the second run to wait', async () => (await s.query('SELECT 1 FROM runs WHERE id = $1 AND status = $2', [queued.id, RunStatus.Waiting])).length > 0);
  // Agents the run can never be placed on, each with a free GPU: outside the binding, and inside it but
  // accepting only another project's runs.
  const b1 = await FakeAgent.start(s, 'b1', { gpus: 1, labels: { pool: 'b' } });
  const a2 = await FakeAgent.start(s, 'a2', { gpus: 1, labels: { pool: 'a' }, acceptProjects: ['beta'] });
  t.teardown(() => b1.close());
  t.teardown(() => a2.close());

  type Next = { found: boolean; run_id: string; package_object_key: string; dataset_prefix: string; bucket: string; storage?: { access_key: string; secret_key: string; session_token: string } | null };
  const mine = await a1.call<Next>('PeekNextRun', { agent: 'a1' });
  t.equal(mine.found, true, 'the agent the run waits for learns it');
  t.equal(mine.run_id, queued.id, 'the queued run');
  t.ok(mine.storage?.session_token, 'with temporary keys');
  t.notOk((await b1.call<Next>('PeekNextRun', { agent: 'b1' })).found, 'an agent outside the project\'s binding learns nothing');
  t.notOk((await a2.call<Next>('PeekNextRun', { agent: 'a2' })).found, 'an agent that does not accept the project learns nothing');
  const forged = await b1.call('PeekNextRun', { agent: 'a1' }).then(() => null, (e: { code?: number; details?: string }) => e);
  t.equal(forged?.code, 7, 'asking in another agent\'s name is PERMISSION_DENIED');
  const anonymous = await b1.call('PeekNextRun', { agent: 'b1' }, { auth: {} }).then(() => null, (e: { code?: number }) => e);
  t.equal(anonymous?.code, 16, 'without a credential: UNAUTHENTICATED');
  const again = await a1.call<Next>('PeekNextRun', { agent: 'a1', prepared_run_id: queued.id });
  t.equal(again.run_id, queued.id, 'asked again having prepared it: the same run');
  t.notOk(again.storage, 'and no keys issued again');

  // The keys read the run's package and data, and nothing else; they write nothing.
  const u = new URL(s.minioEndpoint);
  const c = mine.storage!;
  const m = new Minio.Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey: c.access_key, secretKey: c.secret_key, sessionToken: c.session_token, region: 'us-east-1' });
  const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? 'error');
  t.equal(await code(m.statObject(mine.bucket, mine.package_object_key)), 'ok', 'they read the package zip');
  t.equal(await code(m.statObject(mine.bucket, `${mine.dataset_prefix}x.csv`)), 'ok', 'and the dataset');
  const [otherKey] = await s.objects('datasets/other/');
  t.equal(await code(m.statObject(mine.bucket, otherKey!)), 'AccessDenied', 'not another dataset');
  t.equal(await code(m.putObject(mine.bucket, `${mine.dataset_prefix}planted.csv`, Buffer.from('x'))), 'AccessDenied', 'and write nothing, not even in its dataset');
  t.equal(await code(m.putObject(mine.bucket, `runs/${queued.id}/attempt-1/x`, Buffer.from('x'))), 'AccessDenied', 'nor in the run\'s attempt prefix');
  const [row] = await s.query('SELECT agent, status FROM runs WHERE id = $1', [queued.id]);
  t.same(row, { agent: null, status: RunStatus.Waiting }, 'asking placed nothing');
});
