-- Trainyard's schema. Postgres is the only source of truth: NATS carries doorbells, MinIO carries bytes,
-- and an object in MinIO is visible to users only once a row here points at it.

-- The run states: the same closed set as shared/run-states.ts.
CREATE TYPE run_status AS ENUM (
  'Scheduled', 'Waiting for resources', 'Packaging', 'Running', 'Successful', 'Failed', 'Killed'
);

CREATE TABLE packages (
  name        text PRIMARY KEY,
  description text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE package_versions (
  package       text NOT NULL REFERENCES packages (name),
  major         int NOT NULL,
  minor         int NOT NULL,
  source        text NOT NULL CHECK (source IN ('upload', 'run')),
  -- At most one version per run, ever: the constraint, not the code, is what guarantees it.
  run_id        text UNIQUE,
  trained_major int,
  trained_minor int,
  object_key    text NOT NULL,
  size_bytes    bigint NOT NULL,
  sha256        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (package, major, minor)
);

CREATE TABLE datasets (
  name       text PRIMARY KEY,
  file_count bigint NOT NULL,
  size_bytes bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
  name              text PRIMARY KEY,
  hostname          text NOT NULL DEFAULT '',
  version           text NOT NULL DEFAULT '',
  status            text NOT NULL CHECK (status IN ('online', 'draining', 'lost', 'offline')),
  -- Bumped on every Register: heartbeats from an older session are told to register again.
  session           bigint NOT NULL,
  cpus              int NOT NULL,
  memory_mb         bigint NOT NULL,
  labels            jsonb NOT NULL DEFAULT '{}',
  last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
  registered_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_gpus (
  agent     text NOT NULL REFERENCES agents (name) ON DELETE CASCADE,
  index     int NOT NULL,
  uuid      text NOT NULL,
  name      text NOT NULL,
  memory_mb bigint NOT NULL,
  PRIMARY KEY (agent, index)
);

-- Fencing tokens: every placement takes a new one, so a stale attempt can be told from the current one.
CREATE SEQUENCE lease_seq;
CREATE SEQUENCE agent_session_seq;

CREATE TABLE runs (
  id                 text PRIMARY KEY,
  idempotency_key    text UNIQUE,
  project            text NOT NULL DEFAULT 'default',
  priority           int NOT NULL DEFAULT 0,
  package            text NOT NULL,
  package_major      int NOT NULL,
  package_minor      int NOT NULL,
  package_object_key text NOT NULL,
  dataset            text NOT NULL,
  dataset_sub        text NOT NULL DEFAULT '',
  gpus               int NOT NULL DEFAULT 0 CHECK (gpus BETWEEN 0 AND 8),
  gpu_model          text NOT NULL DEFAULT '',
  gpu_memory_mb      bigint NOT NULL DEFAULT 0,
  cpus               int NOT NULL DEFAULT 0,
  memory_mb          bigint NOT NULL DEFAULT 0,
  selector           jsonb NOT NULL DEFAULT '{}',
  env                jsonb NOT NULL DEFAULT '{}',
  timeout_seconds    int NOT NULL DEFAULT 0,
  max_attempts       int NOT NULL,
  status             run_status NOT NULL DEFAULT 'Scheduled',
  status_detail      text NOT NULL DEFAULT '',
  attempt            int NOT NULL DEFAULT 0,
  -- Attempts that ended because their agent was lost (counted against max_attempts).
  lost_attempts      int NOT NULL DEFAULT 0,
  -- The current (or last) attempt's fencing token; the run is placed exactly when agent is set.
  lease              bigint,
  agent              text,
  last_agent         text,
  gpu_indices        int[] NOT NULL DEFAULT '{}',
  dispatched_at      timestamptz,
  acked_at           timestamptz,
  kill_requested     boolean NOT NULL DEFAULT false,
  failure_reason     text,
  output_major       int,
  output_minor       int,
  results            json,  -- json, not jsonb: _results.json keeps its key order
  last_log_seq       bigint NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  waiting_at         timestamptz,
  packaging_at       timestamptz,
  running_at         timestamptz,
  ended_at           timestamptz
);
-- The queue: unplaced runs in order.
CREATE INDEX runs_queue ON runs (priority DESC, created_at)
  WHERE agent IS NULL AND status IN ('Scheduled', 'Waiting for resources');
CREATE INDEX runs_on_agent ON runs (agent) WHERE agent IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at DESC);

-- One GPU, one run: the primary key makes oversubscription impossible even with several schedulers.
CREATE TABLE gpu_leases (
  agent     text NOT NULL,
  gpu_index int NOT NULL,
  run_id    text NOT NULL REFERENCES runs (id),
  lease     bigint NOT NULL,
  PRIMARY KEY (agent, gpu_index)
);
CREATE INDEX gpu_leases_run ON gpu_leases (run_id);

-- Every status change, for `run get` and for audits.
CREATE TABLE run_events (
  id      bigserial PRIMARY KEY,
  run_id  text NOT NULL REFERENCES runs (id),
  attempt int NOT NULL,
  status  run_status NOT NULL,
  detail  text NOT NULL DEFAULT '',
  at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run ON run_events (run_id, id);

-- Exactly once and in order: (run, attempt, seq) is the key, and appends are ON CONFLICT DO NOTHING.
CREATE TABLE run_logs (
  run_id  text NOT NULL REFERENCES runs (id),
  attempt int NOT NULL,
  seq     bigint NOT NULL,
  stream  text NOT NULL,
  text    text NOT NULL,
  at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, attempt, seq)
);
