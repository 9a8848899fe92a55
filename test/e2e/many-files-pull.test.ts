// Issue 21, a pull of many files: MinIO evaluates the attempt's session policy on every GET, and the
// read-only keys' shorter one costs it about 60% of the time (agent/data-cache.ts READ_KEYS_FROM_FILES).
// A run over a dataset of that many files asks RenewStorage for read-only keys and makes every file local
// with them, byte for byte as the lineage says; a run over a few files asks for none.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy } from '../helpers/packages.js';
import { READ_KEYS_FROM_FILES } from '../../agent/data-cache.js';

t.test('a dataset of many files is pulled with read-only keys, a small one with the attempt\'s own', async (t) => {
  const s = await Stack.create(t, { agents: ['one'] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', 'p']);
  const n = READ_KEYS_FROM_FILES + 20;
  const tree: Record<string, Buffer> = {};
  for (let i = 0; i < n; i++) tree[`part${i % 4}/f${String(i).padStart(4, '0')}.bin`] = randomBytes(100 + i);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), tree), '--name', 'many']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n', 'b.csv': '2\n' }), '--name', 'few']);

  const logsOf = async (id: string) => (await s.cli(['run', 'logs', id])).stdout;
  const many = await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'many']);
  const a = await s.waitForStatus(String(many.id), ['Successful', 'Failed']);
  t.equal(a.status, 'Successful', `the run over ${n} files succeeded (${a.failure_reason ?? ''})`);
  t.match(await logsOf(String(many.id)), new RegExp(`dataset many: ${n} files, \\d+ bytes made local with read-only keys`), 'made local with read-only keys');
  const lineage = JSON.parse(await s.objectText(`runs/${many.id}/attempt-1/_lineage.json`)) as { data: { manifest: { path: string; sha256: string }[] } };
  t.equal(lineage.data.manifest.length, n, 'every file in the lineage');
  const wrong = lineage.data.manifest.filter((f) => createHash('sha256').update(tree[f.path]!).digest('hex') !== f.sha256);
  t.same(wrong, [], 'each file as pushed');

  const few = await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'few']);
  t.equal((await s.waitForStatus(String(few.id), ['Successful', 'Failed'])).status, 'Successful');
  const fewLogs = await logsOf(String(few.id));
  t.match(fewLogs, /dataset few: 2 files/, 'the small one is made local');
  t.notMatch(fewLogs, /read-only keys/, 'with the attempt\'s own keys (no extra call for two files)');
});
