-- Issue 22: checkpoints and stalls (README, "Checkpoints"). Per run, as submitted: how often the agent uploads
-- checkpoint_directory (0: the default, negative: never on a timer), the stall timeout (0: off), the run
-- whose checkpoint the first attempt starts from (--resume-from; a plain id, not a foreign key, so deleting
-- that run later leaves this one alone), and whether its checkpoints outlive a success. resumed_from is
-- what the latest attempt started from (shared/checkpoints.ts ResumedFrom), set by its claim.
ALTER TABLE runs
  ADD COLUMN checkpoint_interval_seconds integer NOT NULL DEFAULT 0,
  ADD COLUMN stall_timeout_seconds integer NOT NULL DEFAULT 0 CHECK (stall_timeout_seconds >= 0),
  ADD COLUMN resume_from text,
  ADD COLUMN keep_checkpoints boolean NOT NULL DEFAULT false,
  ADD COLUMN resumed_from jsonb;
