// The output layout (agent/outputs.ts): which keys an attempt writes under its prefix, and what the new
// package.zip leaves out (the artifacts folder when it is inside the package, __pycache__ anywhere).
import t from 'tap';
import path from 'node:path';
import { planOutputs } from '../../agent/outputs.js';

const pkg = '/work/a1/package';
const prefix = 'runs/run_x/attempt-1/';

t.test('default layout: artifacts inside the package are uploaded on their own, not in package.zip', async (t) => {
  const p = planOutputs(pkg, prefix, {});
  t.equal(p.artifactsDir, path.join(pkg, 'artifacts'));
  t.same(p.keys, { artifacts: `${prefix}artifacts/`, trainData: `${prefix}train_data/`, testData: `${prefix}test_data/`, package: `${prefix}package.zip` });
  t.equal(p.saveTrainingData, false);
  t.ok(p.packageExcludes('artifacts'));
  t.notOk(p.packageExcludes('artifacts.txt'));
  t.notOk(p.packageExcludes('model/artifacts'), 'only the artifacts folder itself, not a namesake deeper down');
  t.ok(p.packageExcludes('__pycache__'));
  t.ok(p.packageExcludes('lib/__pycache__'));
  t.notOk(p.packageExcludes('train.py'));
});

t.test('a nested or outside artifacts_directory, and save_training_data', async (t) => {
  const nested = planOutputs(pkg, prefix, { artifacts_directory: 'out/arts/', save_training_data: 'true' });
  t.ok(nested.packageExcludes('out/arts'));
  t.notOk(nested.packageExcludes('out'));
  t.equal(nested.saveTrainingData, true);
  const outside = planOutputs(pkg, prefix, { artifacts_directory: '../elsewhere' });
  t.equal(outside.artifactsDir, '/work/a1/elsewhere');
  t.notOk(outside.packageExcludes('..'), 'a folder outside the package excludes nothing');
  const itself = planOutputs(pkg, prefix, { artifacts_directory: '.' });
  t.notOk(itself.packageExcludes(''), 'the package folder itself as artifacts excludes nothing');
});
