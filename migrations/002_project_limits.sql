-- Per-project caps on what runs at once. A project without a row has no cap; fair share between
-- projects applies either way (see scheduler/placement/queue.ts).
CREATE TABLE project_limits (
  project  text PRIMARY KEY,
  max_runs int CHECK (max_runs IS NULL OR max_runs >= 0),
  max_gpus int CHECK (max_gpus IS NULL OR max_gpus >= 0)
);
