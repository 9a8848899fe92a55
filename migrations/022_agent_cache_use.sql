-- Issue 21: each agent's disk cache use, as its last heartbeat reported it (trainyard agents shows it).
-- JSON ({"venv_bytes": N, "venv_cap_bytes": N}): what the agent measures may grow without a migration each.
ALTER TABLE agents ADD COLUMN cache_use jsonb;
