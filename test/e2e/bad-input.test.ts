// Bad input gets a clear error naming what is wrong, and leaves nothing behind: no package version, no
// object, no run.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const goodTrain = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';

t.test('packages and submissions that are refused', async (t) => {
  const s = await Stack.create(t);
  const nothingStored = async (name: string) => {
    t.same(await s.query('SELECT * FROM package_versions WHERE package = $1', [name]), [], `no version row for ${name}`);
    t.same(await s.objects(`packages/${name}/`), [], `no object for ${name}`);
  };

  // A zip whose entry leaves the root.
  const evil = path.join(tempDir(), 'evil.zip');
  execFileSync('python3', ['-c', `import zipfile,sys
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("train.py", ${JSON.stringify(goodTrain)})
    z.writestr("../../outside.py", "x")`, evil]);
  let r = await s.cli(['package', 'push', evil, '--name', 'evil']);
  t.equal(r.code, 2);
  t.match(r.stderr, /zip entry "\.\.\/\.\.\/outside\.py" leaves the package root/);
  await nothingStored('evil');

  // No train.py.
  r = await s.cli(['package', 'push', writeTree(tempDir(), { 'main.py': 'x = 1\n' }), '--name', 'notrain']);
  t.equal(r.code, 2);
  t.match(r.stderr, /package "notrain" has no train\.py at its root \(it has: main\.py\)/);
  await nothingStored('notrain');

  // A syntax error, and a Main without save().
  r = await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': 'class Main:\n    def train(self, d)\n        pass\n' }), '--name', 'syntax']);
  t.equal(r.code, 2);
  t.match(r.stderr, /train\.py line 2: (invalid syntax|expected ':')/);
  await nothingStored('syntax');
  r = await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': 'class Main:\n    def train(self, d):\n        pass\n' }), '--name', 'nosave']);
  t.equal(r.code, 2);
  t.match(r.stderr, /class Main has no method save\(self\)/);
  await nothingStored('nosave');

  // A bad name.
  r = await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': goodTrain }), '--name', 'bad/name']);
  t.equal(r.code, 2);
  t.match(r.stderr, /package name "bad\/name" is invalid/);

  // Now a good package and dataset, then submissions that are refused without creating a run.
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': goodTrain }), '--name', 'good']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'a/x.csv': '1\n' }), '--name', 'data']);
  const refused: [string[], RegExp][] = [
    [['--package', 'nope', '--dataset', 'data'], /package "nope" not found/],
    [['--package', 'good', '--version', '7.3', '--dataset', 'data'], /package "good" has no version 7\.3 \(it has 1\.0\)/],
    [['--package', 'good', '--version', 'one', '--dataset', 'data'], /package version "one" is not of the form MAJOR\.MINOR/],
    [['--package', 'good', '--dataset', 'nodata'], /dataset "nodata" not found/],
    [['--package', 'good', '--dataset', 'data/b'], /dataset "data" has no subfolder "b"/],
    [['--package', 'good', '--dataset', 'data', '--env', '1BAD=x'], /environment variable name "1BAD" is invalid: expected \[A-Za-z_\]\[A-Za-z0-9_\]\*/],
    [['--package', 'good', '--dataset', 'data', '--env', 'save_training_data=maybe'], /save_training_data must be true or false/],
    // Names the agent owns: the loader, the GPU assignment, the interpreter's paths, the agent's own.
    [['--package', 'good', '--dataset', 'data', '--env', 'LD_PRELOAD=/tmp/evil.so'], /environment variable LD_PRELOAD is reserved/],
    [['--package', 'good', '--dataset', 'data', '--env', 'CUDA_VISIBLE_DEVICES=0,1,2,3'], /environment variable CUDA_VISIBLE_DEVICES is reserved/],
    [['--package', 'good', '--dataset', 'data', '--env', 'PYTHONPATH=/tmp'], /environment variable PYTHONPATH is reserved/],
    [['--package', 'good', '--dataset', 'data', '--env', 'TRAINYARD_RUN_ID=x'], /environment variable TRAINYARD_RUN_ID is reserved/],
    [['--package', 'good', '--dataset', 'data', '--env', 'artifacts_directory=/etc'], /artifacts_directory "\/etc" must be a relative folder/],
    [['--package', 'good', '--dataset', 'data', '--env', 'artifacts_directory=../../x'], /artifacts_directory "\.\.\/\.\.\/x" must be a relative folder/],
    // 1 MiB of env in 16 variables (one argument may not exceed 128 KiB on Linux).
    [['--package', 'good', '--dataset', 'data', ...Array.from({ length: 16 }, (_, i) => ['--env', `BIG${i}=${'x'.repeat(64 * 1024)}`]).flat()],
      /the run's environment is \d+ bytes; at most 65536 are allowed/],
    [['--package', 'good', '--dataset', 'data', '--gpus', '4'], /no registered agent could ever satisfy this request \(4 GPUs\)/],
    [['--package', 'good', '--dataset', 'data', '--gpus', '9'], /--gpus: expected an integer from 0 to 8/],
  ];
  for (const [args, message] of refused) {
    r = await s.cli(['run', 'train', ...args]);
    t.not(r.code, 0, `refused: ${args.join(' ').slice(0, 160)}`);
    t.match(r.stderr.slice(0, 2000), message);
  }
  t.same(await s.query('SELECT id FROM runs'), [], 'no run was created by any refused submission');

  // Values that reached Postgres unchecked and came back INTERNAL, with the database's own words.
  const api = s.api();
  t.teardown(() => api.close());
  const code = (p: Promise<unknown>) => p.then(() => 'OK', (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`);
  t.match(await code(api.listRuns({ status: 'bogus', limit: 0, schedule: '' })), /^INVALID_ARGUMENT: status "bogus" is not one of: Scheduled, /, 'run list --status that is no status');
  t.match(await code(api.submitRun({ package: 'good', dataset: 'data', idempotency_key: 'k'.repeat(4000) } as never)), /^INVALID_ARGUMENT: idempotency_key is 4000 characters; at most 256/, 'an idempotency key longer than its index takes');
  t.match(await code(api.getRun('run_a\0b')), /^NOT_FOUND: run not found/, 'a run id with a NUL byte is a run that does not exist');
  t.match(await code(api.projectUsage({ bucket_hours: 1e12 } as never)), /^INVALID_ARGUMENT: bucket_hours must be 0 \(a day\) to 8760/, 'a usage bucket past a year');
  t.same(await s.query('SELECT id FROM runs'), [], 'and nothing was created');

  // An empty dataset folder.
  r = await s.cli(['dataset', 'push', tempDir(), '--name', 'empty']);
  t.equal(r.code, 2);
  t.match(r.stderr, /has no files/);
  t.same(await s.query("SELECT * FROM datasets WHERE name = 'empty'"), []);
});

t.test('a dataset push over the scheduler\'s limits is refused at the file that crosses them, and leaves nothing', async (t) => {
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_MAX_DATASET_PUSH_MB: '1', TRAINYARD_MAX_DATASET_PUSH_FILES: '3' } });
  const big = await s.cli(['dataset', 'push', writeTree(tempDir(), { 'a.bin': 'x'.repeat(700_000), 'b.bin': 'y'.repeat(700_000) }), '--name', 'big', '--json']);
  t.equal(big.code, 2, 'a 1.4 MB push with a 1 MiB limit fails as bad input (exit 2)');
  t.match(JSON.parse(big.stderr).error, { code: 'INVALID_ARGUMENT', message: /at most 1 MiB .*--max-dataset-push-mb/ }, 'saying which limit and where to change it');
  const many = await s.cli(['dataset', 'push', writeTree(tempDir(), { '1.csv': '1', '2.csv': '2', '3.csv': '3', '4.csv': '4' }), '--name', 'many', '--json']);
  t.equal(many.code, 2, 'four files with a limit of three fail');
  t.match(JSON.parse(many.stderr).error, { code: 'INVALID_ARGUMENT', message: /at most 3 files/ });
  t.same(await s.objects('datasets/'), [], 'neither push left an object');
  t.same(await s.query('SELECT name FROM datasets'), [], 'nor a dataset');
  const ok = await s.cli(['dataset', 'push', writeTree(tempDir(), { '1.csv': '1', '2.csv': '2', '3.csv': '3' }), '--name', 'many', '--json']);
  t.equal(ok.code, 0, `a push within both limits goes through (${ok.stderr})`);
});
