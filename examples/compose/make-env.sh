#!/usr/bin/env bash
# Writes .env beside docker-compose.yml (or in the folder given) with a random password for each service,
# once: an existing .env is kept, so volumes made with its passwords keep working. Mode 0600; the
# Dockerfile's build context leaves it out (.dockerignore).
#
#   bash examples/compose/make-env.sh [DIR]
set -euo pipefail
dir=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
env=$dir/.env
password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
if [[ -s $env ]]; then
  printf 'make-env: %s exists; kept\n' "$env"
  exit 0
fi
(umask 077 && printf '%s\n' '# Written by examples/compose/make-env.sh: the passwords docker-compose.yml requires.' \
  "POSTGRES_PASSWORD=$(password)" "SCHEDULER_DB_PASSWORD=$(password)" "MINIO_ROOT_PASSWORD=$(password)" \
  "MINIO_SCHEDULER_PASSWORD=$(password)" "NATS_SCHEDULER_PASSWORD=$(password)" "NATS_AGENT_PASSWORD=$(password)" >"$env.tmp")
mv "$env.tmp" "$env"
printf 'make-env: wrote %s (mode 0600)\n' "$env"
