// Issue 19, "single box": what `npm run services` (scripts/services.sh) leaves on a box must not make any
// local user a Postgres superuser or MinIO's root. Tried as an attacker with a shell on the box would: as
// an unprivileged uid (nobody), with the well-known defaults (trainyard/trainyard, minioadmin/minioadmin),
// with no password at all, over TCP and over the socket, and by reading the services' files.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import * as Minio from 'minio';
import { minioEndpoint } from '../helpers/stack.js';

const servicesDir = process.env.TRAINYARD_SERVICES_DIR ?? path.join(os.homedir(), '.local', 'share', 'trainyard', 'services');
// test.sh exports the services' URLs; the port is the one services.sh was started with.
const serviceUrl = process.env.TRAINYARD_TEST_DATABASE_URL ?? process.env.TRAINYARD_DATABASE_URL ?? 'postgres://127.0.0.1:5432/';
const pgPort = new URL(serviceUrl).port || '5432';
const nobody = { uid: 65534, gid: 65534 };

/** Debian's psql (the newest /usr/lib/postgresql/N/bin), which services.sh installs with the server. */
function psqlBin(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => existsSync(path.join(base, v, 'bin', 'psql'))).sort((a, b) => Number(a) - Number(b));
  return versions.length ? path.join(base, versions.at(-1)!, 'bin', 'psql') : null;
}

/** Runs a command as nobody with no groups (setpriv), with an empty environment but these variables. */
function asNobody(cmd: string[], env: Record<string, string> = {}): { code: number | null; out: string } {
  const r = spawnSync('setpriv', ['--reuid', String(nobody.uid), '--regid', String(nobody.gid), '--clear-groups', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...cmd],
    { encoding: 'utf8', cwd: '/' });
  return { code: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

const ready = (t: Test): string | null => {
  if (process.getuid?.() !== 0) { void t.skip('needs root, to act as another uid'); return null; }
  if (spawnSync('setpriv', ['--version']).error) { void t.skip('setpriv (util-linux) is not installed'); return null; }
  const psql = psqlBin();
  if (!psql) void t.skip('no psql under /usr/lib/postgresql');
  return psql;
};

t.test('Postgres: nobody on the box gets in as the scheduler or the superuser', async (t) => {
  const psql = ready(t);
  if (!psql) return;
  const tryLogin = (user: string, extra: { host?: string; password?: string } = {}) =>
    asNobody([psql, '-X', '-w', '-h', extra.host ?? '127.0.0.1', '-p', pgPort, '-U', user, '-d', 'postgres', '-tAc', 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user'],
      extra.password === undefined ? {} : { PGPASSWORD: extra.password });
  // The control: nobody does reach the server (a refusal below is the server's, not a missing route).
  const control = tryLogin('trainyard', { password: 'not-the-password' });
  t.match(control.out, /password authentication failed for user "trainyard"/, `the server answers nobody over TCP: ${control.out}`);

  for (const [user, password] of [['trainyard', 'trainyard'], ['trainyard_admin', 'trainyard'], ['postgres', 'postgres']] as const) {
    const r = tryLogin(user, { password });
    t.not(r.code, 0, `${user}/${password} over TCP is refused (${r.out})`);
  }
  for (const user of ['trainyard', 'trainyard_admin', 'postgres']) {
    const r = tryLogin(user);
    t.not(r.code, 0, `${user} over TCP with no password is refused (${r.out})`);
  }
  // Over the socket, as the superuser: the socket's folder is reachable by anyone, so only the rules guard it.
  const socketDir = path.join(servicesDir, 'run', 'postgres');
  const socket = path.join(socketDir, `.s.PGSQL.${pgPort}`);
  if (existsSync(socket)) {
    for (const user of ['postgres', 'trainyard', 'trainyard_admin']) {
      const r = tryLogin(user, { host: socketDir });
      t.not(r.code, 0, `${user} over the socket (${socket}) is refused to nobody (${r.out})`);
    }
  } else {
    t.comment(`no socket at ${socket} (a server services.sh did not start): TCP only`);
  }
});

t.test('Postgres: the scheduler\'s role and the tests\' admin role are not superusers', async (t) => {
  const scheduler = process.env.TRAINYARD_DATABASE_URL;
  const admin = process.env.TRAINYARD_TEST_DATABASE_URL;
  t.ok(scheduler && admin, 'test.sh exports both roles\' URLs from the services\' postgres.env');
  if (!scheduler || !admin) return;
  const rights = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ user: string; rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean; rolreplication: boolean; rolbypassrls: boolean }>(
        'SELECT current_user AS user, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = current_user')).rows[0];
    } finally { await c.end(); }
  };
  t.same(await rights(scheduler), { user: 'trainyard', rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolreplication: false, rolbypassrls: false },
    'the scheduler\'s role (TRAINYARD_DATABASE_URL) has no superuser, CREATEDB or CREATEROLE');
  t.same(await rights(admin), { user: 'trainyard_admin', rolsuper: false, rolcreatedb: true, rolcreaterole: true, rolreplication: false, rolbypassrls: false },
    'the tests\' admin role makes databases and roles, and is no superuser either');
  t.notMatch(new URL(scheduler).password, /^trainyard$/, 'the scheduler\'s password is not the old default');
});

t.test('MinIO: the default root user is refused; the root user in minio-root.env works', async (t) => {
  const m = new URL(minioEndpoint);
  const client = (accessKey: string, secretKey: string) => new Minio.Client({ endPoint: m.hostname, port: Number(m.port || 80), useSSL: false, accessKey, secretKey });
  await t.rejects(client('minioadmin', 'minioadmin').listBuckets(), { code: 'InvalidAccessKeyId' }, 'minioadmin/minioadmin is not a user of this MinIO');
  const rootEnv = path.join(servicesDir, 'minio-root.env');
  t.ok(existsSync(rootEnv), `services.sh keeps MinIO's root user in ${rootEnv}`);
  if (!existsSync(rootEnv)) return;
  const vars = Object.fromEntries(spawnSync('sed', ['-n', 's/^\\(MINIO_ROOT_[A-Z]*\\)=/\\1 /p', rootEnv], { encoding: 'utf8' }).stdout.trim().split('\n').map((l) => l.split(' ') as [string, string]));
  t.ok(vars.MINIO_ROOT_USER && vars.MINIO_ROOT_PASSWORD && vars.MINIO_ROOT_PASSWORD.length >= 32, 'a root user and a long random password');
  // The control, so that the refusal above means "wrong credentials", not "no MinIO there".
  t.ok(Array.isArray(await client(vars.MINIO_ROOT_USER!, vars.MINIO_ROOT_PASSWORD!).listBuckets()), 'MinIO takes the root user in the file');
});

t.test('the services\' secrets are files only their owner reads', async (t) => {
  if (!ready(t)) return;
  for (const file of ['postgres.env', 'minio-root.env', 'minio-users.env', 'nats-users.env']) {
    const p = path.join(servicesDir, file);
    t.ok(existsSync(p), `${file} exists`);
    if (!existsSync(p)) continue;
    t.equal((statSync(p).mode & 0o777).toString(8), '600', `${file} is mode 0600`);
    const r = asNobody(['cat', p]);
    t.not(r.code, 0, `nobody cannot read ${file} (${r.out.slice(0, 80)})`);
    t.notMatch(r.out, /PASSWORD=|SECRET_KEY=/, 'and sees none of it');
  }
  // MinIO keeps its users' secret keys (the scheduler's too) in plain JSON in its data folder.
  const data = path.join(servicesDir, 'minio', '.minio.sys');
  if (existsSync(data)) {
    const r = asNobody(['ls', data]);
    t.not(r.code, 0, `nobody cannot list MinIO's data (${data}): ${r.out.slice(0, 80)}`);
  }
});
