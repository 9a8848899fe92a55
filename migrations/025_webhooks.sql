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
