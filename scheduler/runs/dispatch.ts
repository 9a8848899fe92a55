import type { Selectable } from 'kysely';
import type { RunsTable } from '../db/database.js';
import type { Dispatch, Doorbell } from '../../shared/proto.js';
import { keys } from '../../shared/storage.js';
import { formatDatasetRef } from '../../shared/names.js';
import { formatVersion } from '../../shared/versions.js';
import { checkpointKeys, DEFAULT_CHECKPOINT_INTERVAL_S } from '../../shared/checkpoints.js';

/** NATS's dispatch message is only a doorbell: it names the run; the agent claims the rest over gRPC. */
export function doorbellFor(r: Pick<Selectable<RunsTable>, 'id' | 'attempt' | 'package_sha256'>): Doorbell {
  // The package's digest is a hint, nothing to act on: an agent that holds that version ready says so in
  // its claim, and the scheduler checks it against the run.
  return { run_id: r.id, attempt: r.attempt, package_sha256: r.package_sha256 ?? '' };
}

/** The run's datasets' generations, read by its claim (datasets/generation.ts claimGeneration). */
export interface DataGenerations { dataset_generation: number | null; eval_dataset_generation: number | null }

/** ClaimAttempt's answer: what an agent needs to run a placed run's current attempt. */
export function dispatchFor(r: Selectable<RunsTable> & DataGenerations, bucket: string): Dispatch {
  return {
    run_id: r.id,
    lease: r.lease!,
    attempt: r.attempt,
    package: r.package,
    version: formatVersion({ major: r.package_major, minor: r.package_minor }),
    package_object_key: r.package_object_key,
    dataset: formatDatasetRef(r.dataset, r.dataset_sub),
    dataset_prefix: keys.datasetPrefix(r.dataset, r.dataset_sub),
    env: r.env,
    gpu_indices: r.gpu_indices,
    timeout_seconds: r.timeout_seconds,
    output_prefix: keys.attemptPrefix(r.id, r.attempt),
    bucket,
    package_sha256: r.package_sha256 ?? '',
    pipeline: r.pipeline,
    eval_dataset: r.eval_dataset ? formatDatasetRef(r.eval_dataset, r.eval_dataset_sub) : '',
    eval_dataset_prefix: r.eval_dataset ? keys.datasetPrefix(r.eval_dataset, r.eval_dataset_sub) : '',
    project: r.project,
    checkpoint_interval_seconds: r.checkpoint_interval_seconds === 0 ? DEFAULT_CHECKPOINT_INTERVAL_S : r.checkpoint_interval_seconds,
    stall_timeout_seconds: r.stall_timeout_seconds,
    checkpoint_prefix: checkpointKeys.attemptPrefix(r.id, r.attempt),
    dataset_generation: r.dataset_generation ?? 0,
    eval_dataset_generation: r.eval_dataset_generation ?? 0,
  };
}
