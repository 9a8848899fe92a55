// The environment a run's code sees: AI Center's two documented variables with their defaults, then the
// user's own. Checked on submit, so a bad name never reaches an agent, and checked again by the agent
// before it spawns anything (a dispatch is not trusted to have come from a scheduler that checked).
import { checkEnvName } from './names.js';
import { invalid } from './errors.js';
import { Pipeline } from './pipelines.js';

/** AI Center's documented variables, per pipeline, with their defaults; the user may set these. */
export const envDefaults = { artifacts_directory: 'artifacts', save_training_data: 'false' } as const;
const pipelineDefaults: Record<Pipeline, Record<string, string>> = {
  [Pipeline.Train]: envDefaults,
  [Pipeline.Evaluate]: { artifacts_directory: 'artifacts', save_test_data: 'false' },
  [Pipeline.Full]: { artifacts_directory: 'artifacts', save_training_data: 'false', save_test_data: 'false' },
};
/**
 * The folders the agent sets for the run's code (AI Center's names; the test folder under both names
 * AI Center's pages use): the agent decides where they are, so a run may not.
 */
export const AGENT_FOLDERS = ['data_directory', 'training_data_directory', 'test_data_directory', 'evaluation_data_directory'] as const;
/** The checkpoint variables the agent sets (README, "Checkpoints"): where to write one, and what was resumed. */
export const AGENT_CHECKPOINT_VARS = ['checkpoint_directory', 'resumed_from'] as const;

/** All of a run's env, names and values together, in UTF-8 bytes. */
export const MAX_ENV_BYTES = 64 * 1024;

/**
 * Names a run may not set: the agent's own (TRAINYARD_*), the GPU assignment (CUDA_*, NVIDIA_*), the
 * loader (LD_*: LD_PRELOAD would run code in every process of the venv), and what locates the interpreter,
 * its packages and the home folder.
 */
const RESERVED_PREFIXES = ['TRAINYARD_', 'CUDA_', 'NVIDIA_', 'LD_'] as const;
const RESERVED_NAMES: ReadonlySet<string> = new Set(['PYTHONPATH', 'PYTHONHOME', 'PATH', 'HOME', 'VIRTUAL_ENV']);

export function reservedEnvName(name: string): boolean {
  const upper = name.toUpperCase();
  return RESERVED_NAMES.has(upper) || RESERVED_PREFIXES.some((p) => upper.startsWith(p));
}

/** What variables cost against MAX_ENV_BYTES: name and value in UTF-8, and '=' and NUL as the kernel stores them. */
function envBytes(vars: Readonly<Record<string, string>>): number {
  return Object.entries(vars).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v) + 2, 0);
}

export function compileRunEnv(user: Readonly<Record<string, string>>, pipeline: Pipeline = Pipeline.Train): Record<string, string> {
  const env: Record<string, string> = { ...pipelineDefaults[pipeline] };
  for (const [k, v] of Object.entries(user)) {
    checkEnvName(k);
    if (reservedEnvName(k)) {
      throw invalid(`environment variable ${k} is reserved (TRAINYARD_*, CUDA_*, NVIDIA_*, LD_*, PYTHONPATH, PYTHONHOME, PATH, HOME and VIRTUAL_ENV are set by the agent)`);
    }
    if ((AGENT_FOLDERS as readonly string[]).includes(k)) throw invalid(`environment variable ${k} is set by the agent (it says where the run's data is)`);
    if ((AGENT_CHECKPOINT_VARS as readonly string[]).includes(k)) throw invalid(`environment variable ${k} is set by the agent (it says where the run's checkpoints are)`);
    if (typeof v !== 'string') throw invalid(`environment variable ${k}: expected a string value`);
    if (v.includes('\0')) throw invalid(`environment variable ${k}: value contains a NUL byte`);
    env[k] = v;
  }
  const bytes = envBytes(user);
  if (bytes > MAX_ENV_BYTES) throw invalid(`the run's environment is ${bytes} bytes; at most ${MAX_ENV_BYTES} are allowed`);
  for (const flag of ['save_training_data', 'save_test_data']) {
    if (env[flag] !== undefined && !/^(true|false)$/i.test(env[flag])) throw invalid(`${flag} must be true or false, got "${env[flag]}"`);
  }
  const art = env.artifacts_directory ?? '';
  if (art === '' || art.startsWith('/') || art.startsWith('\\') || art.split(/[\\/]/).includes('..')) {
    throw invalid(`artifacts_directory "${art}" must be a relative folder inside the run's working folder (not absolute, no '..')`);
  }
  return env;
}

export const wantsTrainingData = (env: Readonly<Record<string, string>>) => /^true$/i.test(env.save_training_data ?? '');
export const wantsTestData = (env: Readonly<Record<string, string>>) => /^true$/i.test(env.save_test_data ?? '');

/** The most secrets a run may carry. */
export const MAX_SECRETS = 64;
/** Values shorter than this are not masked in logs (a 1-character mask would star out every "1" printed). */
export const MIN_MASKED_SECRET = 4;

/**
 * A run's secrets: names under the env rules (and not also given as env), values within the same size
 * budget as the env (counted together with it), no NUL. Returns them as given.
 */
export function checkRunSecrets(secrets: Readonly<Record<string, string>>, env: Readonly<Record<string, string>>): Record<string, string> {
  const names = Object.keys(secrets);
  if (names.length > MAX_SECRETS) throw invalid(`a run may carry at most ${MAX_SECRETS} secrets, got ${names.length}`);
  for (const [k, v] of Object.entries(secrets)) {
    checkEnvName(k);
    if (reservedEnvName(k)) throw invalid(`secret ${k}: the name is reserved (TRAINYARD_*, CUDA_*, NVIDIA_*, LD_*, PYTHONPATH, PYTHONHOME, PATH, HOME and VIRTUAL_ENV are set by the agent)`);
    if ((AGENT_FOLDERS as readonly string[]).includes(k) || (AGENT_CHECKPOINT_VARS as readonly string[]).includes(k) || Object.prototype.hasOwnProperty.call(env, k)) throw invalid(`secret ${k}: the name is also given as an environment variable`);
    if (typeof v !== 'string' || v === '') throw invalid(`secret ${k}: the value is empty`);
    if (v.includes('\0')) throw invalid(`secret ${k}: value contains a NUL byte`);
  }
  const bytes = envBytes(env) + envBytes(secrets);
  if (bytes > MAX_ENV_BYTES) throw invalid(`the run's environment and secrets are ${bytes} bytes; at most ${MAX_ENV_BYTES} are allowed`);
  return { ...secrets };
}
