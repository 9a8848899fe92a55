// What an agent accepts before it acts. NATS carries no authority: the dispatch message is a doorbell
// naming a run, and the attempt's details come from ClaimAttempt over gRPC. Even then every field is
// checked here before anything touches the disk or the bucket, so a forged or corrupted message can at
// worst be refused (and logged): ids match their pattern, keys sit under the prefixes the layout gives
// them (README, "MinIO layout"), GPUs are this agent's own, the env passes the submit-time rules.
import type { Dispatch, Dispatch__Output } from '../shared/proto.js';
import { checkpointKeys } from '../shared/checkpoints.js';
import { isRunId, MAX_ATTEMPT } from '../shared/ids.js';
import { checkName, parseDatasetRef } from '../shared/names.js';
import { checkRunSecrets, compileRunEnv } from '../shared/run-env.js';
import { Pipeline, parsePipeline } from '../shared/pipelines.js';
import { keys } from '../shared/storage.js';
import { errorMessage } from '../shared/errors.js';
import { checkGangPlace } from './gang-env.js';

/** Why a doorbell or a dispatch was refused (the agent logs it and changes nothing). */
export class DispatchRefused extends Error {
  override readonly name = 'DispatchRefused';
}

/** `packageSha256`: the run's package digest, a hint only ('' when absent or not a digest). */
export interface Doorbell { readonly runId: string; readonly attempt: number; readonly packageSha256: string }

/** A dispatch whose every field was checked (only validateDispatch makes one). */
export type ValidDispatch = Readonly<Dispatch>;

const refuse = (why: string): never => { throw new DispatchRefused(why); };
const show = (v: unknown) => JSON.stringify(v)?.slice(0, 120) ?? String(v);

function attemptNumber(v: unknown, what: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_ATTEMPT) refuse(`${what} ${show(v)} is not an attempt number (1-${MAX_ATTEMPT})`);
  return n;
}

/** The NATS message: `{ run_id, attempt? }`. Anything that is not a run id is refused before any call. */
export function parseDoorbell(data: Uint8Array): Doorbell {
  let msg: unknown;
  try { msg = JSON.parse(new TextDecoder().decode(data)); } catch (err) { return refuse(`unreadable message: ${errorMessage(err)}`); }
  if (typeof msg !== 'object' || msg === null) return refuse('not a JSON object');
  const { run_id: runId, attempt, package_sha256: sha } = msg as Record<string, unknown>;
  if (!isRunId(runId)) return refuse(`run_id ${show(runId)} is not a run id (run_ + 14 of [0-9a-z])`);
  return {
    runId, attempt: attempt === undefined || attempt === 0 ? 0 : attemptNumber(attempt, 'attempt'),
    packageSha256: typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) ? sha : '',
  };
}

const PACKAGE_UPLOAD = /^packages\/([^/]+)\/[0-9a-f]{64}\/package\.zip$/;
const PACKAGE_FROM_RUN = /^runs\/(run_[0-9a-z]{14})\/attempt-([1-9][0-9]*)\/package\.zip$/;

/**
 * Checks ClaimAttempt's answer for the doorbell it answers. Throws DispatchRefused naming the first field
 * that is wrong; returns the dispatch with its env compiled (defaults filled in) otherwise.
 */
/**
 * `acceptProjects`: --accept-projects (empty: every project's). The scheduler never places another
 * project's run here; this is the agent's own check of the same rule, should it ever be asked to.
 */
export function validateDispatch(d: Dispatch__Output, o: { doorbell: Doorbell; bucket: string; gpuIndices: readonly number[]; acceptProjects?: readonly string[] }): ValidDispatch {
  const runId = d.run_id;
  if (!isRunId(runId)) refuse(`run_id ${show(runId)} is not a run id`);
  if (runId !== o.doorbell.runId) refuse(`claimed ${o.doorbell.runId} but was given ${show(runId)}`);
  const attempt = attemptNumber(d.attempt, 'attempt');
  if (o.doorbell.attempt && attempt !== o.doorbell.attempt) refuse(`doorbell named attempt ${o.doorbell.attempt}, claim gave ${attempt}`);
  const lease = Number(d.lease);
  if (!Number.isSafeInteger(lease) || lease < 1) refuse(`lease ${show(d.lease)} is not a positive integer`);
  if (d.bucket !== o.bucket) refuse(`bucket ${show(d.bucket)} is not this agent's bucket ${o.bucket}`);
  if (o.acceptProjects?.length && !o.acceptProjects.includes(d.project)) {
    refuse(`project ${show(d.project)} is not one this agent accepts (--accept-projects ${o.acceptProjects.join(',')})`);
  }
  const check = (f: () => unknown) => { try { f(); } catch (err) { refuse(errorMessage(err)); } };
  check(() => checkName('package', d.package));
  if (!/^[0-9]{1,9}\.[0-9]{1,9}$/.test(d.version)) refuse(`version ${show(d.version)} is not MAJOR.MINOR`);
  // The package zip: an uploaded version under its own name, or a version a run made (runs/RUN/attempt-N/).
  const up = PACKAGE_UPLOAD.exec(d.package_object_key);
  if (up ? up[1] !== d.package : !PACKAGE_FROM_RUN.test(d.package_object_key)) {
    refuse(`package key ${show(d.package_object_key)} is neither packages/${d.package}/SHA256/package.zip nor runs/RUN/attempt-N/package.zip`);
  }
  let dataset = { name: '', sub: '' };
  check(() => { dataset = parseDatasetRef(d.dataset); });
  const wantData = keys.datasetPrefix(dataset.name, dataset.sub);
  if (d.dataset_prefix !== wantData) refuse(`dataset prefix ${show(d.dataset_prefix)} is not ${wantData} (dataset ${d.dataset})`);
  const wantOut = keys.attemptPrefix(runId, attempt);
  if (d.output_prefix !== wantOut) refuse(`output prefix ${show(d.output_prefix)} is not ${wantOut}`);
  const gpus = d.gpu_indices ?? [];
  if (new Set(gpus).size !== gpus.length || gpus.some((g) => !o.gpuIndices.includes(g))) {
    refuse(`GPUs ${show(gpus)} are not distinct GPUs of this agent (${o.gpuIndices.join(',') || 'none'})`);
  }
  // A gang run's member (agent/gang-env.ts): its place in the gang, checked like the rest.
  const gang = checkGangPlace(d.gang, gpus.length);
  if (typeof gang === 'string') refuse(gang);
  const timeout = Number(d.timeout_seconds ?? 0);
  if (!Number.isSafeInteger(timeout) || timeout < 0) refuse(`timeout ${show(d.timeout_seconds)} is not a number of seconds`);
  // Checkpoints (agent/checkpoints.ts): where this attempt writes them is its own folder and nowhere else;
  // the pointer to resume from is checked by the attempt before anything is fetched.
  const interval = Number(d.checkpoint_interval_seconds ?? 0);
  if (!Number.isSafeInteger(interval)) refuse(`checkpoint interval ${show(d.checkpoint_interval_seconds)} is not a number of seconds`);
  const stall = Number(d.stall_timeout_seconds ?? 0);
  if (!Number.isSafeInteger(stall) || stall < 0) refuse(`stall timeout ${show(d.stall_timeout_seconds)} is not a number of seconds`);
  const wantCheckpoints = checkpointKeys.attemptPrefix(runId, attempt);
  if (d.checkpoint_prefix && d.checkpoint_prefix !== wantCheckpoints) refuse(`checkpoint prefix ${show(d.checkpoint_prefix)} is not ${wantCheckpoints}`);
  let pipeline = Pipeline.Train as Pipeline;
  check(() => { pipeline = parsePipeline(d.pipeline); });
  let evalPrefix = '';
  if (d.eval_dataset) {
    if (pipeline !== Pipeline.Full) refuse(`an evaluation dataset for a ${pipeline} run`);
    let ev = { name: '', sub: '' };
    check(() => { ev = parseDatasetRef(d.eval_dataset, 'eval_dataset'); });
    evalPrefix = keys.datasetPrefix(ev.name, ev.sub);
    if (d.eval_dataset_prefix !== evalPrefix) refuse(`eval dataset prefix ${show(d.eval_dataset_prefix)} is not ${evalPrefix} (dataset ${d.eval_dataset})`);
  } else if (d.eval_dataset_prefix) {
    refuse(`eval dataset prefix ${show(d.eval_dataset_prefix)} without an evaluation dataset`);
  }
  // A dataset's generation only lets the agent use a listing it made itself again (agent/data-cache.ts).
  const generation = (v: unknown, what: string) => {
    const n = Number(v ?? 0);
    if (!Number.isSafeInteger(n) || n < 0) refuse(`${what} generation ${show(v)} is not a whole number of at least 0`);
    return n;
  };
  const dataGeneration = generation(d.dataset_generation, 'dataset');
  const evalGeneration = evalPrefix ? generation(d.eval_dataset_generation, 'eval dataset') : 0;
  let env: Record<string, string> = {};
  check(() => { env = compileRunEnv(d.env ?? {}, pipeline); });
  let secrets: Record<string, string> = {};
  check(() => { secrets = checkRunSecrets(d.secrets ?? {}, env); });
  if (!/^[0-9a-f]{64}$/.test(d.package_sha256)) refuse(`package_sha256 ${show(d.package_sha256)} is not a SHA-256 (64 hex digits)`);
  // Agents hold no storage keys: an attempt comes with its own, scoped to it (scheduler/storage/).
  const c = d.storage;
  if (!c || !c.access_key || !c.secret_key || !c.session_token) refuse('the claim carries no storage credentials');
  const expires = Number(c!.expires_at_ms);
  if (!Number.isSafeInteger(expires) || expires <= Date.now()) refuse(`the storage credentials expire at ${show(c!.expires_at_ms)}, not in the future`);
  return Object.freeze({
    run_id: runId, lease, attempt, package: d.package, version: d.version, package_object_key: d.package_object_key,
    dataset: d.dataset, dataset_prefix: d.dataset_prefix, dataset_generation: dataGeneration, eval_dataset_generation: evalGeneration, env, gpu_indices: [...gpus], timeout_seconds: timeout,
    output_prefix: wantOut, bucket: d.bucket, package_sha256: d.package_sha256, secrets,
    pipeline, eval_dataset: d.eval_dataset, eval_dataset_prefix: evalPrefix, running: d.running === true,
    storage: { access_key: c!.access_key, secret_key: c!.secret_key, session_token: c!.session_token, expires_at_ms: expires },
    checkpoint_interval_seconds: interval, stall_timeout_seconds: stall, checkpoint_prefix: wantCheckpoints, resume_pointer_json: d.resume_pointer_json ?? '',
    ...(gang && typeof gang !== 'string' ? { gang: { node_rank: gang.nodeRank, nnodes: gang.nnodes, procs_per_agent: gang.procs, master_addr: gang.masterAddr, master_port: gang.masterPort } } : {}),
  });
}
