// Issue 19, limits: a project's storage quota (`projects set P --max-storage-gb N`, decimal GB). A push
// that would take the project over it is refused before a byte is stored, naming the quota and the usage,
// and leaves nothing in the bucket or the database; a run whose outputs do not fit in what is left fails
// "storage quota …" and its uploaded objects are removed. Real scheduler, agent, MinIO and runs.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const outputsTrainPy = `
import os
class Main:
    def train(self, d):
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        with open(os.path.join(os.environ["artifacts_directory"], "big.bin"), "wb") as fh:
            fh.write(os.urandom(int(os.environ.get("BIG", "0"))))
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;

async function member(s: Stack, project: string) {
  const token = (await s.cliJson(['tokens', 'create', '--project', project, '--role', 'member'])).token as string;
  return async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', token]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null };
  };
}

t.test('pushes over the quota are refused up front and leave nothing', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const set = await s.cliJson(['projects', 'set', 'alpha', '--max-storage-gb', '0.00002']); // 20 kB
  t.equal(set.max_storage_bytes, 20_000, 'the quota is stored in bytes');
  const A = await member(s, 'alpha');
  t.equal((await A(['package', 'push', writeTree(tempDir(), { 'train.py': outputsTrainPy }), '--name', 'small'])).code, 0, 'a small package fits');

  // 30 kB of data that does not compress: over the 20 kB quota.
  const big = await A(['dataset', 'push', writeTree(tempDir(), { 'a.bin': randomBytes(15_000), 'b.bin': randomBytes(15_000) }), '--name', 'big']);
  t.equal(big.code, 1, 'a dataset push over the quota fails');
  t.equal(big.err?.code, 'FAILED_PRECONDITION', 'FAILED_PRECONDITION');
  t.match(big.err?.message, /storage quota of project "alpha" exceeded: dataset "big" would add 30.0 kB to the \d+ bytes it holds, over its quota of 20.0 kB/, `naming the quota and the usage (${big.err?.message})`);
  t.same(await s.objects('datasets/big/'), [], 'nothing of it is in the bucket');
  t.same(await s.query("SELECT name FROM datasets WHERE name = 'big' UNION ALL SELECT name FROM dataset_claims WHERE name = 'big'"), [], 'nor in the database');

  const pkg = await A(['package', 'push', writeTree(tempDir(), { 'train.py': outputsTrainPy, 'weights.bin': randomBytes(30_000) }), '--name', 'heavy']);
  t.equal(pkg.code, 1, 'a package push over the quota fails');
  t.match(pkg.err?.message, /storage quota of project "alpha" exceeded: package "heavy" would add .* over its quota of 20.0 kB/, `naming the quota (${pkg.err?.message})`);
  t.same(await s.objects('packages/heavy/'), [], 'its zip is not in the bucket');
  t.same(await s.query("SELECT name FROM packages WHERE name = 'heavy'"), [], 'and it has no row');
  const refusedEvents = await s.query("SELECT detail FROM events WHERE kind = 'package.refused' AND subject = 'heavy'");
  t.match(refusedEvents[0]?.detail, /^storage quota of project "alpha" exceeded/, 'the refusal is in the ML log as package.refused, with the reason');

  const projects = await A(['projects']);
  const alpha = projects.out.find((p: { name: string }) => p.name === 'alpha');
  t.ok(alpha.storage_bytes > 0 && alpha.storage_bytes < 20_000, `projects shows what alpha holds (${alpha.storage_bytes} bytes)`);
  t.equal((await s.cli(['projects', 'set', 'alpha', '--max-storage-gb', 'lots'])).code, 2, 'a quota that is not a number is a usage error');
});

t.test('a run whose outputs do not fit fails "storage quota" and its objects are removed', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1' }] });
  t.equal((await s.cli(['projects', 'set', 'alpha', '--max-storage-gb', '0.00003'])).code, 0, 'a 30 kB quota'); // 30 kB
  const A = await member(s, 'alpha');
  t.equal((await A(['package', 'push', writeTree(tempDir(), { 'train.py': outputsTrainPy }), '--name', 'p'])).code, 0, 'package pushed');
  t.equal((await A(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd'])).code, 0, 'dataset pushed');

  const small = await A(['run', 'train', '--package', 'p', '--dataset', 'd', '--wait']);
  t.equal(small.out?.status, 'Successful', 'a run with small outputs fits and succeeds');
  const [counted] = await s.query('SELECT output_bytes::int AS n FROM runs WHERE id = $1', [small.out?.id]);
  t.ok(counted!.n > 0, `its outputs are counted against the quota (${counted!.n} bytes)`);

  const big = await A(['run', 'train', '--package', 'p', '--dataset', 'd', '--env', 'BIG=60000', '--wait']);
  t.equal(big.code, 1, 'run train --wait exits 1');
  const id = String(big.out?.id ?? big.err?.run_id ?? '');
  const [row] = id ? await s.query('SELECT id, status, failure_reason FROM runs WHERE id = $1', [id]) : await s.query("SELECT id, status, failure_reason FROM runs WHERE env->>'BIG' = '60000'");
  t.equal(row?.status, 'Failed', 'the run over the quota is Failed');
  t.match(row?.failure_reason, /^storage quota of project "alpha" exceeded: run run_\w+'s outputs would add .* over its quota of 30.0 kB/, `with the reason (${row?.failure_reason})`);
  t.same(await s.objects(`runs/${row?.id}/`), [], 'none of its uploaded objects are left in the bucket');
  t.same(await s.query("SELECT 1 FROM package_versions WHERE run_id = $1", [row?.id]), [], 'and it registered no version');

  // The version the small run made outlives the run's delete, and so does its zip: still counted.
  const held = async () => Number((await s.cliJson<any[]>(['projects'])).find((p) => p.name === 'alpha').storage_bytes);
  const before = await held();
  const [version] = await s.query('SELECT size_bytes::int AS n, object_key FROM package_versions WHERE run_id = $1', [small.out?.id]);
  t.ok(version, 'the small run registered a version');
  t.equal((await A(['run', 'delete', small.out?.id, '--yes'])).code, 0, 'the small run is deleted');
  t.ok((await s.objects('packages/p/')).includes(version!.object_key), 'its version\'s zip is still in the bucket');
  t.equal(await held(), before - counted!.n + version!.n, 'alpha holds that zip still: counted as a version once its run is gone');
});
