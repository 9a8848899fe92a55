-- Issue 19, a run is a tenant of its own: which agents a project's runs may use, and what it may store.
--
-- agent_labels: the admin's binding (`projects set P --agents pool=a`): P's runs are placed only on agents
-- whose labels contain all of these, whatever the run's --selector says (a selector may narrow within
-- them, never leave). NULL: any agent.
-- exclusive: P's runs never share an agent with another project's runs at the same time (checked by the
-- place statement itself, scheduler/runs/transitions.ts).
-- max_storage_bytes: what P may hold in the bucket (uploaded package versions, datasets, run outputs).
ALTER TABLE project_limits
  ADD COLUMN agent_labels jsonb CHECK (agent_labels IS NULL OR jsonb_typeof(agent_labels) = 'object'),
  ADD COLUMN exclusive boolean NOT NULL DEFAULT false,
  ADD COLUMN max_storage_bytes bigint CHECK (max_storage_bytes IS NULL OR max_storage_bytes >= 0);

-- An agent started with --accept-projects a,b takes runs of those projects only (sent at Register). NULL:
-- every project's.
ALTER TABLE agents ADD COLUMN accept_projects text[];

-- What a successful run left under runs/RUN/attempt-N/, as the scheduler listed it at the end: counted
-- against its project's storage quota.
ALTER TABLE runs ADD COLUMN output_bytes bigint NOT NULL DEFAULT 0;
