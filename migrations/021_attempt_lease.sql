-- Issue 20: the scheduler, not the agent's memory, decides when an acknowledged attempt is gone. Each
-- heartbeat lists what the agent holds; an acknowledged attempt missing from that list is counted here, reset
-- when it is listed again, and requeued (a lost attempt, or Killed if a kill was asked) once it has been
-- missing from TRAINYARD_ATTEMPT_LEASE_BEATS heartbeats in a row (scheduler/agents/reconcile.ts).
ALTER TABLE runs ADD COLUMN missed_beats integer NOT NULL DEFAULT 0;
