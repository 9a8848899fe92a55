-- Issue 11, placement at scale: the placer reads only the head of the queue, the oldest runs of each
-- (priority, project), instead of ordering every queued run on each pass (scheduler/placement/queue.ts).
-- This index lets it find the groups (one probe each) and order each group's oldest runs from the index
-- alone. It replaces runs_queue (priority, created_at), which nothing reads any more. A run leaves it when
-- it is placed or ends; a kill requested on a queued run (which the transitions never leave: it is ended
-- at once) keeps it out of the queue, as the placer always did.
CREATE INDEX runs_queue_heads ON runs (priority, project, created_at, id)
  WHERE agent IS NULL AND status IN ('Scheduled', 'Waiting for resources') AND NOT kill_requested;
DROP INDEX runs_queue;
