-- Issue 22, preemption: a queued run may take the place of lower-priority runs of preemptible projects on
-- one agent when nothing else is free (scheduler/placement/preemption.ts chooses them).
-- - project_limits.preemptible: whether the project's runs may be preempted (`projects set P --preemptible`,
--   admins only). Off unless an admin turns it on: no run is ever preempted on a fleet that never asked.
-- - runs.preempted_by: on a victim, the run it makes room for, set while its agent stops the attempt; the
--   attempt's end then requeues it (not a lost attempt). Cleared whenever the run leaves its agent.
-- - runs.reserved_agent: on the preemptor, the agent its victims are leaving; no other run is placed there
--   until it is (the place statement checks it), so nobody takes what was freed for it.
-- - run_preemptions: each preemption, for `run get` (by whom, when, on which attempt and agent).
ALTER TABLE project_limits ADD COLUMN preemptible boolean NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN preempted_by text;
ALTER TABLE runs ADD COLUMN reserved_agent text;
CREATE INDEX runs_reserved_agent ON runs (reserved_agent) WHERE reserved_agent IS NOT NULL;
CREATE INDEX runs_preempted_by ON runs (preempted_by) WHERE preempted_by IS NOT NULL;

CREATE TABLE run_preemptions (
  run_id  text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  by_run  text NOT NULL,
  agent   text NOT NULL,
  at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_preemptions_run ON run_preemptions (run_id, at);

-- The ML log's new kinds ('run.preempted') join events.kind's CHECK in 029, with those of the
-- other migrations built beside this one (one list, not one rewrite each).
