// The whole training path through the CLI, against real Postgres, NATS and MinIO: push a package and a
// dataset, train, and check the rows, the objects and _results.json.
import t from 'tap';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const trainPy = `
import os, json, sys
class Main:
    def __init__(self):
        self.files = []
    def train(self, training_directory):
        for root, _, files in os.walk(training_directory):
            for f in files:
                self.files.append(os.path.relpath(os.path.join(root, f), training_directory))
        self.files.sort()
        for rel in self.files:
            print("read", rel)
        print("to stderr", file=sys.stderr)
        art = os.environ["artifacts_directory"]
        os.makedirs(os.path.join(art, "nested"), exist_ok=True)
        with open(os.path.join(art, "nested", "summary.json"), "w") as fh:
            json.dump({"files": self.files, "greeting": os.environ.get("GREETING"), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}, fh)
    def save(self):
        with open("model.json", "w") as fh:
            json.dump(self.files, fh)
`;

t.test('a training run end to end', async (t) => {
  const s = await Stack.create(t);
  const pkg = writeTree(tempDir(), { 'train.py': trainPy, 'main.py': 'class Main:\n    def predict(self, x):\n        return x\n' });
  const data = writeTree(tempDir(), { 'top.csv': 'a,b\n1,2\n', 'train/part1.csv': 'a,b\n3,4\n', 'train/deep/part2.csv': 'a,b\n5,6\n' });

  const pushed = await s.cliJson(['package', 'push', pkg, '--name', 'counter']);
  t.equal(pushed.version, '1.0', 'first push is 1.0');
  const second = await s.cliJson(['package', 'push', pkg, '--name', 'counter']);
  t.equal(second.version, '2.0', 'second push of the same name is 2.0');
  const ds = await s.cliJson(['dataset', 'push', data, '--name', 'numbers']);
  t.equal(Number(ds.file_count), 3);

  // The whole dataset, version 1.0 explicitly, with a user env var and the data copy.
  const r = await s.cli(['run', 'train', '--package', 'counter', '--version', '1.0', '--dataset', 'numbers',
    '--env', 'GREETING=hello world', '--env', 'save_training_data=true', '--wait', '--json']);
  t.equal(r.code, 0, `run train --wait exits 0 (stderr: ${r.stderr})`);
  const run = JSON.parse(r.stdout);
  t.equal(run.status, 'Successful');
  t.equal(run.output_version, '1.1', 'training 1.0 gives 1.1');

  // _results.json: exactly AI Center's shape.
  const results = run.results;
  t.same(Object.keys(results).sort(), ['parameters', 'run_summary']);
  t.same(Object.keys(results.parameters).sort(), ['env', 'inputs', 'pipeline']);
  t.same(Object.keys(results.parameters.inputs).sort(), ['gpu', 'package', 'train_data', 'version']);
  t.same(Object.keys(results.run_summary).sort(), ['end_at', 'execution_time', 'outputs', 'start_at']);
  t.same(Object.keys(results.run_summary.outputs).sort(), ['artifacts_data', 'package', 'train_data', 'version']);
  t.equal(results.parameters.inputs.package, 'counter');
  t.equal(results.parameters.inputs.version, '1.0');
  t.equal(results.parameters.inputs.gpu, 'False');
  t.equal(results.parameters.inputs.train_data, 'datasets/numbers/');
  t.equal(results.parameters.env.GREETING, 'hello world');
  t.equal(results.parameters.env.artifacts_directory, 'artifacts');
  t.equal(results.run_summary.outputs.version, '1.1');
  t.ok(Number.isInteger(results.run_summary.start_at) && Number.isInteger(results.run_summary.end_at), 'start_at/end_at are unix seconds');
  t.ok(results.run_summary.end_at >= results.run_summary.start_at);
  t.ok(results.run_summary.execution_time >= 0 && results.run_summary.execution_time < 600);
  const prefix = `runs/${run.id}/attempt-1/`;
  t.equal(results.run_summary.outputs.artifacts_data, `${prefix}artifacts/`);
  t.equal(results.run_summary.outputs.package, 'counter', 'outputs.package is the package name, as AI Center\'s template has it');
  t.equal(results.parameters.pipeline, 'TRAIN_ONLY');
  t.equal(results.run_summary.outputs.train_data, `${prefix}train_data/`);

  // The objects in MinIO.
  const objects = await s.objects(prefix);
  t.same(objects, [
    `${prefix}_lineage.json`,
    `${prefix}_results.json`,
    `${prefix}artifacts/nested/summary.json`,
    `${prefix}package.zip`,
    `${prefix}train_data/top.csv`,
    `${prefix}train_data/train/deep/part2.csv`,
    `${prefix}train_data/train/part1.csv`,
  ]);
  t.same(JSON.parse(await s.objectText(`${prefix}_results.json`)), results, 'the stored _results.json is the one run get shows');
  const summary = JSON.parse(await s.objectText(`${prefix}artifacts/nested/summary.json`));
  t.same(summary.files, ['top.csv', 'train/deep/part2.csv', 'train/part1.csv'], 'train() saw every file of the dataset');
  t.equal(summary.greeting, 'hello world', 'user env reaches os.environ');
  t.equal(summary.cuda, '', 'a run without --gpu sees no GPU');

  // The rows in Postgres.
  const versions = await s.query('SELECT major, minor, source, run_id, object_key, sha256 FROM package_versions WHERE package = $1 ORDER BY major, minor', ['counter']);
  t.same(versions.map((v) => `${v.major}.${v.minor}:${v.source}`), ['1.0:upload', '1.1:run', '2.0:upload']);
  t.equal(versions[1]!.run_id, run.id);
  t.equal(versions[1]!.object_key, `packages/counter/${versions[1]!.sha256}/package.zip`, 'registered at the copy of the zip the attempt uploaded');
  const uploaded: Buffer[] = [];
  for await (const c of await s.minio.getObject(s.bucket, `${prefix}package.zip`)) uploaded.push(c as Buffer);
  t.equal(createHash('sha256').update(Buffer.concat(uploaded)).digest('hex'), versions[1]!.sha256, 'which is that zip');
  const events = await s.query('SELECT status FROM run_events WHERE run_id = $1 ORDER BY id', [run.id]);
  t.same(events.map((e) => e.status), ['Scheduled', 'Scheduled', 'Packaging', 'Running', 'Successful'], 'every transition is recorded, in order');

  // Logs: stdout and stderr, in order.
  const logs = await s.cli(['run', 'logs', run.id]);
  t.equal(logs.code, 0);
  const readLines = logs.stdout.split('\n').filter((l) => l.startsWith('read '));
  t.same(readLines, ['read top.csv', 'read train/deep/part2.csv', 'read train/part1.csv']);
  t.match(logs.stdout, /to stderr/);

  // Outputs download.
  const out = tempDir();
  const dl = await s.cli(['run', 'outputs', run.id, '--to', out]);
  t.equal(dl.code, 0, dl.stderr);
  t.ok(existsSync(path.join(out, 'package.zip')));
  t.ok(existsSync(path.join(out, 'artifacts', 'nested', 'summary.json')));
  t.same(JSON.parse(readFileSync(path.join(out, '_results.json'), 'utf8')), results);

  // The new package version holds the code and what save() wrote, but not the artifacts or the data.
  const check = await s.cli(['run', 'train', '--package', 'counter', '--version', '1.1', '--dataset', 'numbers/train', '--wait', '--json']);
  t.equal(check.code, 0, check.stderr);
  const run2 = JSON.parse(check.stdout);
  t.equal(run2.output_version, '1.2', 'training 1.1 (major 1) gives 1.2');
  t.equal(run2.results.parameters.inputs.train_data, 'datasets/numbers/train/');
  t.equal(run2.results.run_summary.outputs.train_data, null, 'no data copy unless asked');
  const p2 = `runs/${run2.id}/attempt-1/`;
  const summary2 = JSON.parse(await s.objectText(`${p2}artifacts/nested/summary.json`));
  t.same(summary2.files, ['deep/part2.csv', 'part1.csv'], 'a subfolder run sees only that subfolder');

  const zipList = await listZip(path.join(out, 'package.zip'));
  t.same(zipList.sort(), ['main.py', 'model.json', 'train.py'], 'the new version is the package folder after save()');

  const listed = await s.cliJson<any[]>(['package', 'versions', 'counter']);
  t.same(listed.map((v) => [v.version, v.source, v.run_id]), [
    ['1.0', 'upload', ''], ['1.1', 'run', run.id], ['1.2', 'run', run2.id], ['2.0', 'upload', ''],
  ]);
});

t.test('train() that raises: Failed, traceback in the logs, no version', async (t) => {
  const s = await Stack.create(t);
  const pkg = writeTree(tempDir(), {
    'train.py': 'class Main:\n    def train(self, d):\n        print("about to fail")\n        raise ValueError("the data has no label column")\n    def save(self):\n        pass\n',
  });
  const data = writeTree(tempDir(), { 'x.csv': '1\n' });
  await s.cliJson(['package', 'push', pkg, '--name', 'broken']);
  await s.cliJson(['dataset', 'push', data, '--name', 'd']);
  const r = await s.cli(['run', 'train', '--package', 'broken', '--dataset', 'd', '--wait', '--json']);
  t.equal(r.code, 1, 'run train --wait exits non-zero when the run fails');
  const run = JSON.parse(r.stdout);
  t.equal(run.status, 'Failed');
  t.equal(run.failure_reason, 'ValueError: the data has no label column', 'the reason is the traceback\'s last line');
  const logs = await s.cli(['run', 'logs', run.id]);
  t.match(logs.stdout, /Traceback \(most recent call last\)/);
  t.match(logs.stdout, /about to fail/);
  const versions = await s.query('SELECT * FROM package_versions WHERE package = $1', ['broken']);
  t.equal(versions.length, 1, 'only the uploaded version');
  t.same(await s.objects(`runs/${run.id}/`), [], 'a failed run stores no outputs');
});

async function listZip(file: string): Promise<string[]> {
  const { inspectZip } = await import('../../shared/zip.js');
  const info = await inspectZip(file, { maxEntries: 1000, maxUnzippedBytes: 1 << 30 });
  return info.entries.filter((e) => !e.isDirectory).map((e) => e.rel);
}

t.test('run logs --follow prints lines as they come and ends with the run', async (t) => {
  const { Gate, pushGated, submitGated, waitForLog } = await import('../helpers/packages.js');
  const s = await Stack.create(t);
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--env', 'LINES=3']);
  await waitForLog(s, id, 'line 3');
  const follow = s.cli(['run', 'logs', id, '--follow']);
  // The follower is attached before training ends; what comes after must reach it too.
  await new Promise((r) => setTimeout(r, 1500));
  gate.open();
  const r = await follow;
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.same(lines.filter((l) => /^line \d$/.test(l)), ['line 1', 'line 2', 'line 3']);
  t.ok(lines.includes('trained'), 'a line printed after the follower attached');
  t.match(r.stdout, /uploaded the new package version/, 'it ran to the end of the run');
  t.equal((await s.query('SELECT status FROM runs WHERE id = $1', [id]))[0]!.status, 'Successful');
});
