-- Issue 24, multi-agent (gang) runs: one attempt spread over N agents, placed all or nothing.
-- - runs.agents / runs.procs_per_agent: N members, P processes on each (1/1: an ordinary run). Every member
--   asks for the run's own gpus/cpus/memory_mb/selector/GPU model on its agent.
-- - runs.master_port: the rendezvous port rank 0's agent gives this attempt (from its --rendezvous-ports),
--   chosen by the place statement among the ports no other placed gang there uses.
-- - run_members: the members of node rank >= 1 of the run's current attempt (rank 0 is the run's own
--   agent/gpu_indices, so every path written for one agent serves it unchanged). A row is current while
--   its lease is the run's and the run is placed; the place statement replaces the rows of a run.
--   ended_at/outcome: the member's own end (its processes exited), reported by its agent.
-- - agents.advertise_addr / rendezvous_lo / rendezvous_hi: what the agent registered (--advertise-addr,
--   --rendezvous-ports).
ALTER TABLE runs ADD COLUMN agents integer NOT NULL DEFAULT 1 CHECK (agents >= 1);
ALTER TABLE runs ADD COLUMN procs_per_agent integer NOT NULL DEFAULT 1 CHECK (procs_per_agent >= 1);
ALTER TABLE runs ADD COLUMN master_port integer;
ALTER TABLE agents ADD COLUMN advertise_addr text NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN rendezvous_lo integer NOT NULL DEFAULT 29500;
ALTER TABLE agents ADD COLUMN rendezvous_hi integer NOT NULL DEFAULT 29599;

CREATE TABLE run_members (
  run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  node_rank   integer NOT NULL CHECK (node_rank >= 1),
  lease       bigint NOT NULL,
  agent       text NOT NULL,
  gpu_indices integer[] NOT NULL DEFAULT '{}',
  acked_at    timestamptz,
  ended_at    timestamptz,
  outcome     text,
  PRIMARY KEY (run_id, node_rank)
);
CREATE INDEX run_members_agent ON run_members (agent);
