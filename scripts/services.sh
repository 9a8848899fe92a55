#!/usr/bin/env bash
# Installs and starts, on loopback, the services Trainyard needs: Postgres, NATS with JetStream, and MinIO.
#
#   bash scripts/services.sh [start]   install what is missing, start what is not running, wait until ready
#   bash scripts/services.sh stop      stop what this script started (by its pid files)
#   bash scripts/services.sh status    say which services are up
#
# Idempotent: a server already listening on a port is reused rather than started again. All state (data,
# logs, pid files) lives under $TRAINYARD_SERVICES_DIR, so deleting that folder resets everything. The
# daemons are started with setsid/nohup and outlive this script.
set -euo pipefail

DIR=${TRAINYARD_SERVICES_DIR:-$HOME/.local/share/trainyard/services}
PG_PORT=${TRAINYARD_PG_PORT:-5432}
NATS_PORT=${TRAINYARD_NATS_PORT:-4222}
MINIO_PORT=${TRAINYARD_MINIO_PORT:-9000}
MINIO_CONSOLE_PORT=${TRAINYARD_MINIO_CONSOLE_PORT:-9001}
MINIO_BIN=${TRAINYARD_MINIO_BIN:-$HOME/.cache/trainyard/bin/minio}
# MinIO's root user: only this script uses it, to make the scheduler's own user (minio-users.env). Its
# password is random, made once and kept in $MINIO_ROOT_ENV (0600); TRAINYARD_MINIO_ROOT_USER/_PASSWORD
# override it, for a MinIO this script did not start.
MINIO_ROOT_NAME=trainyard-root
# The proxy refuses a bare commit hash; this pseudo-version is upstream commit 7aac2a2c5b7c.
MINIO_MODULE=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
# mc, MinIO's client, makes the scheduler's user and policy (MinIO's admin API encrypts its payloads).
MC_BIN=${TRAINYARD_MC_BIN:-$HOME/.cache/trainyard/bin/mc}
MC_MODULE=github.com/minio/mc@v0.0.0-20250313080218-cf909e1063a9
# The scheduler's MinIO user may use buckets named trainyard* and nothing else: no admin API, no other
# bucket. Agents get no user at all: per-attempt STS credentials from the scheduler.
MINIO_SCHEDULER_USER=trainyard-scheduler
MINIO_BUCKETS=${TRAINYARD_MINIO_BUCKET_PATTERN:-trainyard*}
# Used when the machine's Go cannot build that MinIO commit.
MINIO_FALLBACK_TOOLCHAIN=go1.24.8
READY_TIMEOUT_S=${TRAINYARD_SERVICES_TIMEOUT_S:-90}

PG_DATA=$DIR/postgres
PG_SOCKET_DIR=$DIR/run/postgres
# Two Postgres roles, each with a random password made once and kept in $PG_ENV (0600):
#   trainyard        the scheduler's: owns database trainyard; no superuser, CREATEDB or CREATEROLE
#   trainyard_admin  the tests' and the demo's: CREATEDB and CREATEROLE (a database, and for one test a
#                    role, per test file) and a member of trainyard; no superuser
# The superuser (postgres) logs in only over the socket, as the OS user that runs this script (peer).
PG_ENV=$DIR/postgres.env

# ---------------------------------------------------------------------------------------------- helpers

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# Prints the last lines of a log to stderr, so a failure shows its cause without a second command.
show_log() {
  local log=$1
  [[ -s $log ]] || return 0
  printf -- '--- last lines of %s ---\n' "$log" >&2
  tail -n 40 "$log" >&2
  printf -- '---\n' >&2
}

# A random password: 48 hex digits, safe in a URL, in SQL quotes and in a config file.
random_password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# value_of FILE NAME: NAME's value in a KEY=VALUE file (nothing when it is missing).
value_of() { if [[ -f $1 ]]; then sed -n "s/^$2=//p" "$1" | tail -n 1; fi; }

port_open() { timeout 2 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Which process listens on a port, for error messages.
who_listens() {
  local line=''
  command -v ss >/dev/null && line=$(ss -ltnpH "sport = :$1" 2>/dev/null | head -n 1)
  if [[ -n $line ]]; then printf '%s' "$line" | tr -s ' '; else printf 'an unknown process'; fi
}

pid_file() { printf '%s/run/%s.pid' "$DIR" "$1"; }

# True when the daemon this script started for $1 is still alive.
started_here() {
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# start_daemon NAME LOG COMMAND...: runs COMMAND in its own session so it outlives this script. The lock's
# file descriptor is closed for it, or the daemon would hold the lock forever.
start_daemon() {
  local name=$1 log=$2
  shift 2
  printf '\n=== %s: starting %s\n' "$(date -Is)" "$*" >>"$log"
  setsid nohup "$@" >>"$log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file "$name")"
}

# wait_until NAME LOG CHECK...: polls CHECK until it succeeds; fails early if the daemon has exited.
wait_until() {
  local name=$1 log=$2 deadline=$((SECONDS + READY_TIMEOUT_S))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! started_here "$name"; then
      show_log "$log"
      die "$name exited during start-up; see $log"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$log"
      die "$name did not become ready within ${READY_TIMEOUT_S}s; see $log"
    fi
    sleep 0.5
  done
}

as_root() {
  if ((EUID == 0)); then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $* (install it yourself, or run this script as root)"
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install these yourself: $*"
  if ((APT_UPDATED == 0)); then
    say "apt-get update"
    as_root apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" ||
    die "apt-get install $* failed"
}

# ------------------------------------------------------------------------------------------------ python

# The agent builds each run's environment with `python3 -m venv`. Debian splits ensurepip (which venv
# needs) into python3-venv, so a bare Debian python3 imports venv but cannot create one.
ensure_python_venv() {
  if ! command -v python3 >/dev/null; then
    apt_install python3 python3-venv
  elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
  python3 -c 'import ensurepip, venv' 2>/dev/null ||
    die "python3 ($(command -v python3)) still cannot create virtual environments (no ensurepip)"
}

# ---------------------------------------------------------------------------------------------- postgres

# Newest /usr/lib/postgresql/N/bin that has both initdb and postgres (Debian's layout).
pg_bindir() {
  local dir
  # sort -V, since the glob would put 10 before 9.
  for dir in /usr/lib/postgresql/*/bin; do
    if [[ -x $dir/initdb && -x $dir/postgres ]]; then printf '%s\n' "$dir"; fi
  done | sort -V | tail -n 1
}

ensure_postgres_installed() {
  [[ -n $(pg_bindir) ]] && return 0
  # Debian's postinst would create and start a "main" cluster on 5432 (with password auth), which
  # would take our port. We run our own cluster instead, so ask it not to create one.
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  printf '# Written by trainyard scripts/services.sh: it runs its own cluster.\ncreate_main_cluster = false\n' |
    as_root tee /etc/postgresql-common/createcluster.d/trainyard.conf >/dev/null
  apt_install postgresql
  [[ -n $(pg_bindir) ]] || die "postgresql installed, but no initdb/postgres under /usr/lib/postgresql/*/bin"
}

# Runs a command as the postgres OS user when we are root: postgres refuses to run as root.
as_pg() {
  if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}
# The same, as a command prefix for start_daemon (setsid cannot run a shell function).
if ((EUID == 0)); then AS_PG=(runuser -u postgres --); else AS_PG=(); fi

# As root, the data folder belongs to the postgres user, which must be able to reach it. $HOME is often
# mode 700, so grant it search (not read) permission on each folder above, with an ACL where possible.
let_postgres_reach() {
  ((EUID == 0)) || return 0
  local target=$1 path='' part
  IFS=/ read -ra parts <<<"${target#/}"
  for part in "${parts[@]}"; do
    path+=/$part
    runuser -u postgres -- test -x "$path" && continue
    if command -v setfacl >/dev/null; then
      setfacl -m u:postgres:x "$path"
      say "granted the postgres user search permission on $path (ACL)"
    else
      chmod o+x "$path"
      say "made $path searchable by others (chmod o+x) so the postgres user can reach $target"
    fi
  done
}

pg_running_here() {
  [[ -f $PG_DATA/postmaster.pid ]] || return 1
  kill -0 "$(head -n 1 "$PG_DATA/postmaster.pid")" 2>/dev/null
}

# The port our own cluster listens on (line 4 of postmaster.pid), or nothing when it is not running.
pg_port_here() {
  if pg_running_here; then sed -n 4p "$PG_DATA/postmaster.pid"; fi
}

pg_admin() {
  PGCONNECT_TIMEOUT=5 "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"
}

# The two roles' passwords (made once) and their URLs (written again on each start: the port may differ).
ensure_pg_env() {
  local scheduler admin
  scheduler=$(value_of "$PG_ENV" TRAINYARD_PG_SCHEDULER_PASSWORD)
  admin=$(value_of "$PG_ENV" TRAINYARD_PG_ADMIN_PASSWORD)
  [[ -n $scheduler ]] || scheduler=$(random_password)
  [[ -n $admin ]] || admin=$(random_password)
  (umask 077 && printf '%s\n' \
    '# Written by scripts/services.sh (the passwords are made once); scripts/test.sh and demo.sh source it.' \
    "TRAINYARD_PG_SCHEDULER_PASSWORD=$scheduler" "TRAINYARD_PG_ADMIN_PASSWORD=$admin" \
    "TRAINYARD_DATABASE_URL=postgres://trainyard:$scheduler@127.0.0.1:$PG_PORT/trainyard" \
    "TRAINYARD_TEST_DATABASE_URL=postgres://trainyard_admin:$admin@127.0.0.1:$PG_PORT/trainyard" >"$PG_ENV.tmp") &&
    mv "$PG_ENV.tmp" "$PG_ENV"
  chmod 600 "$PG_ENV"
}

# Who may log in how, written on every start (a cluster made by an older version of this script trusts
# everyone, which made any local uid a superuser): over TCP only with a password (SCRAM); over the socket
# only the superuser, and only as the OS user that runs this script or as postgres (peer, mapped).
# Returns 0 when a file changed.
write_pg_hba() {
  local changed=1 f
  (
    umask 077
    printf '%s\n' '# Written by trainyard scripts/services.sh; edits are overwritten.' \
      'local  all  postgres                peer map=services' \
      'host   all  all       127.0.0.1/32  scram-sha-256' \
      'host   all  all       ::1/128       scram-sha-256' >"$PG_DATA/pg_hba.conf.new"
    printf '%s\n' '# Written by trainyard scripts/services.sh; edits are overwritten.' \
      "services  $(id -un)  postgres" 'services  postgres  postgres' >"$PG_DATA/pg_ident.conf.new"
  )
  for f in pg_hba.conf pg_ident.conf; do
    if cmp -s "$PG_DATA/$f.new" "$PG_DATA/$f"; then rm -f "$PG_DATA/$f.new"; else mv "$PG_DATA/$f.new" "$PG_DATA/$f"; changed=0; fi
    if ((EUID == 0)); then chown postgres: "$PG_DATA/$f"; fi
  done
  return $changed
}

# The roles as described at PG_ENV, brought to that state on every start (a cluster made by an older
# version of this script has trainyard as a superuser with password trainyard). The passwords go in on
# stdin, never on a command line, which any local user can read.
ensure_pg_role_and_db() {
  ensure_pg_env
  local scheduler admin
  scheduler=$(value_of "$PG_ENV" TRAINYARD_PG_SCHEDULER_PASSWORD)
  admin=$(value_of "$PG_ENV" TRAINYARD_PG_ADMIN_PASSWORD)
  pg_admin <<SQL
SET client_min_messages = warning; -- not "already a member" on every start
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trainyard') THEN CREATE ROLE trainyard; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trainyard_admin') THEN CREATE ROLE trainyard_admin; END IF;
END \$\$;
ALTER ROLE trainyard LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '$scheduler';
ALTER ROLE trainyard_admin LOGIN NOSUPERUSER CREATEDB CREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '$admin';
-- So the admin may make databases owned by trainyard (the demo's) and end its sessions (DROP ... WITH (FORCE)).
GRANT trainyard TO trainyard_admin;
SQL
  if [[ -z $(pg_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'trainyard'") ]]; then
    pg_admin -c 'CREATE DATABASE trainyard OWNER trainyard'
  fi
}

start_postgres() {
  local log=$DIR/logs/postgres.log bindir err here_port
  here_port=$(pg_port_here)
  if [[ -n $here_port && $here_port != "$PG_PORT" ]]; then
    die "the postgres in $PG_DATA is running on port $here_port, not $PG_PORT; run '$0 stop' first"
  fi
  if port_open "$PG_PORT"; then
    if [[ -n $here_port ]]; then
      # The log-in rules first (a reload applies them to new sessions), then the roles.
      if write_pg_hba; then
        as_pg "$(pg_bindir)/pg_ctl" reload -D "$PG_DATA" >/dev/null
        say "postgres: log-in rules rewritten ($PG_DATA/pg_hba.conf: passwords over TCP, peer on the socket)"
      fi
      ensure_pg_role_and_db
      say "postgres: already running on 127.0.0.1:$PG_PORT ($PG_DATA; passwords in $PG_ENV, mode 0600)"
      return 0
    fi
    ensure_postgres_installed # for psql
    ensure_pg_env
    # The password goes in psql's environment, not on its command line.
    if err=$(PGCONNECT_TIMEOUT=5 PGPASSWORD=$(value_of "$PG_ENV" TRAINYARD_PG_ADMIN_PASSWORD) "$(pg_bindir)/psql" -X -q \
      -h 127.0.0.1 -p "$PG_PORT" -U trainyard_admin -d trainyard -c 'select 1' 2>&1 >/dev/null); then
      say "postgres: reusing the server already on 127.0.0.1:$PG_PORT (not started by this script)"
      return 0
    fi
    die "port $PG_PORT is taken by $(who_listens "$PG_PORT"), but trainyard_admin cannot log in there:
  $err
Make there the roles and database described at PG_ENV in $0, with the passwords in $PG_ENV; or stop that server, or set TRAINYARD_PG_PORT."
  fi
  ensure_postgres_installed
  bindir=$(pg_bindir)
  mkdir -p "$PG_DATA" "$PG_SOCKET_DIR"
  if ((EUID == 0)); then
    chown postgres: "$PG_DATA" "$PG_SOCKET_DIR"
    let_postgres_reach "$PG_DATA"
  fi
  chmod 700 "$PG_DATA"
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "postgres: initdb $PG_DATA"
    # No trust: a password over TCP, peer on the socket (write_pg_hba below replaces these lines).
    as_pg "$bindir/initdb" -D "$PG_DATA" --auth-local=peer --auth-host=scram-sha-256 --username=postgres --encoding=UTF8 --locale=C \
      >>"$DIR/logs/initdb.log" 2>&1 || { show_log "$DIR/logs/initdb.log"; die "initdb failed"; }
  fi
  write_pg_hba || true
  # A throwaway test/dev cluster: durability is traded for speed (fsync off, no synchronous commit), and
  # there is room for many connections, since every test file opens its own pools.
  start_daemon postgres "$log" "${AS_PG[@]}" "$bindir/postgres" -D "$PG_DATA" \
    -c listen_addresses=127.0.0.1 -p "$PG_PORT" -c unix_socket_directories="$PG_SOCKET_DIR" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c max_connections=400 -c shared_buffers=256MB
  wait_until postgres "$log" "$bindir/pg_isready" -q -h "$PG_SOCKET_DIR" -p "$PG_PORT"
  wait_until postgres "$log" port_open "$PG_PORT"
  ensure_pg_role_and_db
  say "postgres: started on 127.0.0.1:$PG_PORT (data $PG_DATA, log $log)"
}

stop_postgres() {
  if pg_running_here; then
    as_pg "$(pg_bindir)/pg_ctl" stop -D "$PG_DATA" -m fast -w >/dev/null && say "postgres: stopped"
  fi
  rm -f "$(pid_file postgres)"
}

# -------------------------------------------------------------------------------------------------- nats

# NATS with users and no anonymous access. The passwords are made once and kept in $NATS_ENV (0600), which
# scripts/test.sh and scripts/demo.sh source; the daemons take TRAINYARD_NATS_USER/_PASSWORD (the scheduler
# user, then the agent user). Subjects start with the installation's prefix (one token: no dots):
#   scheduler: publishes anything; subscribes to PREFIX.kick, PREFIX.run.* and its own inboxes
#   agent:     publishes nothing; subscribes to PREFIX.agent.*.dispatch and PREFIX.agent.*.control (a shared
#              user sees every agent's subjects: fine, since a dispatch is a doorbell and carries no authority)
NATS_ENV=$DIR/nats-users.env
NATS_CONF=$DIR/nats/nats.conf

ensure_nats_users() {
  if [[ ! -s $NATS_ENV ]]; then
    (umask 077 && printf '%s\n' \
      'TRAINYARD_NATS_SCHEDULER_USER=trainyard-scheduler' "TRAINYARD_NATS_SCHEDULER_PASSWORD=$(random_password)" \
      'TRAINYARD_NATS_AGENT_USER=trainyard-agent' "TRAINYARD_NATS_AGENT_PASSWORD=$(random_password)" >"$NATS_ENV.tmp") &&
      mv "$NATS_ENV.tmp" "$NATS_ENV"
    say "nats: users created; their passwords are in $NATS_ENV (mode 0600)"
  fi
  chmod 600 "$NATS_ENV"
  # shellcheck disable=SC1090
  source "$NATS_ENV"
  mkdir -p "$DIR/nats"
  (umask 077 && cat >"$NATS_CONF.new" <<EOF
# Written by scripts/services.sh from $NATS_ENV; edits are overwritten.
listen: 127.0.0.1:$NATS_PORT
jetstream { store_dir: "$DIR/nats" }
authorization {
  users = [
    { user: "$TRAINYARD_NATS_SCHEDULER_USER", password: "$TRAINYARD_NATS_SCHEDULER_PASSWORD",
      permissions: { publish: { allow: [">"] }, subscribe: { allow: ["*.kick", "*.run.*", "_INBOX.>"] } } }
    { user: "$TRAINYARD_NATS_AGENT_USER", password: "$TRAINYARD_NATS_AGENT_PASSWORD",
      permissions: { publish: { deny: [">"] }, subscribe: { allow: ["*.agent.*.dispatch", "*.agent.*.control"] } } }
  ]
}
EOF
  )
  if cmp -s "$NATS_CONF.new" "$NATS_CONF"; then rm -f "$NATS_CONF.new"; else mv "$NATS_CONF.new" "$NATS_CONF"; fi
}

# The configuration a running nats-server (started here) was started with, by checksum.
nats_conf_sum() { sha256sum "$NATS_CONF" | cut -d' ' -f1; }

start_nats() {
  local log=$DIR/logs/nats.log
  ensure_nats_users
  if port_open "$NATS_PORT"; then
    if started_here nats; then
      if [[ -f $DIR/run/nats.conf.sum && $(<"$DIR/run/nats.conf.sum") == "$(nats_conf_sum)" ]]; then
        say "nats: already running on 127.0.0.1:$NATS_PORT (users in $NATS_ENV)"
        return
      fi
      # Started by an earlier version of this script (no users) or with another configuration.
      say "nats: restarting with the current configuration ($NATS_CONF)"
      stop_daemon nats
    else
      say "nats: reusing the server already on 127.0.0.1:$NATS_PORT (not started by this script; it needs JetStream and the users in $NATS_CONF)"
      return
    fi
  fi
  command -v nats-server >/dev/null || apt_install nats-server
  start_daemon nats "$log" nats-server -c "$NATS_CONF"
  nats_conf_sum >"$DIR/run/nats.conf.sum"
  # nats-server enables JetStream before it accepts clients, so an open port means it is ready.
  wait_until nats "$log" port_open "$NATS_PORT"
  say "nats: started on 127.0.0.1:$NATS_PORT with JetStream and users (store $DIR/nats, config $NATS_CONF, log $log)"
}

# ------------------------------------------------------------------------------------------------- minio

minio_live() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$MINIO_PORT/minio/health/live"; }

# Builds a Go program from source once (MinIO and mc have no Debian package). Never rebuilds an existing
# binary. The build goes to a temporary folder and is renamed into place, so nobody sees a half-written one.
ensure_go_binary() {
  local name=$1 module=$2 bin=$3
  [[ -x $bin ]] && return 0
  command -v go >/dev/null || die "$name is not at $bin and there is no Go to build it with"
  local bindir tmp log=$DIR/logs/$name-build.log
  bindir=$(dirname "$bin")
  mkdir -p "$bindir"
  tmp=$(mktemp -d "$bindir/.build.XXXXXX")
  say "$name: building $module into $bin (once; this takes minutes; log $log)"
  if ! CGO_ENABLED=0 GOBIN=$tmp go install "$module" >>"$log" 2>&1; then
    say "$name: build failed with $(go env GOVERSION); retrying with GOTOOLCHAIN=$MINIO_FALLBACK_TOOLCHAIN"
    if ! CGO_ENABLED=0 GOTOOLCHAIN=$MINIO_FALLBACK_TOOLCHAIN GOBIN=$tmp go install "$module" >>"$log" 2>&1; then
      rm -rf "$tmp"
      show_log "$log"
      die "could not build $name; see $log"
    fi
  fi
  mv "$tmp/$name" "$bin"
  rm -rf "$tmp"
}

ensure_minio_binary() { ensure_go_binary minio "$MINIO_MODULE" "$MINIO_BIN"; }

MINIO_ENV=$DIR/minio-users.env

# The scheduler's MinIO user and its policy, made (or brought up to date) on every start: a password
# kept in $MINIO_ENV (0600) as TRAINYARD_MINIO_ACCESS_KEY/_SECRET_KEY, the variables the scheduler reads.
ensure_minio_users() {
  ensure_go_binary mc "$MC_MODULE" "$MC_BIN"
  if [[ ! -s $MINIO_ENV ]]; then
    (umask 077 && printf '%s\n' "TRAINYARD_MINIO_ACCESS_KEY=$MINIO_SCHEDULER_USER" "TRAINYARD_MINIO_SECRET_KEY=$(random_password)" >"$MINIO_ENV.tmp") &&
      mv "$MINIO_ENV.tmp" "$MINIO_ENV"
  fi
  chmod 600 "$MINIO_ENV"
  local secret policy=$DIR/run/minio-scheduler-policy.json log=$DIR/logs/mc.log out
  secret=$(sed -n 's/^TRAINYARD_MINIO_SECRET_KEY=//p' "$MINIO_ENV")
  printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}\n' \
    "$MINIO_BUCKETS" "$MINIO_BUCKETS" >"$policy"
  # mc reads the server and its root credentials from MC_HOST_<alias>: nothing is written to ~/.mc.
  local -x MC_HOST_trainyard="http://$MINIO_USER:$MINIO_PASSWORD@127.0.0.1:$MINIO_PORT" MC_CONFIG_DIR=$DIR/mc
  {
    "$MC_BIN" admin policy create trainyard "$MINIO_SCHEDULER_USER" "$policy" &&
      "$MC_BIN" admin user add trainyard "$MINIO_SCHEDULER_USER" "$secret"
  } >>"$log" 2>&1 || { show_log "$log"; die "could not make the scheduler's MinIO user (is the root user $MINIO_USER? set TRAINYARD_MINIO_ROOT_USER/_PASSWORD); see $log"; }
  # Attaching twice is refused ("already attached"): that is the state we want.
  if ! out=$("$MC_BIN" admin policy attach trainyard "$MINIO_SCHEDULER_USER" --user "$MINIO_SCHEDULER_USER" 2>&1) && [[ $out != *already* ]]; then
    printf '%s\n' "$out" >>"$log"
    show_log "$log"
    die "could not attach the scheduler's MinIO policy; see $log"
  fi
  say "minio: scheduler user $MINIO_SCHEDULER_USER may use buckets $MINIO_BUCKETS (keys in $MINIO_ENV, mode 0600)"
}

MINIO_ROOT_ENV=$DIR/minio-root.env
MINIO_ROOT_SUM=$DIR/run/minio-root.sum

# Sets MINIO_USER and MINIO_PASSWORD: TRAINYARD_MINIO_ROOT_USER/_PASSWORD when both are set (a MinIO this
# script did not start), else the root user in $MINIO_ROOT_ENV, made once with a random password. MinIO
# keeps no copy of its root credentials in its data folder (its IAM files are not encrypted with them), so
# a data folder made with minioadmin/minioadmin takes the new ones on its next start.
ensure_minio_root() {
  if [[ -n ${TRAINYARD_MINIO_ROOT_USER:-} && -n ${TRAINYARD_MINIO_ROOT_PASSWORD:-} ]]; then
    MINIO_USER=$TRAINYARD_MINIO_ROOT_USER MINIO_PASSWORD=$TRAINYARD_MINIO_ROOT_PASSWORD
    return
  fi
  if [[ ! -s $MINIO_ROOT_ENV ]]; then
    (umask 077 && printf '%s\n' '# Written by scripts/services.sh: MinIO'"'"'s root user; only services.sh uses it.' \
      "MINIO_ROOT_USER=$MINIO_ROOT_NAME" "MINIO_ROOT_PASSWORD=$(random_password)" >"$MINIO_ROOT_ENV.tmp") &&
      mv "$MINIO_ROOT_ENV.tmp" "$MINIO_ROOT_ENV"
    say "minio: root password made; it is in $MINIO_ROOT_ENV (mode 0600)"
  fi
  chmod 600 "$MINIO_ROOT_ENV"
  MINIO_USER=$(value_of "$MINIO_ROOT_ENV" MINIO_ROOT_USER)
  MINIO_PASSWORD=$(value_of "$MINIO_ROOT_ENV" MINIO_ROOT_PASSWORD)
}

# Which root credentials a MinIO started here was started with, by checksum (not the password itself).
minio_root_sum() { printf '%s:%s' "$MINIO_USER" "$MINIO_PASSWORD" | sha256sum | cut -d' ' -f1; }

start_minio() {
  local log=$DIR/logs/minio.log
  ensure_minio_root
  # MinIO writes its users' secret keys in plain JSON under .minio.sys: only its owner may read them.
  mkdir -p "$DIR/minio"
  chmod 700 "$DIR/minio"
  if port_open "$MINIO_PORT"; then
    if minio_live; then
      if ! started_here minio; then
        say "minio: reusing the server already on 127.0.0.1:$MINIO_PORT (not started by this script)"
        return 0
      fi
      if [[ -f $MINIO_ROOT_SUM && $(<"$MINIO_ROOT_SUM") == "$(minio_root_sum)" ]]; then
        say "minio: already running on 127.0.0.1:$MINIO_PORT"
        return 0
      fi
      # Started by an earlier version of this script (root minioadmin/minioadmin) or with other credentials.
      say "minio: restarting with the root user in $MINIO_ROOT_ENV"
      stop_daemon minio
    else
      die "port $MINIO_PORT is taken by $(who_listens "$MINIO_PORT"), which does not answer MinIO's health check; stop it or set TRAINYARD_MINIO_PORT"
    fi
  fi
  ensure_minio_binary
  # The credentials go in MinIO's environment (readable by its owner only), not on its command line.
  MINIO_ROOT_USER=$MINIO_USER MINIO_ROOT_PASSWORD=$MINIO_PASSWORD MINIO_UPDATE=off \
    start_daemon minio "$log" "$MINIO_BIN" server "$DIR/minio" \
    --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE_PORT"
  (umask 077 && minio_root_sum >"$MINIO_ROOT_SUM")
  wait_until minio "$log" minio_live
  say "minio: started on 127.0.0.1:$MINIO_PORT (data $DIR/minio, root user in $MINIO_ROOT_ENV, log $log)"
}

# --------------------------------------------------------------------------------------- stop and status

# Stops a daemon by its pid file: SIGTERM, then SIGKILL if it is still there after 20 seconds.
stop_daemon() {
  local name=$1 pid i
  if started_here "$name"; then
    pid=$(<"$(pid_file "$name")")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      say "$name: did not stop in 20s; killed"
    else
      say "$name: stopped"
    fi
  fi
  rm -f "$(pid_file "$name")"
}

status_line() {
  local name=$1 port=$2 owner
  if started_here "$name" || { [[ $name == postgres ]] && pg_running_here; }; then owner='started by this script'
  else owner='not started by this script'; fi
  if port_open "$port"; then printf '%-9s up    127.0.0.1:%s (%s)\n' "$name" "$port" "$owner"
  else printf '%-9s down  127.0.0.1:%s\n' "$name" "$port"; fi
}

# -------------------------------------------------------------------------------------------------- main

mkdir -p "$DIR/logs" "$DIR/run"
# A failed statement lands in postgres.log with its text (an ALTER ROLE ... PASSWORD): logs are the owner's.
chmod 700 "$DIR/logs"
# One invocation at a time (say, two test runs starting together); daemons do not inherit this lock.
exec 9>"$DIR/run/services.lock"
flock -w 900 9 || die "another services.sh has held $DIR/run/services.lock for 15 minutes"

case ${1:-start} in
  start)
    ensure_python_venv
    start_postgres
    start_nats
    start_minio
    ensure_minio_users
    say "all services are up (state in $DIR)"
    ;;
  stop)
    stop_daemon minio
    stop_daemon nats
    stop_postgres
    ;;
  status)
    status_line postgres "$PG_PORT"
    status_line nats "$NATS_PORT"
    status_line minio "$MINIO_PORT"
    ;;
  *)
    die "usage: $0 [start|stop|status]"
    ;;
esac
