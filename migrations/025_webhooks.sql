-- Issue 23: webhooks (`trainyard webhooks`). A webhook posts chosen kinds of the ML log (events) to a URL.
-- Delivery is at least once from an outbox: each event a webhook wants gets its row in webhook_deliveries
-- from a trigger on events, so the row commits in the very statement that writes the event (and so with
-- the change the event reports); a scheduler that dies after that commit leaves the row for another.

-- project NULL: a fleet-wide hook (admins only), which gets every project's events and the fleet's
-- (agent.*); a project's hook gets its own project's events only. The kinds are from shared/event-kinds.ts
-- (checked by the scheduler at create). The secret signs each body (HMAC-SHA256); no API returns it.
CREATE TABLE webhooks (
  id         text PRIMARY KEY,
  name       text NOT NULL,
  project    text,
  url        text NOT NULL,
  events     text[] NOT NULL CHECK (cardinality(events) > 0),
  format     text NOT NULL CHECK (format IN ('json', 'slack')),
  secret     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text NOT NULL DEFAULT ''
);
-- Names are per project, as schedules' are (migration 016); fleet hooks share one name space.
CREATE UNIQUE INDEX webhooks_project_name ON webhooks (COALESCE(project, ''), name);

-- The outbox and the delivery log in one: a row per (webhook, event), holding a copy of the event (the
-- ML log is pruned on its own schedule). state: pending (to send, at next_at) | delivered | failed (gave
-- up after the scheduler's --webhook-retry-minutes). A scheduler claims a due row by moving next_at past
-- the time one try may take (FOR UPDATE SKIP LOCKED, so several schedulers never claim the same row);
-- one that dies mid-try leaves it due again when that lease ends. attempts fences the result: a try's
-- outcome is written only if no later claim was made.
CREATE TABLE webhook_deliveries (
  id           text PRIMARY KEY DEFAULT 'dlv_' || replace(gen_random_uuid()::text, '-', ''),
  webhook_id   text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
  event_id     bigint,                 -- NULL for `webhooks test`
  kind         text NOT NULL,
  project      text,
  subject      text NOT NULL,
  detail       text NOT NULL DEFAULT '',
  data         jsonb NOT NULL DEFAULT '{}',
  event_at     timestamptz NOT NULL DEFAULT now(),
  state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts     int NOT NULL DEFAULT 0,
  next_at      timestamptz NOT NULL DEFAULT now(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  last_status  int,                    -- the last response's HTTP status (NULL: no response)
  last_error   text NOT NULL DEFAULT '',
  UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, created_at);

-- Every try of a delivery: when, the response code (or why there was none), how long it took.
CREATE TABLE webhook_attempts (
  delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  attempt     int NOT NULL,
  at          timestamptz NOT NULL DEFAULT now(),
  status      int,
  error       text NOT NULL DEFAULT '',
  duration_ms int NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
);

-- The outbox writer: a statement trigger over the new events, like run_events_to_events (migration 008),
-- so a placement pass of thousands of events costs one INSERT ... SELECT.
CREATE FUNCTION events_to_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO webhook_deliveries (webhook_id, event_id, kind, project, subject, detail, data, event_at)
  SELECT w.id, e.id, e.kind, e.project, e.subject, e.detail, e.data, e.at
  FROM new_rows e JOIN webhooks w ON e.kind = ANY (w.events) AND (w.project IS NULL OR w.project = e.project);
  RETURN NULL;
END $$;
CREATE TRIGGER events_to_webhook_deliveries AFTER INSERT ON events
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION events_to_webhook_deliveries();

-- Issue 23, usage (`trainyard projects usage`): one row per attempt that started on an agent, with what it
-- held (GPUs and their models, the CPUs it asked for) and when it began and ended there. Written by a
-- trigger on run_events, so in the very statement of each run transition: an attempt starts when its
-- agent reports it started (Packaging, or Running for an agent that had everything ready) and ends with
-- the next transition of that run that is not its own progress: its end (Successful, Failed, Killed) as
-- its agent reported it, or its requeue (agent lost, attempt taken back, handed back by a draining agent,
-- at the moment the scheduler took it back). A requeued attempt so counts what it held, and the next one
-- counts its own.
CREATE TABLE attempt_usage (
  run_id     text NOT NULL REFERENCES runs (id),
  attempt    int NOT NULL,
  project    text NOT NULL,
  agent      text NOT NULL,
  gpu_models text[] NOT NULL DEFAULT '{}',  -- one entry per GPU it held (its model, from agent_gpus)
  cpus       int NOT NULL,
  started_at timestamptz NOT NULL,
  ended_at   timestamptz,                    -- NULL while it runs
  PRIMARY KEY (run_id, attempt)
);
CREATE INDEX attempt_usage_project ON attempt_usage (project, started_at);
CREATE INDEX attempt_usage_open ON attempt_usage (run_id) WHERE ended_at IS NULL;

CREATE FUNCTION run_events_to_attempt_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- First the ends (a row of the run that is not its open attempt's own progress), then the starts.
  UPDATE attempt_usage u SET ended_at = n.at
  FROM new_rows n
  WHERE u.run_id = n.run_id AND u.ended_at IS NULL
    AND NOT (n.attempt = u.attempt AND n.status IN ('Packaging', 'Running'));
  INSERT INTO attempt_usage (run_id, attempt, project, agent, gpu_models, cpus, started_at)
  SELECT n.run_id, n.attempt, r.project, r.agent,
         COALESCE((SELECT array_agg(g.name ORDER BY g.index) FROM agent_gpus g WHERE g.agent = r.agent AND g.index = ANY (r.gpu_indices)), '{}'),
         r.cpus, n.at
  FROM new_rows n JOIN runs r ON r.id = n.run_id
  WHERE n.status IN ('Packaging', 'Running') AND r.agent IS NOT NULL AND n.attempt = r.attempt
  ON CONFLICT (run_id, attempt) DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER run_events_to_attempt_usage AFTER INSERT ON run_events
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_events_to_attempt_usage();
