// The environments the agent gives to what it runs for a run: pip (building the venv) and train.py. Both
// are built from an explicit list, never from the agent's own environment, which holds the agent's
// secrets (TRAINYARD_MINIO_SECRET_KEY, its tokens): a setup.py or a train.py must not find them there.
import path from 'node:path';
import { projectRoot, type Gpu } from '../shared/proto.js';
import { compileRunEnv } from '../shared/run-env.js';
import type { Pipeline } from '../shared/pipelines.js';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';

/**
 * Variables pip may need to reach an index (proxies, CA bundles) or a temp folder, passed through from
 * the agent's environment when set; nothing else of it is.
 */
const PIP_PASSTHROUGH = [
  'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY',
  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'REQUESTS_CA_BUNDLE', 'PIP_CERT', 'TMPDIR',
] as const;

const basePath = (agentEnv: NodeJS.ProcessEnv) => agentEnv.PATH ?? '/usr/local/bin:/usr/bin:/bin';

export function pipEnv(agentEnv: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {
    PATH: basePath(agentEnv),
    HOME: agentEnv.HOME ?? '/',
    LANG: agentEnv.LANG ?? 'C.UTF-8',
    PIP_NO_COLOR: '1',
    PYTHONUNBUFFERED: '1',
  };
  for (const k of PIP_PASSTHROUGH) {
    const v = agentEnv[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}

/** A dispatch the agent must not run; the run fails with this reason and nothing is spawned. */
export class RefusedDispatch extends TrainyardError {
  constructor(message: string) {
    super(ErrorCodes.InvalidArgument, message);
    this.name = 'RefusedDispatch';
  }
}

/**
 * The run's own variables, checked again here as at submit (shared/run-env.ts): a dispatch is not trusted
 * to come from a scheduler that checked it. With the run's pipeline, so the defaults filled in are that
 * pipeline's own (an evaluation gets no save_training_data).
 */
export function checkRunEnv(env: Readonly<Record<string, string>> | undefined, pipeline: Pipeline): Record<string, string> {
  try {
    return compileRunEnv(env ?? {}, pipeline);
  } catch (err) {
    throw new RefusedDispatch(`refused by the agent: ${(err as Error).message}`);
  }
}

/** The assigned GPUs' UUIDs: stable names, unlike indices, which CUDA may order differently from nvidia-smi. */
export function gpuUuids(indices: readonly number[], gpus: readonly Gpu[]): string[] {
  return indices.map((i) => {
    const g = gpus.find((x) => x.index === i);
    if (!g?.uuid) throw new RefusedDispatch(`refused by the agent: GPU ${i} is not one of this agent's`);
    return g.uuid;
  });
}

export interface TrainEnvOptions {
  agentEnv?: NodeJS.ProcessEnv;
  venv: string;
  home: string;
  /** The attempt's own temp folder (a run uid's); null: the agent's. */
  tmp?: string | null;
  /** The user train.py runs as, when not the agent's. */
  user?: string;
  runEnv: Readonly<Record<string, string>>;
  gpuUuids: readonly string[];
  runId: string;
  attempt: number;
  /** Where the run's data is: training_data_directory and, by pipeline, its other folders. */
  folders: Readonly<Record<string, string>>;
}

export function trainEnv(o: TrainEnvOptions): Record<string, string> {
  const agentEnv = o.agentEnv ?? process.env;
  return {
    PATH: `${o.venv}/bin:${basePath(agentEnv)}`,
    HOME: o.home,
    ...(o.tmp ? { TMPDIR: o.tmp } : {}),
    LANG: agentEnv.LANG ?? 'C.UTF-8',
    ...(o.user ? { USER: o.user, LOGNAME: o.user } : {}),
    VIRTUAL_ENV: o.venv,
    PYTHONUNBUFFERED: '1',
    ...o.runEnv,
    // A run sees only the GPUs it was given, by UUID; a run that asked for none sees none.
    CUDA_VISIBLE_DEVICES: o.gpuUuids.join(','),
    CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
    TRAINYARD_RUN_ID: o.runId,
    TRAINYARD_ATTEMPT: String(o.attempt),
    ...o.folders,
  };
}

/** The Python side of an attempt (agent/harness/trainyard_harness.py). */
export const harnessPath = () => path.join(projectRoot(), 'agent', 'harness', 'trainyard_harness.py');
/** A sealed venv's bytecode compiler (agent/venv.ts compileVenvBytecode), run by root with the base interpreter. */
export const compilerPath = () => path.join(projectRoot(), 'agent', 'harness', 'trainyard_compile.py');
/** The run's supervisor (agent/reattach.ts), started by the base interpreter for a spawned run. */
export const supervisorPath = () => path.join(projectRoot(), 'agent', 'harness', 'trainyard_supervisor.py');
