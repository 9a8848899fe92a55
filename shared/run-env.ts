// The environment a run's code sees: AI Center's two documented variables with their defaults, then the
// user's own. Checked on submit, so a bad name never reaches an agent.
import { checkEnvName } from './names.js';
import { invalid } from './errors.js';

export const envDefaults = { artifacts_directory: 'artifacts', save_training_data: 'false' } as const;

export function compileRunEnv(user: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = { ...envDefaults };
  for (const [k, v] of Object.entries(user)) {
    checkEnvName(k);
    if (typeof v !== 'string') throw invalid(`environment variable ${k}: expected a string value`);
    if (v.includes('\0')) throw invalid(`environment variable ${k}: value contains a NUL byte`);
    env[k] = v;
  }
  if (!/^(true|false)$/i.test(env.save_training_data ?? '')) {
    throw invalid(`save_training_data must be true or false, got "${env.save_training_data}"`);
  }
  const art = env.artifacts_directory ?? '';
  if (art === '' || art.split(/[\\/]/).includes('..')) {
    throw invalid(`artifacts_directory "${art}" must be a folder inside the run's working folder (no '..')`);
  }
  return env;
}

export const wantsTrainingData = (env: Readonly<Record<string, string>>) => /^true$/i.test(env.save_training_data ?? '');
