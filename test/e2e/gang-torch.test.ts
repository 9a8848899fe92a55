// Optional (issue 24): examples/packages/ddp-torch, PyTorch DistributedDataParallel on the gloo backend,
// over a gang of 2 agents x 2 processes on this machine. Off unless TRAINYARD_TEST_TORCH=1: the first run
// installs torch from PyPI into each agent's venv (about 3 GB with its CUDA libraries), too much for every
// `npm test`. What it proves: torch.distributed's env:// rendezvous works with the environment Trainyard
// gives each rank (the same as torchrun's), the ranks train together (DDP's gradient all-reduce) and end
// with the same weights (the package checks with all_gather), and rank 0's save() makes one version.
//
//   TRAINYARD_TEST_TORCH=1 npm test -- test/e2e/gang-torch.test.ts
import t from 'tap';
import path from 'node:path';
import { Stack, freePort, tempDir, writeTree, root } from '../helpers/stack.js';

const example = path.join(root, 'examples', 'packages', 'ddp-torch');

t.test('DDP on gloo: 2 agents x 2 processes train one model and rank 0 saves it', async (t) => {
  if (process.env.TRAINYARD_TEST_TORCH !== '1') {
    await t.skip('set TRAINYARD_TEST_TORCH=1 to install torch from PyPI and run DDP on gloo');
    return;
  }
  const agents = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    agents.push({ name: `a${i + 1}`, cpus: 2,
      env: { TRAINYARD_ADVERTISE_ADDR: `127.0.0.${i + 2}`, TRAINYARD_RENDEZVOUS_PORTS: `${port}-${port + 1}` } });
  }
  const s = await Stack.create(t, { agents });
  await s.cliJson(['package', 'push', example, '--name', 'ddp']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const run = await s.cliJson(['run', 'train', '--package', 'ddp', '--dataset', 'd', '--agents', '2', '--procs-per-agent', '2',
    '--env', 'EPOCHS=15']);
  const done = await s.waitForStatus(run.id, ['Successful', 'Failed', 'Killed'], 1_500_000);
  if (done.status !== 'Successful') {
    const logs = await s.query<{ text: string }>('SELECT text FROM run_logs WHERE run_id = $1 ORDER BY attempt, seq', [run.id]);
    t.comment(logs.slice(-60).map((l) => l.text).join('\n'));
  }
  t.equal(done.status, 'Successful', `the DDP gang succeeded (${done.failure_reason ?? ''})`);
  const prefix = `runs/${run.id}/attempt-${done.attempt}/`;
  const ranks = [];
  for (const key of [`${prefix}artifacts/rank-0.json`, `${prefix}artifacts/rank-1.json`, `${prefix}node-1/artifacts/rank-2.json`, `${prefix}node-1/artifacts/rank-3.json`]) {
    ranks.push(JSON.parse(await s.objectText(key)) as { rank: number; world: number; w: number; b: number });
  }
  for (const [i, r] of ranks.entries()) {
    t.equal(r.rank, i, `rank ${i} wrote its own file`);
    t.equal(r.world, 4, `rank ${i} saw WORLD_SIZE 4 through torch.distributed`);
    t.equal(r.w, ranks[0]!.w, `rank ${i} holds rank 0's weight (DDP kept them in sync)`);
    t.equal(r.b, ranks[0]!.b, `rank ${i} holds rank 0's bias`);
  }
  t.ok(Math.abs(ranks[0]!.w - 3) < 0.1 && Math.abs(ranks[0]!.b - 2) < 0.1, `the model learned y = 3x + 2 (w ${ranks[0]!.w}, b ${ranks[0]!.b})`);
  const versions = await s.cliJson(['package', 'versions', 'ddp']) as Array<{ version: string }>;
  t.same(versions.map((v) => v.version).sort(), ['1.0', '1.1'], 'one new version (rank 0 saved; the others did not)');
});
