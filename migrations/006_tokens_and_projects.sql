-- Who may call (scheduler/auth/). Every client token and every agent join token is a row here; the secret
-- itself is never stored, only its SHA-256 (a copy of this table lets no one call). A token is
-- `tyt_<id>_<secret>`: `id` is public (tokens list / revoke name it), the secret is 256 random bits.
-- role: admin (the fleet, every project), member (its project's packages, datasets and runs), reader
-- (reads its project's), join (an agent's introduction: exchanged at Register for a per-agent credential).
CREATE TABLE tokens (
  id            text PRIMARY KEY,
  secret_sha256 text NOT NULL,
  name          text NOT NULL DEFAULT '',
  project       text NOT NULL,
  role          text NOT NULL CHECK (role IN ('admin', 'member', 'reader', 'join')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  revoked_at    timestamptz,
  last_used_at  timestamptz
);

-- Projects own packages and datasets: the project that first pushed the name. Rows from before are 'default'.
ALTER TABLE packages ADD COLUMN project text NOT NULL DEFAULT 'default';
ALTER TABLE datasets ADD COLUMN project text NOT NULL DEFAULT 'default';

-- The highest priority a project's runs may ask for (NULL: no cap), with the project's other caps.
ALTER TABLE project_limits ADD COLUMN max_priority int;

-- agents.identity_sha256 (migrations/005) becomes the agent's credential: the SHA-256 of the secret the
-- scheduler issued at its first Register with a join token (or of the identity an older agent made).
