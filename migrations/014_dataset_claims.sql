-- Issue 8, projects own things: a new dataset's name is claimed by the pushing project before its first
-- byte is stored (scheduler/datasets/push.ts). Without it, a second project could stream files into
-- datasets/NAME/ while the first was creating NAME; it was refused at the end, but its files stayed in the
-- other project's dataset. A claim lives while its push runs (refreshed as it goes) and goes when the push
-- ends: in the transaction that writes the dataset's row, or when the push fails. One left by a scheduler
-- that died mid-push may be taken over once it is older than the refresh allows.
CREATE TABLE dataset_claims (
  name       text PRIMARY KEY,
  project    text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now()
);
