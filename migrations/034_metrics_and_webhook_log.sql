-- Issue 23: the webhook delivery log is pruned (scheduler/webhooks/retention.ts). Finished deliveries
-- (delivered or failed) older than --webhook-log-retention-days are deleted in small batches, oldest
-- first; this index finds them without reading the pending ones or the whole table.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (created_at) WHERE state <> 'pending';
