// _results.json in AI Center's three shapes (scheduler/runs/results.ts): every key, by pipeline.
import t from 'tap';
import { buildResults, type ResultsInput } from '../../scheduler/runs/results.js';
import { Pipeline } from '../../shared/pipelines.js';

const out = (r: ReturnType<typeof buildResults>) => r.run_summary.outputs as Record<string, unknown>;
const inputs = (r: ReturnType<typeof buildResults>) => r.parameters.inputs as Record<string, unknown>;

const base: ResultsInput = {
  pipeline: Pipeline.Train, package: 'iris', version: '1.0', dataPrefix: 'datasets/iris/train/', evalDataPrefix: null, gpus: 1,
  env: { artifacts_directory: 'artifacts', save_training_data: 'true', save_test_data: 'true' },
  outputPrefix: 'runs/run_0123456789abcd/attempt-1/', startAt: 1000.25, endAt: 1012.5, outputVersion: '1.1',
  savedTrainingData: true, savedTestData: true, score: 0.93,
};
const summary = { execution_time: 12.25, start_at: 1000, end_at: 1012 };

t.test('TRAIN_ONLY', async (t) => {
  t.strictSame(buildResults(base), {
    parameters: { pipeline: 'TRAIN_ONLY', inputs: { package: 'iris', version: '1.0', train_data: 'datasets/iris/train/', gpu: 'True' }, env: base.env },
    run_summary: { ...summary, outputs: { train_data: 'runs/run_0123456789abcd/attempt-1/train_data/', artifacts_data: 'runs/run_0123456789abcd/attempt-1/artifacts/', package: 'iris', version: '1.1' } },
  }, 'every key, outputs.package the name');
  const r = buildResults({ ...base, savedTrainingData: false, gpus: 0 });
  t.equal(out(r).train_data, null, 'no data copy: null');
  t.equal(inputs(r).gpu, 'False');
});

t.test('EVALUATE_ONLY', async (t) => {
  t.strictSame(buildResults({ ...base, pipeline: Pipeline.Evaluate, outputVersion: '' }), {
    parameters: { pipeline: 'EVALUATE_ONLY', inputs: { package: 'iris', version: '1.0', test_data: 'datasets/iris/train/', gpu: 'True' }, env: base.env },
    run_summary: { ...summary, outputs: { test_data: 'runs/run_0123456789abcd/attempt-1/test_data/', artifacts_data: 'runs/run_0123456789abcd/attempt-1/artifacts/', score: 0.93 } },
  }, 'inputs.test_data, outputs test_data, artifacts_data, score; no package or version');
  t.equal(out(buildResults({ ...base, pipeline: Pipeline.Evaluate, savedTestData: false })).test_data, null);
});

t.test('FULL_TRAINING', async (t) => {
  t.strictSame(buildResults({ ...base, pipeline: Pipeline.Full, evalDataPrefix: 'datasets/iris/holdout/' }), {
    parameters: {
      pipeline: 'FULL_TRAINING',
      inputs: { package: 'iris', version: '1.0', train_data: 'datasets/iris/train/', test_data: 'datasets/iris/holdout/', gpu: 'True' },
      env: base.env,
    },
    run_summary: {
      ...summary,
      outputs: {
        train_data: 'runs/run_0123456789abcd/attempt-1/train_data/', test_data: 'runs/run_0123456789abcd/attempt-1/test_data/',
        artifacts_data: 'runs/run_0123456789abcd/attempt-1/artifacts/', package: 'iris', version: '1.1', score: 0.93,
      },
    },
  }, 'every key');
  const r = buildResults({ ...base, pipeline: Pipeline.Full });
  t.equal(inputs(r).test_data, null, 'no evaluation dataset: inputs.test_data null');
  const env = { ...base.env, save_test_data: 'false' };
  t.equal(out(buildResults({ ...base, pipeline: Pipeline.Full, env })).test_data, null, 'save_test_data=false: null');
  const nothingSaved = buildResults({ ...base, pipeline: Pipeline.Full, gpus: 0, savedTrainingData: false, savedTestData: false, score: 0 });
  t.strictSame({ inputs: inputs(nothingSaved), outputs: out(nothingSaved) }, {
    inputs: { package: 'iris', version: '1.0', train_data: 'datasets/iris/train/', test_data: null, gpu: 'False' },
    outputs: { train_data: null, test_data: null, artifacts_data: 'runs/run_0123456789abcd/attempt-1/artifacts/', package: 'iris', version: '1.1', score: 0 },
  }, 'nothing saved, no evaluation dataset, a score of 0: real nulls and the number 0, every key present');
});

t.test('a gang run: its members beside AI Center\'s keys; an ordinary run has no members key', async (t) => {
  const members = [
    { node_rank: 0, agent: 'a1', gpus: [{ index: 0, uuid: 'GPU-a' }, { index: 1, uuid: 'GPU-b' }], first_rank: 0, last_rank: 1 },
    { node_rank: 1, agent: 'a2', gpus: [{ index: 3, uuid: '' }], first_rank: 2, last_rank: 3 },
  ];
  const r = buildResults({ ...base, members }) as ReturnType<typeof buildResults> & { members?: unknown };
  t.strictSame(r.members, members, 'every member: node rank, agent, GPUs (UUIDs where known), rank range');
  t.strictSame(Object.keys(r), ['parameters', 'run_summary', 'members']);
  t.notOk('members' in buildResults(base), 'without members: the shape as before');
  t.notOk('members' in buildResults({ ...base, members: null }));
});
