-- What the invariant sweep (scheduler/invariants.ts) found: impossible states such as a GPU lease whose
-- run no longer holds the GPU. Kept so operators (`trainyard doctor`) and the soak test can see every one
-- ever found, across scheduler restarts.
CREATE TABLE invariant_violations (
  id       bigserial PRIMARY KEY,
  kind     text NOT NULL,
  run_id   text NOT NULL DEFAULT '',
  agent    text NOT NULL DEFAULT '',
  detail   text NOT NULL DEFAULT '',
  repaired boolean NOT NULL DEFAULT false,
  found_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invariant_violations_kind ON invariant_violations (kind);
