-- Lineage (issue 9): what a successful run was made from, exactly: the input version and its SHA-256,
-- the manifest of the data made local (every file's path, size and SHA-256, and the manifest's hash),
-- the venv's packages and Python, the agent and its GPUs, the non-secret env, the score and the output's
-- SHA-256. The same document is _lineage.json beside _results.json.
ALTER TABLE runs ADD COLUMN lineage jsonb;
