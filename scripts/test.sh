#!/usr/bin/env bash
# The test command (`npm test`): installs dependencies if needed, starts the services (scripts/services.sh),
# builds, runs the tap tests, and ends with one line `N passed, N failed` that CI reads.
#
#   npm test                                   every test/**/*.test.ts
#   npm test -- test/runs.test.ts --bail       only these files; tap options too (use --opt=value)
#
# N counts individual assertions across all files; see scripts/count-tap.mjs for the rules. If a step
# before the tests fails (install, services, build), the last line is still there: `0 passed, 1 failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

counted=0
on_exit() {
  local status=$?
  if ((status != 0 && counted == 0)); then
    printf '\n0 passed, 1 failed\n'
  fi
}
trap on_exit EXIT

step() { printf '\n==> %s\n' "$*"; }

# npm records the installed tree in node_modules/.package-lock.json; an older record means stale.
deps_stale() {
  local record=node_modules/.package-lock.json
  [[ ! -f $record || package.json -nt $record || (-f package-lock.json && package-lock.json -nt $record) ]]
}

if deps_stale; then
  if [[ -f package-lock.json ]]; then
    step 'npm ci'
    npm ci
  else
    step 'npm install'
    npm install
  fi
fi

step 'services'
bash scripts/services.sh
# The partition test joins a second network namespace by a veth pair (test/helpers/netns.ts).
if ! command -v ip >/dev/null 2>&1; then
  step 'installing iproute2 (ip netns, for the partition test)'
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2; }
fi

# The completion tests check the zsh script with zsh itself (test/e2e/cli-help.test.ts).
if ! command -v zsh >/dev/null 2>&1; then
  step 'installing zsh (for the zsh completion test)'
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q zsh >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zsh; }
fi
# libfaketime, for the test of a scheduler whose clock runs fast (test/faults/handshakes.test.ts).
if [[ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]] && command -v apt-get >/dev/null 2>&1; then
  step 'installing libfaketime (for the clock-skew test)'
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libfaketime >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libfaketime; }
fi
# Chromium, for the web console's browser tests (test/e2e/console.test.ts, driven by playwright-core).
if ! command -v chromium >/dev/null 2>&1; then
  step 'installing chromium (for the console tests)'
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
fi
# grpcurl, for the tests of the scheduler's gRPC health and reflection (test/e2e/health.test.ts): built
# once with Go and cached beside MinIO.
step 'grpcurl'
TRAINYARD_GRPCURL_BIN=$(bash scripts/grpcurl.sh)
export TRAINYARD_GRPCURL_BIN

step 'build'
npm run build

# The tests connect where the services script put the services (it honours the same port variables).
export TRAINYARD_NATS_URL=${TRAINYARD_NATS_URL:-nats://127.0.0.1:${TRAINYARD_NATS_PORT:-4222}}
export TRAINYARD_MINIO_ENDPOINT=${TRAINYARD_MINIO_ENDPOINT:-http://127.0.0.1:${TRAINYARD_MINIO_PORT:-9000}}
# Where services.sh keeps its state (test/e2e/single-box.test.ts checks those files).
export TRAINYARD_SERVICES_DIR=${TRAINYARD_SERVICES_DIR:-$HOME/.local/share/trainyard/services}
services_dir=$TRAINYARD_SERVICES_DIR
# Postgres roles (made by services.sh, passwords in this 0600 file): TRAINYARD_TEST_DATABASE_URL is the
# admin role (CREATEDB, CREATEROLE, no superuser) that makes a database per test file; the daemons of a
# test connect to that database (test/helpers/stack.ts). A URL set before `npm test` wins.
test_database_url=${TRAINYARD_TEST_DATABASE_URL:-}
set -a
# shellcheck disable=SC1091
source "$services_dir/postgres.env"
TRAINYARD_TEST_DATABASE_URL=${test_database_url:-$TRAINYARD_TEST_DATABASE_URL}
# NATS users (made by services.sh): the test stack gives the scheduler user to schedulers and the agent
# user to agents (test/helpers/stack.ts).
# shellcheck disable=SC1091
source "$services_dir/nats-users.env"
# shellcheck disable=SC1091
source "$services_dir/minio-users.env"
set +a

# Arguments that are not options name the files to run; without any, run them all.
files=()
for arg in "$@"; do
  [[ $arg == -* ]] || files+=("$arg")
done
if ((${#files[@]} == 0)); then
  shopt -s globstar nullglob
  files=(test/**/*.test.ts)
  shopt -u globstar nullglob
  if ((${#files[@]} == 0)); then
    echo 'test.sh: no test files match test/**/*.test.ts' >&2
    exit 1
  fi
  set -- "$@" "${files[@]}"
fi

step "tap (${#files[@]} file(s))"
# --reporter=tap: count-tap.mjs shows tap's TAP output as it comes and counts it. The timeout is per
# test file, in seconds: these tests start daemons and real training runs.
counted=1
node scripts/count-tap.mjs node_modules/.bin/tap --reporter=tap --disable-coverage --timeout=600 --jobs=2 "$@"
