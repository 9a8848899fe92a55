-- Issue 19: names are per project, so that no project learns of, or takes, another's.
-- An idempotency key names a run within its project only: B submitting with the key A used gets a run of
-- its own (and learns nothing of A's); before, the key was global and B was refused naming A's project.
ALTER TABLE runs DROP CONSTRAINT runs_idempotency_key_key;
CREATE UNIQUE INDEX runs_project_idempotency_key ON runs (project, idempotency_key);
-- A schedule name is unique within its project: B may name a schedule as A did (before, the first to
-- take a name held it for every project). A run's firing is one per schedule of its project and instant.
ALTER TABLE schedules DROP CONSTRAINT schedules_name_key;
ALTER TABLE schedules ADD CONSTRAINT schedules_project_name_key UNIQUE (project, name);
DROP INDEX runs_schedule_firing;
CREATE UNIQUE INDEX runs_schedule_firing ON runs (project, schedule, schedule_fire_at) WHERE schedule IS NOT NULL;
