import { sql, type Selectable } from 'kysely';
import type { RunsTable } from '../db/database.js';
import type { Run } from '../../shared/proto.js';
import { formatVersion } from '../../shared/versions.js';
import { keys, outputNames } from '../../shared/storage.js';
import { formatDatasetRef } from '../../shared/names.js';

const iso = (d: Date | null) => (d ? d.toISOString() : '');

/**
 * Every column of runs but the two that grow with the run: its lineage (a data manifest of up to 20,000
 * files, MiBs of JSON) and its outputs (every file it uploaded). A read of runs for clients takes these and
 * `runLean` in their place: a list of 50 runs of a 20,000-file dataset read, parsed and dropped 115 MB of
 * lineage, and GetRun parsed a lineage only to write it out again.
 */
export const LEAN_COLUMNS = [
  'id', 'idempotency_key', 'project', 'priority', 'package', 'package_major', 'package_minor', 'package_object_key',
  'dataset', 'dataset_sub', 'gpus', 'gpu_model', 'gpu_memory_mb', 'cpus', 'memory_mb', 'selector', 'env',
  'timeout_seconds', 'max_attempts', 'status', 'status_detail', 'attempt', 'lost_attempts', 'lease', 'agent',
  'last_agent', 'gpu_indices', 'dispatched_at', 'acked_at', 'kill_requested', 'failure_reason', 'output_major',
  'output_minor', 'output_bytes', 'results', 'last_log_seq', 'created_at', 'waiting_at', 'packaging_at',
  'running_at', 'ended_at', 'package_sha256', 'secret_names', 'preempted_by', 'reserved_agent', 'pipeline',
  'eval_dataset', 'eval_dataset_sub', 'score', 'phases', 'schedule', 'schedule_fire_at', 'missed_beats',
  'checkpoint_interval_seconds', 'stall_timeout_seconds', 'resume_from', 'keep_checkpoints', 'resumed_from',
  'released_at', 'checkpoint_at', 'checkpoint_bytes', 'checkpoint_attempt', 'checkpoint_attempt_bytes',
  'deleting_at', 'deleted_by', 'agents', 'procs_per_agent', 'master_port', 'prefer_same',
] as const satisfies readonly (keyof RunsTable)[];
// A column added to runs and not listed above fails the build here (it would be missing from every read).
type Unlisted = Exclude<keyof RunsTable, (typeof LEAN_COLUMNS)[number] | 'lineage' | 'outputs'>;
const everyColumn: [Unlisted] extends [never] ? true : Unlisted = true;
void everyColumn;

/** A run as a client is shown it (runToProto): the lean columns, and what it is shown of the lineage and the outputs. */
export type RunView = Pick<Selectable<RunsTable>, (typeof LEAN_COLUMNS)[number]> & {
  /** The new version's zip SHA-256 (the lineage's output.sha256); null without one. */
  output_sha256: string | null;
  /** The run recorded its outputs (runs.outputs is not NULL). */
  has_outputs: boolean;
  /** _lineage.json as Postgres writes it, passed through to the client as it is; null in a list, or none. */
  lineage_text: string | null;
};

/**
 * The select of a run (from runs, or a CTE of its rows) as a RunView: LEAN_COLUMNS, and the lineage whole
 * only `withLineage` (GetRun, a submit's answer; a list leaves it out).
 */
export function runLean(withLineage: boolean) {
  return [
    ...LEAN_COLUMNS,
    sql<string | null>`lineage->'output'->>'sha256'`.as('output_sha256'),
    sql<boolean>`outputs IS NOT NULL`.as('has_outputs'),
    (withLineage ? sql<string | null>`lineage::text` : sql<string | null>`NULL::text`).as('lineage_text'),
  ] as const;
}

/**
 * Where the run's new version is registered: the verified zip's copy under packages/ (complete.ts), for a
 * run that recorded its outputs; the attempt's own package.zip for one from before that.
 */
function outputObjectKey(r: RunView): string {
  if (r.output_major === null) return '';
  return r.has_outputs && r.output_sha256 !== null ? keys.uploadedPackage(r.package, r.output_sha256) : keys.attemptPrefix(r.id, r.attempt) + outputNames.package;
}

/** The run as clients get it; its lineage as runLean read it (none in a list). */
export function runToProto(r: RunView): Run {
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
    lineage_json: r.lineage_text ?? '',
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
