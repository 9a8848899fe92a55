-- Issue 21, a large dataset file stored by the CLI itself (scheduler/datasets/presign-parts.ts): every
-- multipart upload begun for a push, with the bytes its part URLs may store, until the push completes it
-- or gives it up (datasets/push.ts). While open it counts against its project's storage quota, so uploads
-- begun and never named by a push cannot hold more than the quota allows; a row older than MinIO keeps a
-- stale upload (24 hours by default) is forgotten when the project begins its next one.
CREATE TABLE dataset_uploads (
  upload_id  text PRIMARY KEY,
  project    text NOT NULL,
  object_key text NOT NULL,
  size_bytes bigint NOT NULL,
  part_bytes bigint NOT NULL,  -- every part's length but the last's; each URL is signed for its part's length, so
                               -- URLs for another part size would let the upload hold more than size_bytes
  started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dataset_uploads_project ON dataset_uploads (project, started_at);
