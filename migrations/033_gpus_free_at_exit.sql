-- Issue 22, "GPUs never idle between runs" (README, "GPUs freed at process exit") and the checkpoint loose
-- ends. released_at: the attempt's processes have all exited and its agent gave back its GPUs and slot
-- (scheduler/runs/transitions.ts `releaseCapacity`); the run stays Running while its outputs go up, and
-- the placer no longer counts it. A new placement clears it.
-- checkpoint_at / checkpoint_bytes: the newest checkpoint the agent reported committed (lease-guarded), for
-- the preemption's "least work lost" (scheduler/placement/work-lost.ts) and the project's storage quota
-- (scheduler/storage/quota.ts). checkpoint_bytes is what the run's kept checkpoints hold in the bucket: the
-- newest of each attempt (an attempt's older ones are removed by its agent once a newer one is complete),
-- so a report subtracts its own attempt's previous one (checkpoint_attempt, checkpoint_attempt_bytes).
ALTER TABLE runs
  ADD COLUMN released_at timestamptz,
  ADD COLUMN checkpoint_at timestamptz,
  ADD COLUMN checkpoint_bytes bigint NOT NULL DEFAULT 0 CHECK (checkpoint_bytes >= 0),
  ADD COLUMN checkpoint_attempt integer NOT NULL DEFAULT 0,
  ADD COLUMN checkpoint_attempt_bytes bigint NOT NULL DEFAULT 0;
