// Issue 22, "GPUs never idle between runs": a run's GPUs and slot go back when its processes have exited,
// not when its outputs are in the bucket. The agent talks to a store whose writes are held (a slow uplink
// made total: test/helpers/holding-store.ts): the first run's upload waits there, and the next run must
// get the GPU meanwhile, while the first stays Running (uploading) until its version commits.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { until } from '../helpers/packages.js';
import { holdingStore } from '../helpers/holding-store.js';

const quick = `
class Main:
    def train(self, d):
        print("training")
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;
const gpus = ['0, GPU-11111111, NVIDIA H100 80GB HBM3, 81559'];

t.test('a GPU freed at process exit is given to the next run before the first run\'s upload ends', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const store = await holdingStore(t, s.minioEndpoint);
  await s.startAgent('gpubox', { gpus, env: { TRAINYARD_MINIO_ENDPOINT: store.endpoint } });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);

  store.hold();
  const first = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--gpu']);
  await until('the first run\'s upload to reach the store (and be held there)', async () => store.held > 0, 120_000);
  const second = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--gpu']);
  // One GPU: the second run can only be placed on it once the first gave it back.
  const placed = await until('the second run to be placed on the GPU the first held', async () => {
    const [r] = await s.query('SELECT agent, gpu_indices, status FROM runs WHERE id = $1', [second.id]);
    return r?.agent === 'gpubox' ? r : undefined;
  }, 60_000);
  t.same(placed.gpu_indices, [0], 'the second run has GPU 0');
  t.ok(store.held > 0, 'the first run\'s upload is still held');
  const during = await s.cliJson(['run', 'get', first.id]);
  t.equal(during.status, 'Running', 'the first run is still Running while it uploads');
  t.match(during.status_detail, /uploading/, 'run get says it is uploading');
  // The second run may have exited and released it too by now (its upload is held as well): never the first's.
  t.same(await s.query('SELECT run_id FROM gpu_leases WHERE run_id <> $1', [second.id]), [], 'GPU 0 is leased to no run but the second');
  await until('the second run\'s train() to start', async () => (await s.query("SELECT 1 FROM run_events WHERE run_id = $1 AND detail LIKE 'train.py started%'", [second.id])).length > 0, 120_000);

  store.letGo();
  t.equal((await s.waitForStatus(first.id, ['Successful', 'Failed', 'Killed'], 120_000)).status, 'Successful', 'the first run succeeds once its upload ends');
  t.equal((await s.waitForStatus(second.id, ['Successful', 'Failed', 'Killed'], 120_000)).status, 'Successful', 'the second run succeeds');
  t.same(await s.query('SELECT * FROM gpu_leases'), [], 'no GPU lease is left');
  const violations = await s.query("SELECT kind, detail FROM invariant_violations WHERE kind IN ('orphan_gpu_lease', 'missing_gpu_lease')");
  t.same(violations, [], 'the sweep found no lease out of place');
});

t.test('an upload that fails after the GPU was released fails the run, and the GPU stays the next run\'s', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const store = await holdingStore(t, s.minioEndpoint);
  await s.startAgent('gpubox', { gpus, env: { TRAINYARD_MINIO_ENDPOINT: store.endpoint, TRAINYARD_UPLOAD_TIMEOUT_S: '3' } });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  store.hold();
  const first = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--gpu']);
  const run = await s.waitForStatus(first.id, ['Successful', 'Failed', 'Killed'], 120_000);
  t.equal(run.status, 'Failed', 'the run whose upload never ends fails');
  t.match(run.failure_reason, /did not finish within --upload-timeout/, 'saying why');
  t.ok(run.released_at, 'its GPUs had been released at its process exit');
  store.letGo();
  const next = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--gpu', '--wait']);
  t.equal(next.status, 'Successful', 'the next GPU run gets the GPU and succeeds');
  t.same(await s.query('SELECT * FROM gpu_leases'), [], 'no GPU lease is left');
});
