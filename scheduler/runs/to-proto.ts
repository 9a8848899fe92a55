import type { Selectable } from 'kysely';
import type { RunsTable } from '../db/database.js';
import type { Run } from '../../shared/proto.js';
import { formatVersion } from '../../shared/versions.js';
import { keys, outputNames } from '../../shared/storage.js';
import { formatDatasetRef } from '../../shared/names.js';

const iso = (d: Date | null) => (d ? d.toISOString() : '');

/**
 * Where the run's new version is registered: the verified zip's copy under packages/ (complete.ts), for a
 * run that recorded its outputs; the attempt's own package.zip for one from before that.
 */
function outputObjectKey(r: Selectable<RunsTable>): string {
  if (r.output_major === null) return '';
  const sha256 = (r.lineage as { output?: { sha256?: unknown } } | null)?.output?.sha256;
  return r.outputs !== null && typeof sha256 === 'string' ? keys.uploadedPackage(r.package, sha256) : keys.attemptPrefix(r.id, r.attempt) + outputNames.package;
}

/** `lineage`: include _lineage.json (GetRun; lists leave it out, it can be large). */
export function runToProto(r: Selectable<RunsTable>, o: { lineage?: boolean } = {}): Run {
  return {
    id: r.id,
    status: r.status,
    package: r.package,
    version: formatVersion({ major: r.package_major, minor: r.package_minor }),
    dataset: formatDatasetRef(r.dataset, r.dataset_sub),
    resources: { gpus: r.gpus, gpu_model: r.gpu_model, gpu_memory_mb: r.gpu_memory_mb, cpus: r.cpus, memory_mb: r.memory_mb, selector: r.selector },
    env: r.env,
    attempt: r.attempt,
    max_attempts: r.max_attempts,
    agent: r.agent ?? r.last_agent ?? '',
    gpu_indices: r.gpu_indices,
    failure_reason: r.failure_reason ?? '',
    output_version: r.output_major !== null ? formatVersion({ major: r.output_major, minor: r.output_minor ?? 0 }) : '',
    results_json: r.results ? JSON.stringify(r.results) : '',
    times: {
      scheduled_at: iso(r.created_at), waiting_at: iso(r.waiting_at), packaging_at: iso(r.packaging_at),
      running_at: iso(r.running_at), ended_at: iso(r.ended_at),
    },
    timeout_seconds: r.timeout_seconds,
    priority: r.priority,
    project: r.project,
    kill_requested: r.kill_requested,
    status_detail: r.status_detail,
    secret_names: r.secret_names ?? [],
    pipeline: r.pipeline,
    eval_dataset: r.eval_dataset ? formatDatasetRef(r.eval_dataset, r.eval_dataset_sub) : '',
    score: r.score ?? 0,
    has_score: r.score !== null && r.score !== undefined,
    phases: r.phases ?? [],
    output_object_key: outputObjectKey(r),
    lineage_json: o.lineage && r.lineage ? JSON.stringify(r.lineage) : '',
    schedule: r.schedule ?? '',
    ...(r.resumed_from ? { resumed_from: { run_id: r.resumed_from.run_id, attempt: r.resumed_from.attempt, seq: r.resumed_from.seq, committed_at: r.resumed_from.committed_at, bytes: r.resumed_from.bytes, files: r.resumed_from.files } } : {}),
    checkpoint_interval_seconds: r.checkpoint_interval_seconds,
    stall_timeout_seconds: r.stall_timeout_seconds,
    resume_from: r.resume_from ?? '',
    keep_checkpoints: r.keep_checkpoints,
    agents: r.agents,
    procs_per_agent: r.procs_per_agent,
    prefer_same: r.prefer_same ?? '',
  };
}
