// Issue 22, checkpoint loose ends: the agent tells the scheduler of each checkpoint it commits (its time, for
// preemption's "least work lost"; its size), and the checkpoints a project's runs keep count against the
// project's storage quota (`projects set P --max-storage-gb N`) like its datasets and outputs do.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const checkpointingTrainPy = `
import os
import trainyard_checkpoint as ckpt

class Main:
    def train(self, d):
        with open(os.path.join(ckpt.directory(), "weights.bin"), "wb") as fh:
            fh.write(os.urandom(20000))
        print("committed %s" % ckpt.commit(timeout=60), flush=True)
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;

t.test('a committed checkpoint is reported (time and size) and counts against the project\'s storage quota', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1' }] });
  const token = (await s.cliJson(['tokens', 'create', '--project', 'alpha', '--role', 'member'])).token as string;
  const A = async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', token]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null };
  };
  t.equal((await A(['package', 'push', writeTree(tempDir(), { 'train.py': checkpointingTrainPy }), '--name', 'ck'])).code, 0, 'package pushed');
  t.equal((await A(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd'])).code, 0, 'dataset pushed');
  const run = await A(['run', 'train', '--package', 'ck', '--dataset', 'd', '--keep-checkpoints', '--wait']);
  t.equal(run.out?.status, 'Successful', 'the run succeeds, its checkpoint kept');

  const [row] = await s.query('SELECT checkpoint_at, checkpoint_bytes, running_at, ended_at FROM runs WHERE id = $1', [run.out.id]);
  t.equal(Number(row!.checkpoint_bytes), 20000, 'the scheduler knows the checkpoint\'s size');
  t.ok(row!.checkpoint_at && row!.checkpoint_at >= row!.running_at && row!.checkpoint_at <= row!.ended_at, 'and when it was committed, while the run ran');
  const kept = (await s.objects(`runs/${run.out.id}/checkpoints/`)).filter((k: string) => k.endsWith('weights.bin'));
  t.equal(kept.length, 1, 'the checkpoint is in the bucket');

  const held = (await A(['projects'])).out.find((p: { name: string }) => p.name === 'alpha').storage_bytes as number;
  t.ok(held >= 20000, `projects counts the checkpoint in what alpha holds (${held} bytes)`);
  // Room for 10 kB more if the checkpoint were not counted: a 5 kB push is refused all the same.
  t.equal((await s.cli(['projects', 'set', 'alpha', '--max-storage-gb', String((held - 20000 + 10000) / 1e9)])).code, 0, 'a quota just above what alpha holds besides the checkpoint');
  const push = await A(['dataset', 'push', writeTree(tempDir(), { 'a.bin': randomBytes(5000) }), '--name', 'more']);
  t.equal(push.code, 1, 'a push that fits only if checkpoints were free is refused');
  t.match(push.err?.message, /storage quota of project "alpha" exceeded/, push.err?.message ?? '');
});
