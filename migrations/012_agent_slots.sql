-- Run slots (issue 11): an agent takes at most max_runs runs at once (its --max-runs, by default its
-- CPUs), whatever CPUs the runs ask for, so a burst of 0-CPU runs does not start hundreds of Python
-- processes on one box. 0: no limit (agents from before this column).
ALTER TABLE agents ADD COLUMN max_runs int NOT NULL DEFAULT 0 CHECK (max_runs >= 0);
