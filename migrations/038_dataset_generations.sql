-- Issue 21, a warm run of a large dataset without its listing: every change Trainyard makes to a dataset's
-- objects gives it a new generation, and a run's claim carries the generation it was placed under
-- (scheduler/datasets/generation.ts). An agent that listed the dataset under that generation a moment ago
-- uses that listing again instead of listing 20,000 objects (agent/data-cache.ts, --listing-trust-seconds).
-- Numbers come from one sequence, never reused: a dataset deleted and pushed again under the same name
-- cannot meet an agent's listing of the one before. While pushes store files into it (pushes_open, each
-- alive while push_seen_at is fresh: a running push touches it every minute) claims hand out 0: no agent
-- trusts a listing of a dataset whose objects are changing.
CREATE SEQUENCE dataset_generations;
ALTER TABLE datasets
  ADD COLUMN generation bigint NOT NULL DEFAULT nextval('dataset_generations'),
  ADD COLUMN pushes_open integer NOT NULL DEFAULT 0,
  ADD COLUMN push_seen_at timestamptz;
-- Which push holds a new name's claim (scheduler/datasets/push.ts): a live push whose claim another took,
-- taken for dead, finds out from this and stops, rather than write into, or remove, the other's folder.
ALTER TABLE dataset_claims ADD COLUMN push_id text;
