// The agent checks a dispatch's env again before it spawns anything (agent/run-env.ts checkRunEnv): it
// must fill in the defaults of the run's own pipeline, as submit did, and no other pipeline's. Issue 9: an
// evaluation's env is artifacts_directory and save_test_data, a full pipeline's all three flags.
import t from 'tap';
import { checkRunEnv, RefusedDispatch } from '../../agent/run-env.js';
import { compileRunEnv } from '../../shared/run-env.js';
import { Pipeline } from '../../shared/pipelines.js';

const defaults = {
  [Pipeline.Train]: { artifacts_directory: 'artifacts', save_training_data: 'false' },
  [Pipeline.Evaluate]: { artifacts_directory: 'artifacts', save_test_data: 'false' },
  [Pipeline.Full]: { artifacts_directory: 'artifacts', save_training_data: 'false', save_test_data: 'false' },
};

t.test('each pipeline gets only its own defaults, at submit and again on the agent', async (t) => {
  for (const [pipeline, want] of Object.entries(defaults) as [Pipeline, Record<string, string>][]) {
    t.strictSame(compileRunEnv({}, pipeline), want, `${pipeline}: submit's defaults`);
    // What the agent gets is what submit compiled; checking it again must not add another pipeline's.
    t.strictSame(checkRunEnv(compileRunEnv({}, pipeline), pipeline), want, `${pipeline}: the agent's check adds nothing`);
    t.strictSame(checkRunEnv({}, pipeline), want, `${pipeline}: an env with nothing set gets the same defaults on the agent`);
  }
  t.notOk('save_training_data' in checkRunEnv({ save_test_data: 'true' }, Pipeline.Evaluate), 'an evaluation never sees save_training_data');
  t.strictSame(checkRunEnv({ save_test_data: 'true', LR: '0.1' }, Pipeline.Evaluate), { artifacts_directory: 'artifacts', save_test_data: 'true', LR: '0.1' },
    'the user\'s values win over the defaults');
});

t.test('the agent still refuses what submit refuses', async (t) => {
  for (const pipeline of Object.keys(defaults) as Pipeline[]) {
    t.throws(() => checkRunEnv({ LD_PRELOAD: '/tmp/x.so' }, pipeline), RefusedDispatch, `${pipeline}: a reserved name`);
    t.throws(() => checkRunEnv({ test_data_directory: '/etc' }, pipeline), /refused by the agent: environment variable test_data_directory is set by the agent/, `${pipeline}: a data folder`);
    t.throws(() => checkRunEnv({ save_test_data: 'maybe' }, pipeline), /save_test_data must be true or false/, `${pipeline}: a flag that is not a boolean`);
  }
});
