-- Issues 21, 22 and 23 were built side by side, and each added kinds to the ML log: 024 (deletes) and 028
-- (preemption) leave the CHECK on events.kind to this migration, which writes the whole list once
-- (shared/event-kinds.ts holds the same; test/e2e/events.test.ts compares them).
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN (
  'package.pushed', 'package.refused', 'dataset.pushed',
  'run.submitted', 'run.waiting', 'run.placed', 'run.packaging', 'run.started', 'run.kill_requested',
  'run.succeeded', 'run.failed', 'run.killed', 'run.preempted', 'run.changed',
  'schedule.created', 'schedule.paused', 'schedule.resumed', 'schedule.deleted',
  'schedule.fired', 'schedule.missed', 'schedule.failed',
  'agent.joined', 'agent.lost', 'agent.draining', 'agent.drained', 'agent.removed',
  'run.deleted', 'package.deleted', 'dataset.deleted'));

-- What a project used outlives the run that used it (`projects usage` counts a run deleted since, or
-- removed by retention): attempt_usage keeps the run's id as plain text, not a reference that would
-- refuse the run's delete.
ALTER TABLE attempt_usage DROP CONSTRAINT attempt_usage_run_id_fkey;
