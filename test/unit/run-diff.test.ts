// `trainyard run diff A B` (cli/commands/run-diff.ts diffLineage) on lineage documents as the scheduler
// writes them: each kind of difference the issue names (code hash, data manifest, requirements, env) and
// the GPUs is reported, with what changed, and two identical lineages report nothing.
import t from 'tap';
import { diffLineage } from '../../cli/commands/run-diff.js';

const sha = (c: string) => c.repeat(64);
const file = (p: string, size: number, c: string) => ({ path: p, size, sha256: sha(c) });

function lineage() {
  return {
    run_id: 'run_aaaaaaaaaaaaaa', pipeline: 'FULL_TRAINING', project: 'default',
    input: { package: 'iris', version: '1.0', sha256: sha('a') },
    dataset: 'iris/train', eval_dataset: 'iris/holdout',
    data: { manifest_sha256: sha('1'), files: 2, bytes: 30, truncated: false, manifest: [file('a.csv', 10, 'b'), file('b.csv', 20, 'c')] },
    eval_data: { manifest_sha256: sha('2'), files: 1, bytes: 5, truncated: false, manifest: [file('h.csv', 5, 'd')] },
    environment: { python: '3.11.7', packages: ['numpy==1.26.0', 'scikit-learn==1.4.0', 'six==1.16.0'] },
    agent: { name: 'gpubox', gpus: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-11111111' }] },
    env: { artifacts_directory: 'artifacts', save_training_data: 'false', save_test_data: 'false', LR: '0.1' } as Record<string, string>,
    secrets: [], score: 0.9, output: { version: '1.1', sha256: sha('e') },
  };
}
type L = ReturnType<typeof lineage>;
const whats = (a: L, b: L) => diffLineage(a, b).map((d) => d.what);
const one = (a: L, b: L, what: string) => diffLineage(a, b).find((d) => d.what === what);

t.test('identical lineages: no difference', async (t) => {
  t.strictSame(diffLineage(lineage(), lineage()), [], 'two copies of one lineage');
  const other = { ...lineage(), run_id: 'run_bbbbbbbbbbbbbb', output: { version: '1.2', sha256: sha('f') } };
  t.strictSame(diffLineage(lineage(), other), [], 'another run with the same inputs (its own id and output are not inputs)');
});

t.test('the code: the input version\'s sha256', async (t) => {
  const b = lineage();
  b.input = { package: 'iris', version: '1.1', sha256: sha('9') };
  t.strictSame(whats(lineage(), b), ['code (input version sha256)'], 'only the code differs');
  t.strictSame(one(lineage(), b, 'code (input version sha256)'), { what: 'code (input version sha256)', a: sha('a'), b: sha('9'), detail: ['iris 1.0 → iris 1.1'] });
});

t.test('the data manifest: which files were added, removed or changed', async (t) => {
  const b = lineage();
  b.data = { manifest_sha256: sha('3'), files: 2, bytes: 31, truncated: false, manifest: [file('a.csv', 11, 'b'), file('c.csv', 20, 'c')] };
  t.strictSame(whats(lineage(), b), ['data (manifest sha256)'], 'only the data differs (same dataset name)');
  t.strictSame(one(lineage(), b, 'data (manifest sha256)'), { what: 'data (manifest sha256)', a: sha('1'), b: sha('3'), detail: ['~ a.csv', '- b.csv', '+ c.csv'] });
  const ev = lineage();
  ev.eval_data = { manifest_sha256: sha('4'), files: 1, bytes: 5, truncated: false, manifest: [file('h.csv', 5, 'f')] };
  t.strictSame(whats(lineage(), ev), ['evaluation data (manifest sha256)'], 'the evaluation data is told apart from the training data');
  t.strictSame(one(lineage(), ev, 'evaluation data (manifest sha256)')?.detail, ['~ h.csv'], 'same size, other content: changed');
});

t.test('the requirements: the venv\'s packages', async (t) => {
  const b = lineage();
  b.environment = { python: '3.11.7', packages: ['numpy==1.26.4', 'scikit-learn==1.4.0', 'scipy==1.12.0'] };
  t.strictSame(whats(lineage(), b), ['requirements (venv packages)'], 'only the requirements differ');
  t.strictSame(one(lineage(), b, 'requirements (venv packages)')?.detail, ['~ numpy==1.26.0 → numpy==1.26.4', '+ scipy==1.12.0', '- six==1.16.0'], 'upgraded, added, removed');
  const py = lineage();
  py.environment = { ...py.environment, python: '3.12.1' };
  t.strictSame(whats(lineage(), py), ['python'], 'the Python version on its own');
});

t.test('the env', async (t) => {
  const b = lineage();
  b.env = { artifacts_directory: 'artifacts', save_training_data: 'true', save_test_data: 'false', EPOCHS: '3' };
  t.strictSame(whats(lineage(), b), ['env'], 'only the env differs');
  t.strictSame(one(lineage(), b, 'env')?.detail, ['+ EPOCHS=3', '- LR=0.1', '~ save_training_data: false → true']);
});

t.test('the GPUs, by UUID', async (t) => {
  const b = lineage();
  b.agent = { name: 'gpubox', gpus: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-22222222' }] };
  t.strictSame(whats(lineage(), b), ['GPUs'], 'same agent, another GPU');
  t.strictSame(one(lineage(), b, 'GPUs'), { what: 'GPUs', a: ['GPU-11111111'], b: ['GPU-22222222'] });
  const none = lineage();
  none.agent = { name: 'gpubox', gpus: [] };
  t.strictSame(one(lineage(), none, 'GPUs'), { what: 'GPUs', a: ['GPU-11111111'], b: [] }, 'a GPU against none');
});

t.test('everything at once: each difference reported once, in a fixed order', async (t) => {
  const b = lineage();
  b.input = { ...b.input, sha256: sha('9') };
  b.data = { ...b.data, manifest_sha256: sha('3'), manifest: [file('a.csv', 10, 'b')] };
  b.environment = { ...b.environment, packages: ['numpy==1.26.0'] };
  b.env = { ...b.env, LR: '0.5' };
  b.agent = { name: 'other', gpus: [] };
  b.score = 0.5;
  t.strictSame(whats(lineage(), b), ['code (input version sha256)', 'data (manifest sha256)', 'requirements (venv packages)', 'env', 'agent', 'GPUs', 'score']);
});
