-- Issue 19. Join tokens may be good for a number of agents (`agents join-token create --uses N`): each
-- Register that joins with one takes a use in the same transaction that takes the name; NULL: any number
-- until it expires (tokens made before this, and `--uses 0`).
ALTER TABLE tokens ADD COLUMN uses_left integer CHECK (uses_left IS NULL OR uses_left >= 0);
-- What a successful attempt left under its prefix when it committed, [{path, size, etag}]: `run outputs`
-- serves these objects only, each read on condition of its recorded ETag, so what the attempt's
-- credentials (alive up to their lifetime after the end) write later is never served. NULL for runs that
-- did not succeed, and for runs from before this.
ALTER TABLE runs ADD COLUMN outputs jsonb;
