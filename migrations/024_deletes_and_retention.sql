-- Issue 21, storage that is cleaned up: `run delete`, `package delete`, `dataset delete`, per-project
-- retention, and `doctor --storage` (scheduler/storage/deletion.ts, retention.ts, storage-audit.ts).
--
-- A deletion goes in three steps so that no row is ever left pointing at a missing object and no object is
-- left that nothing points at: (1) one guarded statement marks the row deleting (deleting_at, and who asked:
-- deleted_by), refusing what is still needed; from then on no read, list or submit sees it; (2) its objects
-- are removed; (3) one transaction deletes the row and writes the ML log's `*.deleted` event. A scheduler
-- that dies between the steps leaves a marked row, which the leader finishes (scheduler/storage/janitor.ts).
ALTER TABLE runs ADD COLUMN deleting_at timestamptz, ADD COLUMN deleted_by text;
ALTER TABLE package_versions ADD COLUMN deleting_at timestamptz, ADD COLUMN deleted_by text;
ALTER TABLE datasets ADD COLUMN deleting_at timestamptz, ADD COLUMN deleted_by text;
CREATE INDEX runs_deleting ON runs (deleting_at) WHERE deleting_at IS NOT NULL;
CREATE INDEX package_versions_deleting ON package_versions (deleting_at) WHERE deleting_at IS NOT NULL;
CREATE INDEX datasets_deleting ON datasets (deleting_at) WHERE deleting_at IS NOT NULL;
-- Retention picks a project's oldest ended runs.
CREATE INDEX runs_project_ended ON runs (project, ended_at) WHERE ended_at IS NOT NULL;

-- Retention per project (`projects set P --keep-runs 90d --keep-versions 20`): ended runs older than
-- keep_runs_seconds, and each package's versions beyond its newest keep_versions, are deleted by the leader
-- in small batches. NULL: kept for ever.
ALTER TABLE project_limits
  ADD COLUMN keep_runs_seconds bigint CHECK (keep_runs_seconds IS NULL OR keep_runs_seconds > 0),
  ADD COLUMN keep_versions integer CHECK (keep_versions IS NULL OR keep_versions >= 1);

-- The ML log's new kinds ('run.deleted', 'package.deleted' and 'dataset.deleted') join events.kind's CHECK in 029, with those of the
-- other migrations built beside this one (one list, not one rewrite each).
