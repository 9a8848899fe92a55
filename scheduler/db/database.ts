// Kysely over pg, and the row types of migrations/*.sql.
import type { Pipeline } from '../../shared/pipelines.js';
import { Kysely, PostgresDialect, type ColumnType, type Generated } from 'kysely';
import pg from 'pg';
import type { RunStatus } from '../../shared/run-states.js';
import type { AgentStatus } from '../agents/status.js';
import type { EventKind } from '../../shared/event-kinds.js';
import type { ScheduleState } from '../../shared/schedule-states.js';
import type { ResumedFrom } from '../../shared/checkpoints.js';

// Bigints come back as JS numbers: counts and byte sizes stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface PackagesTable { name: string; description: Generated<string>; created_at: Generated<Date>; /** migrations/006 */ project: Generated<string> }
export interface PackageVersionsTable {
  package: string; major: number; minor: number; source: 'upload' | 'run'; run_id: string | null;
  trained_major: number | null; trained_minor: number | null; object_key: string; size_bytes: number; sha256: string;
  created_at: Generated<Date>;
  /** migrations/010 */
  score: ColumnType<number | null, number | null | undefined, number | null>;
  has_evaluate: ColumnType<boolean | null, boolean | null | undefined, boolean | null>;
  /** migrations/024: marked for deletion (scheduler/storage/deletion.ts): no read sees it; its objects go, then the row. */
  deleting_at: ColumnType<Date | null, Date | null | undefined, Date | string | null>; deleted_by: ColumnType<string | null, string | null | undefined, string | null>;
}
export interface DatasetsTable {
  name: string; file_count: number; size_bytes: number; created_at: Generated<Date>; updated_at: Timestamp; /** migrations/006 */ project: Generated<string>;
  /** migrations/024: marked for deletion (scheduler/storage/deletion.ts): no read sees it; its objects go, then the row. */
  deleting_at: ColumnType<Date | null, Date | null | undefined, Date | string | null>; deleted_by: ColumnType<string | null, string | null | undefined, string | null>;
  /** migrations/038: a new one at every change Trainyard makes to its objects (datasets/generation.ts). */
  generation: Generated<number>;
  /** migrations/038: pushes storing files into it now, and when one was last heard of. */
  pushes_open: Generated<number>; push_seen_at: ColumnType<Date | null, Date | null | undefined, Date | string | null>;
}
/** migrations/014: a new dataset's name, claimed by the project whose first push is running. */
export interface DatasetClaimsTable { name: string; project: string; claimed_at: Generated<Date>; /** migrations/038: the push holding it */ push_id: ColumnType<string | null, string | null | undefined, string | null> }
/** migrations/037: multipart uploads begun for a push's large files, open until the push completes or gives them up. */
export interface DatasetUploadsTable { upload_id: string; project: string; object_key: string; size_bytes: number; part_bytes: number; started_at: Generated<Date> }
export interface AgentsTable {
  /** migrations/012: run slots (0: no limit). */
  max_runs: ColumnType<number, number | undefined, number>;
  name: string; hostname: string; version: string; status: AgentStatus; session: number;
  cpus: number; memory_mb: number; labels: ColumnType<Record<string, string>, string, string>;
  last_heartbeat_at: Timestamp; registered_at: Timestamp; unresponsive_since: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** migrations/005: SHA-256 of the agent's work-dir identity (null until its first Register since then); its peer address. */
  identity_sha256: ColumnType<string | null, string | null | undefined, string | null>; address: Generated<string>;
  /** migrations/018: --accept-projects (null: every project's runs). */
  accept_projects: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
  /** migrations/022: the agent's disk caches, from its last heartbeat (null: not reported). */
  cache_use: ColumnType<CacheUseRow | null, string | null | undefined, string | null>;
  /** migrations/035: --advertise-addr and --rendezvous-ports (a gang's MASTER_ADDR and MASTER_PORT when rank 0 is here). */
  advertise_addr: Generated<string>; rendezvous_lo: Generated<number>; rendezvous_hi: Generated<number>;
}
/** agents.cache_use (jsonb): the venv cache (migrations/022); the data and package caches (issue 21, absent in older rows). */
export interface CacheUseRow { venv_bytes: number; venv_cap_bytes: number; data_bytes?: number; data_cap_bytes?: number; package_bytes?: number }
export interface AgentGpusTable { agent: string; index: number; uuid: string; name: string; memory_mb: number }
export interface RunsTable {
  id: string; idempotency_key: string | null; project: string; priority: number;
  package: string; package_major: number; package_minor: number; package_object_key: string;
  dataset: string; dataset_sub: string;
  gpus: number; gpu_model: string; gpu_memory_mb: number; cpus: number; memory_mb: number;
  selector: ColumnType<Record<string, string>, string, string>;
  env: ColumnType<Record<string, string>, string, string>;
  timeout_seconds: number; max_attempts: number;
  status: ColumnType<RunStatus, RunStatus | undefined, RunStatus>;
  status_detail: Generated<string>;
  attempt: Generated<number>; lost_attempts: Generated<number>;
  lease: number | null; agent: string | null; last_agent: string | null; gpu_indices: ColumnType<number[], number[] | undefined, number[]>;
  dispatched_at: Date | null; acked_at: Date | null; kill_requested: Generated<boolean>;
  failure_reason: string | null; output_major: number | null; output_minor: number | null;
  /** migrations/018: bytes under the attempt's prefix at its success (storage quota). */
  output_bytes: ColumnType<string, number | undefined, number>;
  results: ColumnType<unknown, string | null, string | null>;
  last_log_seq: Generated<number>;
  created_at: Generated<Date>; waiting_at: Date | null; packaging_at: Date | null; running_at: Date | null; ended_at: Date | null;
  /** migrations/007 */
  package_sha256: string | null; secret_names: ColumnType<string[], string[] | undefined, string[]>;
  /** migrations/028: on a victim, the run it is preempted for (while its agent stops it); on a preemptor, the agent held for it. */
  preempted_by: ColumnType<string | null, string | null | undefined, string | null>;
  reserved_agent: ColumnType<string | null, string | null | undefined, string | null>;
  /** migrations/010 */
  pipeline: ColumnType<Pipeline, Pipeline | undefined, Pipeline>;
  eval_dataset: ColumnType<string | null, string | null | undefined, string | null>;
  eval_dataset_sub: ColumnType<string, string | undefined, string>;
  score: ColumnType<number | null, number | null | undefined, number | null>;
  phases: ColumnType<PhaseRow[], string | undefined, string>;
  /** migrations/011 */
  lineage: ColumnType<unknown, string | null | undefined, string | null>;
  /** migrations/017: what a successful attempt left under its prefix when it committed (run outputs serves these only). */
  outputs: ColumnType<RecordedOutput[] | null, string | null | undefined, string | null>;
  /** migrations/008: the schedule that fired the run (its name) and the firing it stands for. */
  schedule: ColumnType<string | null, string | null | undefined, string | null>;
  schedule_fire_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** migrations/021: heartbeats in a row whose held list left this acknowledged attempt out (scheduler/agents/reconcile.ts). */
  missed_beats: Generated<number>;
  /** migrations/027: checkpoints (shared/checkpoints.ts) and --stall-timeout, as submitted; what the latest attempt resumed from. */
  checkpoint_interval_seconds: ColumnType<number, number | undefined, number>;
  stall_timeout_seconds: ColumnType<number, number | undefined, number>;
  resume_from: ColumnType<string | null, string | null | undefined, string | null>;
  keep_checkpoints: ColumnType<boolean, boolean | undefined, boolean>;
  resumed_from: ColumnType<ResumedFrom | null, string | null | undefined, string | null>;
  /** migrations/033: capacity released at process exit (uploading); the newest reported checkpoint, and what the run's checkpoints hold. */
  released_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  checkpoint_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  checkpoint_bytes: ColumnType<string, number | undefined, number>;
  checkpoint_attempt: ColumnType<number, number | undefined, number>;
  checkpoint_attempt_bytes: ColumnType<string, number | undefined, number>;
  /** migrations/024: marked for deletion (scheduler/storage/deletion.ts): no read sees it; its objects go, then the row. */
  deleting_at: ColumnType<Date | null, Date | null | undefined, Date | string | null>; deleted_by: ColumnType<string | null, string | null | undefined, string | null>;
  /** migrations/035: a gang run's members and processes per member; the rendezvous port of its current attempt. */
  agents: Generated<number>; procs_per_agent: Generated<number>; master_port: Generated<number | null>;
  /** migrations/036: a gang's --prefer-same label ('' = none). */
  prefer_same: Generated<string>;
}
/** migrations/035: a gang run's members of node rank >= 1 (rank 0 is the run's own agent). */
export interface RunMembersTable {
  run_id: string; node_rank: number; lease: number; agent: string; gpu_indices: number[];
  acked_at: Date | null; ended_at: Date | null; outcome: string | null;
}
export interface PhaseRow { name: string; started_at: number; ended_at: number }
/** migrations/007: never read by a client API; deleted with the run's end. */
export interface RunSecretsTable { run_id: string; name: string; value: string }
export interface GpuLeasesTable { agent: string; gpu_index: number; run_id: string; lease: number }
export interface RunEventsTable { id: Generated<number>; run_id: string; attempt: number; status: RunStatus; detail: string; at: Generated<Date> }
export interface RunLogsTable { run_id: string; attempt: number; seq: number; stream: string; text: string; at: Timestamp }

export interface InvariantViolationsTable {
  id: Generated<number>; kind: string; run_id: string; agent: string; detail: string; repaired: boolean; found_at: Generated<Date>;
}

export interface ProjectLimitsTable {
  project: string; max_runs: number | null; max_gpus: number | null; /** migrations/006 */ max_priority: ColumnType<number | null, number | null | undefined, number | null>;
  /** migrations/018: the agents P's runs may use (labels they must all have; null: any), exclusivity, storage quota. */
  agent_labels: ColumnType<Record<string, string> | null, string | null | undefined, string | null>;
  exclusive: ColumnType<boolean, boolean | undefined, boolean>;
  max_storage_bytes: ColumnType<string | null, number | null | undefined, number | null>;
  /** migrations/028: its runs may be preempted by higher-priority runs (`--preemptible`, default false). */
  preemptible: ColumnType<boolean, boolean | undefined, boolean>;
  /** migrations/024: retention (null: keep for ever). */
  keep_runs_seconds: ColumnType<number | null, number | null | undefined, number | null>;
  keep_versions: ColumnType<number | null, number | null | undefined, number | null>;
}
/** migrations/028: each preemption of a run, for `run get`. */
export interface RunPreemptionsTable { run_id: string; attempt: number; by_run: string; agent: string; at: Generated<Date> }
/** migrations/006: client and join tokens; only the secret's SHA-256 is stored. */
/** One object a successful attempt left, as recorded at its commit. */
export interface RecordedOutput { path: string; size: number; etag: string }

export interface TokensTable {
  id: string; secret_sha256: string; name: Generated<string>; project: string; role: 'admin' | 'member' | 'reader' | 'join';
  created_at: Generated<Date>; expires_at: Date | null; revoked_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  last_used_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** migrations/017: how many more agents may join with it (join tokens); null: any number. */
  uses_left: ColumnType<number | null, number | null | undefined, number | null>;
}

/** migrations/008: the ML log; kinds in shared/event-kinds.ts. */
export interface EventsTable {
  id: Generated<number>; at: Generated<Date>; kind: EventKind; project: string | null; subject: string; detail: Generated<string>;
  data: ColumnType<Record<string, unknown>, string | undefined, string>;
}
/** migrations/008: schedules; states in shared/schedule-states.ts. */
export interface SchedulesTable {
  id: string; name: string; project: string; state: ScheduleState; cron: string | null; timezone: string; at: Date | null;
  request: ColumnType<Record<string, unknown>, string, string>;
  next_fire_at: Date | null; created_at: Generated<Date>; created_by: Generated<string>;
  last_fired_at: ColumnType<Date | null, Date | null | undefined, Date | null>; last_run_id: ColumnType<string | null, string | null | undefined, string | null>;
  last_error: Generated<string>; fired_count: Generated<number>; failed_count: Generated<number>;
  missed_total: Generated<number>; last_missed: Generated<number>; last_missed_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export interface Database {
  events: EventsTable;
  schedules: SchedulesTable;
  project_limits: ProjectLimitsTable;
  run_preemptions: RunPreemptionsTable;
  packages: PackagesTable;
  package_versions: PackageVersionsTable;
  datasets: DatasetsTable;
  dataset_claims: DatasetClaimsTable;
  dataset_uploads: DatasetUploadsTable;
  agents: AgentsTable;
  agent_gpus: AgentGpusTable;
  runs: RunsTable;
  run_members: RunMembersTable;
  gpu_leases: GpuLeasesTable;
  run_events: RunEventsTable;
  run_logs: RunLogsTable;
  run_secrets: RunSecretsTable;
  invariant_violations: InvariantViolationsTable;
  tokens: TokensTable;
}

export type Db = Kysely<Database>;

export function createDb(connectionString: string, max = 10): { db: Db; pool: pg.Pool } {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 10_000 });
  // An idle client's error (the server restarted) must not crash the daemon; the pool replaces it.
  pool.on('error', () => {});
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), pool };
}
