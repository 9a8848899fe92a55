// The shapes /api/ answers with (the gRPC API's messages as JSON, proto/trainyard.proto), as far as the
// pages use them.
export interface Me { token_id?: string; role?: 'admin' | 'member' | 'reader'; project?: string; statuses: string[]; pipelines: string[]; event_kinds: string[] }
export interface Phase { name: string; started_at: number; ended_at: number }
export interface Run {
  id: string; status: string; package: string; version: string; dataset: string; eval_dataset: string; project: string; pipeline: string;
  attempt: number; max_attempts: number; agent: string; gpu_indices: number[]; failure_reason: string; status_detail: string;
  output_version: string; output_object_key: string; results_json: string; lineage_json: string; score: number; has_score: boolean;
  kill_requested: boolean; schedule: string; priority: number; env: Record<string, string>; secret_names: string[];
  resources: { gpus: number; cpus: number; memory_mb: number; gpu_model: string };
  times: { scheduled_at: string; waiting_at: string; packaging_at: string; running_at: string; ended_at: string };
  phases: Phase[];
  /** Issue 22: the checkpoint the latest attempt started from (README, "Checkpoints"); absent for a fresh start. */
  resumed_from?: { run_id: string; attempt: number; seq: number | string; committed_at: number; bytes: number | string; files: number } | null;
  /** Issue 24: a gang's members of its current (or last) attempt (GetRun only; empty for an ordinary run). */
  members?: RunMember[];
  agents?: number; procs_per_agent?: number;
}
/** One member of a gang run: node rank, agent, GPUs (UUIDs "" where unknown), global ranks first..last, state. */
export interface RunMember {
  node_rank: number; agent: string; gpu_indices: number[]; gpu_uuids: string[]; first_rank: number; last_rank: number; state: string; ended_at: string;
}
export interface OutputFile { path: string; size_bytes: number }
export interface PackageSummary { name: string; project: string; created_at: string; versions: number; latest: string; latest_score: number | null }
export interface PackageVersion {
  package: string; version: string; source: string; run_id: string; object_key: string; size_bytes: number; sha256: string;
  created_at: string; trained_from: string; score: number; has_score: boolean; has_evaluate: string;
}
export interface LineageStep {
  version: string; sha256: string; source: string; created_at: string; run_id: string; trained_from: string; pipeline: string;
  dataset: string; eval_dataset: string; data_manifest_sha256: string; agent: string; score: number; has_score: boolean;
}
export interface Dataset { name: string; file_count: number; size_bytes: number; created_at: string; updated_at: string }
export interface AgentGpu { index: number; uuid: string; name: string; memory_mb: number; run_id: string }
export interface Agent {
  name: string; status: string; cpus: number; memory_mb: number; labels: Record<string, string>; last_heartbeat_at: string;
  hostname: string; version: string; gpus: AgentGpu[]; run_ids: string[];
}
export interface Project { name: string; running: number; gpus: number; queued: number; max_runs: number; max_gpus: number; max_priority: number; waiting_gangs?: WaitingGang[] }
/** A queued multi-agent run and what it waits for (the placer's words). */
export interface WaitingGang { run_id: string; agents: number; priority: number; waited_seconds: number; waiting_for: string }
export interface Schedule {
  name: string; project: string; state: string; cron: string; timezone: string; at: string; next_fire_at: string; last_fired_at: string;
  last_run_id: string; last_error: string; fired: number; failed: number; missed_total: number;
  run: { pipeline?: string; package?: string; version?: string; dataset?: string };
}
export interface TrainyardEvent { id: number; at: string; kind: string; project: string; subject: string; detail: string }
/** A log line as the stream sends it: [attempt, seq, stream, text, at]. */
export type LogLine = [number, number, string, string, string];
