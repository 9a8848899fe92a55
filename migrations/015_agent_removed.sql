-- Issue 8: an admin forgets an agent that is gone (`trainyard agents remove`), so a new agent may take its
-- name; a join token no longer takes over the name of an offline or lost agent by itself. The ML log
-- reports it: the CHECK on events.kind gains 'agent.removed' (shared/event-kinds.ts holds the same list).
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN (
  'package.pushed', 'package.refused', 'dataset.pushed',
  'run.submitted', 'run.waiting', 'run.placed', 'run.packaging', 'run.started', 'run.kill_requested',
  'run.succeeded', 'run.failed', 'run.killed', 'run.changed',
  'schedule.created', 'schedule.paused', 'schedule.resumed', 'schedule.deleted',
  'schedule.fired', 'schedule.missed', 'schedule.failed',
  'agent.joined', 'agent.lost', 'agent.draining', 'agent.drained', 'agent.removed'));
