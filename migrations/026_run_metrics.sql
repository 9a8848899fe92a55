-- Issue 23: a run's metrics. A series is one name of one run (what train.py logged with trainyard.log, or
-- "sys/..." for what the agent sampled); its points share one step axis across the run's attempts: a
-- point's step is above every stored step of its series (scheduler/runs/metrics-ingest.ts says the rule).
CREATE TABLE run_metric_series (
  id bigserial PRIMARY KEY,
  run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name text NOT NULL,
  last_step bigint NOT NULL,     -- the highest stored step: the next point must be above it
  points bigint NOT NULL DEFAULT 0,
  UNIQUE (run_id, name)
);

-- Points by (series, step): the primary key is the read order, and a step is stored at most once.
CREATE TABLE run_metric_points (
  series_id bigint NOT NULL REFERENCES run_metric_series(id) ON DELETE CASCADE,
  step bigint NOT NULL,
  value double precision NOT NULL,
  attempt integer NOT NULL,
  t double precision NOT NULL,   -- unix seconds, when train.py (or the agent) logged it
  PRIMARY KEY (series_id, step)
);

-- trainyard.summary(): the last value per key.
CREATE TABLE run_metric_summary (
  run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name text NOT NULL,
  value double precision NOT NULL,
  attempt integer NOT NULL,
  PRIMARY KEY (run_id, name)
);

-- Per attempt, the last metric record stored (AppendMetrics skips records at or below it: a retried batch
-- stores nothing twice) and the points the run's cap refused.
CREATE TABLE run_metric_cursors (
  run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  last_seq bigint NOT NULL,
  dropped bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, attempt)
);
