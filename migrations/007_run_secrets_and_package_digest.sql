-- A run carries the SHA-256 of the package zip it trains, copied from package_versions at submit: the
-- agent checks the zip it downloads against it before extracting anything (ClaimAttempt's
-- package_sha256), so a zip replaced in the bucket is refused rather than run.
ALTER TABLE runs ADD COLUMN package_sha256 text;
UPDATE runs r SET package_sha256 = v.sha256
  FROM package_versions v
  WHERE v.package = r.package AND v.major = r.package_major AND v.minor = r.package_minor;

-- Run secrets (--secret KEY=VALUE): only the agent that claims the run's attempt is given the values
-- (ClaimAttempt); no client API returns them. They are deleted in the statement that ends the run.
ALTER TABLE runs ADD COLUMN secret_names text[] NOT NULL DEFAULT '{}';
CREATE TABLE run_secrets (
  run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  name   text NOT NULL,
  value  text NOT NULL,
  PRIMARY KEY (run_id, name)
);
