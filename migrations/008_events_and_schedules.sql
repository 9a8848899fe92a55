-- Issue 9: the fleet's ML log (`trainyard events`) and schedules (`trainyard schedules`).

-- The ML log: one row per thing that happened, written by the same statement or transaction as the change
-- it reports (a package version registered, a dataset pushed, a schedule fired, an agent lost, ...), so an
-- event exists exactly when its change committed. The kinds are the list in shared/event-kinds.ts.
-- project is NULL for fleet events (agents), which only admins see. Rows older than the scheduler's
-- --events-retention-days are deleted by the placing scheduler (scheduler/events/retention.ts); nothing
-- else reads this table, so pruning it never touches run history (run_events) or anything else.
CREATE TABLE events (
  id      bigserial PRIMARY KEY,
  at      timestamptz NOT NULL DEFAULT now(),
  kind    text NOT NULL CHECK (kind IN (
    'package.pushed', 'package.refused', 'dataset.pushed',
    'run.submitted', 'run.waiting', 'run.placed', 'run.packaging', 'run.started', 'run.kill_requested',
    'run.succeeded', 'run.failed', 'run.killed', 'run.changed',
    'schedule.created', 'schedule.paused', 'schedule.resumed', 'schedule.deleted',
    'schedule.fired', 'schedule.missed', 'schedule.failed',
    'agent.joined', 'agent.lost', 'agent.draining', 'agent.drained')),
  project text,
  -- What it is about: a run id, or a package, dataset, schedule or agent name.
  subject text NOT NULL,
  -- For people: the reason, the version, where it was placed.
  detail  text NOT NULL DEFAULT '',
  -- For scripts: version, score, run_id, missed, attempt, ...
  data    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_project ON events (project, id);

-- Run events come from run_events, which every run transition (scheduler/runs/transitions.ts) and submit
-- already write in the statement that changes the run. This trigger copies each new row into the log,
-- within that same statement, so no transition needs to know about the log. It is a statement trigger
-- over the transition table: a placement pass of thousands of runs costs one INSERT ... SELECT. It runs
-- after the statement, so it sees the run as the statement left it (the version a success registered).
CREATE FUNCTION run_events_to_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO events (at, kind, project, subject, detail, data)
  SELECT n.at,
         CASE
           WHEN n.detail = 'kill requested' THEN 'run.kill_requested'
           WHEN n.status = 'Scheduled' AND n.attempt = 0 THEN 'run.submitted'
           WHEN n.status = 'Scheduled' THEN 'run.placed'
           WHEN n.status = 'Waiting for resources' THEN 'run.waiting'
           WHEN n.status = 'Packaging' THEN 'run.packaging'
           WHEN n.status = 'Running' THEN 'run.started'
           WHEN n.status = 'Successful' THEN 'run.succeeded'
           WHEN n.status = 'Failed' THEN 'run.failed'
           WHEN n.status = 'Killed' THEN 'run.killed'
           -- A status added later without a kind of its own still logs (and never fails its transition).
           ELSE 'run.changed'
         END,
         r.project, n.run_id, n.detail,
         jsonb_strip_nulls(jsonb_build_object(
           'attempt', n.attempt, 'status', n.status, 'package', r.package,
           'version', r.package_major || '.' || r.package_minor,
           'output_version', CASE WHEN n.status = 'Successful' AND r.output_major IS NOT NULL THEN r.output_major || '.' || r.output_minor END,
           'score', CASE WHEN n.status = 'Successful' THEN to_jsonb(r.score) END))
  FROM new_rows n JOIN runs r ON r.id = n.run_id;
  RETURN NULL;
END $$;

-- Schedules: a submit request kept as data, fired by cron or once at a time. States: shared/schedule-states.ts.
CREATE TABLE schedules (
  id               text PRIMARY KEY,
  name             text NOT NULL UNIQUE,
  project          text NOT NULL,
  state            text NOT NULL CHECK (state IN ('active', 'paused', 'done')),
  cron             text,                        -- NULL for a one-shot (--at)
  timezone         text NOT NULL DEFAULT 'UTC',
  at               timestamptz,                 -- the one-shot's time
  -- The SubmitRunRequest each firing submits (proto field names; never secrets, never an idempotency key).
  request          jsonb NOT NULL,
  -- The firing due next. A firing is claimed by moving this forward with a guard on its old value
  -- (scheduler/schedules/fire.ts), in the transaction that inserts its run: one claim, one run.
  next_fire_at     timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  created_by       text NOT NULL DEFAULT '',
  last_fired_at    timestamptz,
  last_run_id      text,
  last_error       text NOT NULL DEFAULT '',
  fired_count      int NOT NULL DEFAULT 0,
  failed_count     int NOT NULL DEFAULT 0,
  -- Firings that passed while no scheduler could fire them; each catch-up fires once for all it covers.
  missed_total     int NOT NULL DEFAULT 0,
  last_missed      int NOT NULL DEFAULT 0,
  last_missed_at   timestamptz,
  CHECK ((cron IS NULL) <> (at IS NULL))
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE state = 'active';

-- The schedule a run was fired by (its name, kept after the schedule is deleted) and the firing it stands
-- for. Unique: one run per firing, whatever the code does.
ALTER TABLE runs ADD COLUMN schedule text;
ALTER TABLE runs ADD COLUMN schedule_fire_at timestamptz;
CREATE UNIQUE INDEX runs_schedule_firing ON runs (schedule, schedule_fire_at) WHERE schedule IS NOT NULL;

CREATE TRIGGER run_events_to_events AFTER INSERT ON run_events
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_events_to_events();
