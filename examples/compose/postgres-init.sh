#!/bin/sh
# Run once by the postgres image on a new volume (/docker-entrypoint-initdb.d), as its superuser: makes the
# scheduler's role, trainyard, with no superuser, CREATEDB or CREATEROLE (the scheduler needs none: it only
# migrates its own database), and that database. The password comes from SCHEDULER_DB_PASSWORD (.env): psql
# reads it from its environment (\getenv, psql 15+), so it is on no command line.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv pw SCHEDULER_DB_PASSWORD
CREATE ROLE trainyard LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
CREATE DATABASE trainyard OWNER trainyard;
SQL
