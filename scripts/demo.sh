#!/usr/bin/env bash
# The main job, end to end on this machine: bring up Postgres, NATS and MinIO, start a scheduler and an
# agent, push the example package and dataset, run a training pipeline and print the new version and its
# _results.json. The demo keeps its own database and bucket (reset on every run), so it always trains
# iris-classifier 1.0 into 1.1 and never touches a real installation's data.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund
fi
say "starting services (Postgres, NATS, MinIO)"
bash scripts/services.sh
say "building"
npm run --silent build

DEMO_DIR=${TRAINYARD_DEMO_DIR:-$PWD/.demo}
rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR"
SERVICES_DIR=${TRAINYARD_SERVICES_DIR:-$HOME/.local/share/trainyard/services}
# Postgres roles made by services.sh (passwords in this 0600 file): the scheduler connects as trainyard (no
# superuser) to a database of the demo's, which the admin role (CREATEDB, no superuser) resets.
# shellcheck disable=SC1091
source "$SERVICES_DIR/postgres.env"
# Only the scheduler is given it (not exported: the agent and the CLI need no database).
DEMO_DATABASE_URL=${TRAINYARD_DATABASE_URL%/trainyard}/trainyard_demo
export TRAINYARD_NATS_URL=nats://127.0.0.1:${TRAINYARD_NATS_PORT:-4222}
export TRAINYARD_MINIO_ENDPOINT=http://127.0.0.1:${TRAINYARD_MINIO_PORT:-9000}
export TRAINYARD_BUCKET=trainyard-demo
export TRAINYARD_SUBJECT_PREFIX=trainyard-demo
export TRAINYARD_SCHEDULER_LISTEN=127.0.0.1:50151
export TRAINYARD_SCHEDULER=127.0.0.1:50151
# The console (and /healthz, /readyz) on a port of the demo's own, so it does not collide with a scheduler
# already serving the default 127.0.0.1:8080.
export TRAINYARD_HTTP_LISTEN=${TRAINYARD_DEMO_HTTP_LISTEN:-127.0.0.1:8151}
export TRAINYARD_AGENT_NAME=demo-agent
export TRAINYARD_WORK_DIR=$DEMO_DIR/work
# The demo's own token file: its scheduler bootstraps the admin token there (never over a real one).
export TRAINYARD_TOKEN_FILE=$DEMO_DIR/admin-token
# NATS users made by services.sh: the scheduler's may publish, the agent's may only subscribe.
# shellcheck disable=SC1091
source "$SERVICES_DIR/nats-users.env"
# The scheduler's MinIO user (services.sh made it; not root). The agent gets no storage keys: each
# attempt comes with STS credentials scoped to it.
# shellcheck disable=SC1091
source "$SERVICES_DIR/minio-users.env"

say "resetting the demo's database and bucket"
# Keys and passwords reach node through its environment, never its command line (any local user reads those).
TRAINYARD_TEST_DATABASE_URL=$TRAINYARD_TEST_DATABASE_URL TRAINYARD_MINIO_ACCESS_KEY=$TRAINYARD_MINIO_ACCESS_KEY \
  TRAINYARD_MINIO_SECRET_KEY=$TRAINYARD_MINIO_SECRET_KEY node --input-type=module -e "
import pg from 'pg';
const c = new pg.Client(process.env.TRAINYARD_TEST_DATABASE_URL);
await c.connect();
await c.query('DROP DATABASE IF EXISTS trainyard_demo WITH (FORCE)');
await c.query('CREATE DATABASE trainyard_demo OWNER trainyard');
await c.end();
import * as Minio from 'minio';
const e = new URL(process.env.TRAINYARD_MINIO_ENDPOINT);
const m = new Minio.Client({ endPoint: e.hostname, port: Number(e.port), useSSL: false, accessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY, secretKey: process.env.TRAINYARD_MINIO_SECRET_KEY });
if (await m.bucketExists('trainyard-demo')) {
  const keys = [];
  for await (const o of m.listObjectsV2('trainyard-demo', '', true)) keys.push(o.name);
  for (let i = 0; i < keys.length; i += 1000) await m.removeObjects('trainyard-demo', keys.slice(i, i + 1000));
}
"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

say "starting a scheduler and an agent (logs in $DEMO_DIR)"
TRAINYARD_DATABASE_URL=$DEMO_DATABASE_URL TRAINYARD_NATS_USER=$TRAINYARD_NATS_SCHEDULER_USER TRAINYARD_NATS_PASSWORD=$TRAINYARD_NATS_SCHEDULER_PASSWORD \
  TRAINYARD_MINIO_ACCESS_KEY=$TRAINYARD_MINIO_ACCESS_KEY TRAINYARD_MINIO_SECRET_KEY=$TRAINYARD_MINIO_SECRET_KEY \
  node bin/trainyard.js scheduler >"$DEMO_DIR/scheduler.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do grep -q '"msg":"listening"' "$DEMO_DIR/scheduler.log" 2>/dev/null && break; sleep 0.2; done
grep -q '"msg":"listening"' "$DEMO_DIR/scheduler.log" || { cat "$DEMO_DIR/scheduler.log"; echo "the scheduler did not start" >&2; exit 1; }
ty() { node bin/trainyard.js "$@"; }
say "tokens: the scheduler wrote an admin token to $TRAINYARD_TOKEN_FILE (mode $(stat -c %a "$TRAINYARD_TOKEN_FILE")); as admin, a join token for the agent and a member token for project iris"
echo "\$ trainyard agents join-token create --expires 1h"
JOIN_TOKEN=$(ty agents join-token create --expires 1h --name demo-agent)
echo "\$ trainyard tokens create --project iris --role member --name demo-user"
MEMBER_TOKEN=$(ty tokens create --project iris --role member --name demo-user)
echo "\$ trainyard tokens create --project iris --role reader --name demo-console"
READER_TOKEN=$(ty tokens create --project iris --role reader --name demo-console)
ty tokens list
TRAINYARD_NATS_USER=$TRAINYARD_NATS_AGENT_USER TRAINYARD_NATS_PASSWORD=$TRAINYARD_NATS_AGENT_PASSWORD TRAINYARD_JOIN_TOKEN=$JOIN_TOKEN \
  node bin/trainyard.js agent >"$DEMO_DIR/agent.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do grep -q '"msg":"registered"' "$DEMO_DIR/agent.log" 2>/dev/null && break; sleep 0.2; done
grep -q '"msg":"registered"' "$DEMO_DIR/agent.log" || { cat "$DEMO_DIR/agent.log"; echo "the agent did not register" >&2; exit 1; }

say "trainyard agents (as admin)"
ty agents
# From here on the demo acts as the member of project iris: its packages, datasets and runs are iris's.
export TRAINYARD_TOKEN=$MEMBER_TOKEN
say "acting as the member of project iris from now on (TRAINYARD_TOKEN=\$MEMBER_TOKEN)"
say "trainyard package push examples/packages/iris-classifier --name iris-classifier"
ty package push examples/packages/iris-classifier --name iris-classifier
say "trainyard dataset push examples/datasets/iris --name iris"
ty dataset push examples/datasets/iris --name iris
say "trainyard run train --package iris-classifier --version 1.0 --dataset iris/train --env save_training_data=true --wait"
echo "(the first run builds the package's venv: pip installs scikit-learn, which takes a minute)"
ty run train --package iris-classifier --version 1.0 --dataset iris/train --env save_training_data=true --wait --json >"$DEMO_DIR/run.json" || {
  cat "$DEMO_DIR/run.json"; id=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$DEMO_DIR/run.json','utf8')).id)" 2>/dev/null || true)
  [[ -n ${id:-} ]] && ty run logs "$id"; exit 1; }
id=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$DEMO_DIR/run.json','utf8')).id)")
say "trainyard run logs $id"
ty run logs "$id"
say "trainyard run get $id"
ty run get "$id"
say "trainyard package versions iris-classifier"
ty package versions iris-classifier
version=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$DEMO_DIR/run.json','utf8')).output_version)")
say "run $id is Successful: iris-classifier $version"

say "trainyard run full --package iris-classifier --dataset iris/train --eval-dataset iris/holdout --wait"
echo "(a full pipeline: process_data splits iris/train, train, evaluate on the held-out iris/holdout, save)"
ty run full --package iris-classifier --dataset iris/train --eval-dataset iris/holdout --wait --json >"$DEMO_DIR/full.json" || {
  cat "$DEMO_DIR/full.json"; exit 1; }
full=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$DEMO_DIR/full.json','utf8')).id)")
ty run get "$full"
score=$(node -e "const r = JSON.parse(require('fs').readFileSync('$DEMO_DIR/full.json','utf8')); console.log(r.score + ' (version ' + r.output_version + ')')")
say "full pipeline $full is Successful: accuracy on iris/holdout $score"
ty package versions iris-classifier

say "the web console"
cat <<EOF
Open http://$TRAINYARD_HTTP_LISTEN/ and sign in with a token:
  reader of project iris (sees iris's runs, packages, datasets, schedules and events):
    $READER_TOKEN
  member of project iris (the same, and may kill iris's runs):
    $MEMBER_TOKEN
  admin (everything, and the Agents page): the token in $TRAINYARD_TOKEN_FILE
The demo stops its scheduler when it exits; to keep browsing, run it with TRAINYARD_DEMO_KEEP=1 and press Enter to stop.
EOF
if [[ ${TRAINYARD_DEMO_KEEP:-} == 1 && -t 0 ]]; then
  read -r -p "Press Enter to stop the demo's scheduler and agent. " || true
fi
