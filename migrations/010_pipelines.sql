-- Pipeline kinds (issue 9): training (as before), evaluation, and full pipelines; shared/pipelines.ts
-- holds the same list. An evaluation ends with a score and no version; a full pipeline with both.
ALTER TABLE runs ADD COLUMN pipeline text NOT NULL DEFAULT 'TRAIN_ONLY'
  CHECK (pipeline IN ('TRAIN_ONLY', 'EVALUATE_ONLY', 'FULL_TRAINING'));
-- A full pipeline's evaluation dataset (NULL: none, evaluate() gets what process_data wrote, or nothing).
ALTER TABLE runs ADD COLUMN eval_dataset text;
ALTER TABLE runs ADD COLUMN eval_dataset_sub text NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN score double precision;
-- The harness's phases with their times: [{"name": "train", "started_at": 1.0, "ended_at": 2.0}, ...].
ALTER TABLE runs ADD COLUMN phases jsonb NOT NULL DEFAULT '[]';
ALTER TABLE package_versions ADD COLUMN score double precision;
-- Whether train.py's Main has evaluate(), by the static check at push (NULL: not known, e.g. Main
-- inherits its methods, or the scheduler had no python3); versions made by runs copy it.
ALTER TABLE package_versions ADD COLUMN has_evaluate boolean;
