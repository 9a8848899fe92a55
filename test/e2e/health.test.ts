// What an operator or a load balancer sees: /healthz and /readyz on the scheduler's HTTP port, and on its
// gRPC port the grpc.health.v1 service and server reflection, used with a real grpcurl (built by
// scripts/grpcurl.sh) that has no .proto file. Health and reflection need no token; SubmitRun still does.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Stack } from '../helpers/stack.js';
import { pushGated } from '../helpers/packages.js';

const grpcurlBin = process.env.TRAINYARD_GRPCURL_BIN ?? path.join(os.homedir(), '.cache', 'trainyard', 'bin', 'grpcurl');

function grpcurl(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(grpcurlBin, ['-plaintext', '-max-time', '20', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function get(address: string, route: string, method = 'GET'): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://${address}${route}`, { method });
  return { status: res.status, body: await res.json() };
}

/** /readyz, asked until it answers `status` (a dependency's loss or return is seen within a few checks). */
async function readyzUntil(address: string, status: number, withinMs = 30_000): Promise<{ status: number; body: any }> {
  const end = Date.now() + withinMs;
  for (;;) {
    const r = await get(address, '/readyz');
    if (r.status === status || Date.now() > end) return r;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const healthOf = (address: string, service = '') => {
  const r = grpcurl('-d', JSON.stringify({ service }), address, 'grpc.health.v1.Health/Check');
  return r.code === 0 ? (JSON.parse(r.stdout) as { status: string }).status : `grpcurl failed: ${r.stderr}`;
};

t.test('probes, gRPC health and reflection on a real scheduler', async (t) => {
  t.ok(existsSync(grpcurlBin), `grpcurl is at ${grpcurlBin} (bash scripts/grpcurl.sh builds it)`);
  // Its own NATS and MinIO, so that stopping them (below) disturbs no other test file.
  const s = await Stack.create(t, { agents: [], privateNats: true, privateMinio: true });
  t.match(s.httpAddress, /^127\.0\.0\.1:\d+$/, 'the scheduler logged the HTTP address it bound (port 0 asked for a free one)');
  t.not(s.httpAddress, '127.0.0.1:8080', 'not the default port: test stacks do not collide');

  const alive = await get(s.httpAddress, '/healthz');
  t.equal(alive.status, 200, '/healthz: 200');
  t.same(alive.body, { status: 'alive' });
  const ready = await get(s.httpAddress, '/readyz');
  t.equal(ready.status, 200, '/readyz: 200 with every service up');
  t.same(ready.body, { ready: true, failed: [], checks: { postgres: { ok: true }, migrations: { ok: true }, nats: { ok: true }, minio: { ok: true } } });
  t.equal((await get(s.httpAddress, '/readyz', 'POST')).status, 405, 'POST /readyz: 405');
  t.equal((await get(s.httpAddress, '/nothing')).status, 404, 'an unknown path: 404');

  // Reflection: what grpcurl needs instead of the .proto file.
  const list = grpcurl(s.schedulerAddress, 'list');
  t.equal(list.code, 0, `grpcurl list ${list.stderr}`);
  for (const svc of ['trainyard.v1.Trainyard', 'trainyard.v1.AgentLink', 'grpc.health.v1.Health']) t.match(list.stdout, new RegExp(`^${svc.replace(/\./g, '\\.')}$`, 'm'), `list shows ${svc}`);
  const methods = grpcurl(s.schedulerAddress, 'list', 'trainyard.v1.Trainyard');
  t.match(methods.stdout, /^trainyard\.v1\.Trainyard\.SubmitRun$/m, 'list SERVICE shows its methods');
  const describe = grpcurl(s.schedulerAddress, 'describe', 'trainyard.v1.SubmitRunRequest');
  t.equal(describe.code, 0, `describe a message with a map field (the map-entry fix) ${describe.stderr}`);
  t.match(describe.stdout, /map<string, string> env = \d+;/, 'the map field reads as a map');
  const rpc = grpcurl(s.schedulerAddress, 'describe', 'trainyard.v1.Trainyard.SubmitRun');
  t.match(rpc.stdout, /rpc SubmitRun \( \.trainyard\.v1\.SubmitRunRequest \) returns \( \.trainyard\.v1\.Run \)/);

  // gRPC health, without a token.
  t.equal(healthOf(s.schedulerAddress), 'SERVING', 'Health/Check for the server: SERVING');
  t.equal(healthOf(s.schedulerAddress, 'trainyard.v1.Trainyard'), 'SERVING', 'Health/Check for trainyard.v1.Trainyard: SERVING');

  // A call through reflection alone still needs a token.
  await pushGated(s);
  const request = JSON.stringify({ package: 'gated', dataset: 'd', env: { GREETING: 'hello' } });
  const anonymous = grpcurl('-d', request, s.schedulerAddress, 'trainyard.v1.Trainyard/SubmitRun');
  t.not(anonymous.code, 0, 'SubmitRun without a token fails');
  t.match(anonymous.stderr, /Code: Unauthenticated/, '... Unauthenticated');
  const submitted = grpcurl('-H', `authorization: Bearer ${s.adminToken}`, '-d', request, s.schedulerAddress, 'trainyard.v1.Trainyard/SubmitRun');
  t.equal(submitted.code, 0, `SubmitRun with the token ${submitted.stderr}`);
  const run = JSON.parse(submitted.stdout) as { id: string; env: Record<string, string> };
  t.equal(run.env.GREETING, 'hello', 'the map field went in and came back');
  const [row] = await s.query('SELECT package, dataset, env FROM runs WHERE id = $1', [run.id]);
  t.match(row, { package: 'gated', dataset: 'd', env: { GREETING: 'hello' } }, 'the run is in Postgres');
  const viaCli = await s.cliJson(['run', 'get', run.id]);
  t.equal(viaCli.id, run.id, 'and the CLI sees it');
  t.same(await s.query('SELECT count(*)::int AS n FROM runs'), [{ n: 1 }], 'the refused call created nothing');

  // Two schedulers at once, one with its HTTP server turned off.
  const quiet = await s.startScheduler({}, '127.0.0.1:0', ['--http-listen', '']);
  const line = await quiet.waitFor((l) => l.msg === 'listening');
  t.equal(line.http, '', '--http-listen "": no HTTP server');
  t.equal(healthOf(String(line.address)), 'SERVING', 'and its gRPC health still answers');

  // A migration missing: not ready, and gRPC health agrees.
  const [last] = await s.query('SELECT id, name FROM trainyard_migrations ORDER BY id DESC LIMIT 1');
  await s.query('DELETE FROM trainyard_migrations WHERE id = $1', [last!.id]);
  const unmigrated = await get(s.httpAddress, '/readyz');
  t.equal(unmigrated.status, 503, '/readyz: 503 with a migration missing');
  t.same(unmigrated.body.failed, ['migrations'], 'it names the failed check');
  t.match(unmigrated.body.checks.migrations.error, /needs \d+/);
  t.equal(healthOf(s.schedulerAddress), 'NOT_SERVING', 'Health/Check: NOT_SERVING');
  await s.query('INSERT INTO trainyard_migrations (id, name) VALUES ($1, $2)', [last!.id, last!.name]);
  t.equal((await get(s.httpAddress, '/readyz')).status, 200, 'migrations back: 200');
  t.equal(healthOf(s.schedulerAddress), 'SERVING', 'Health/Check: SERVING again');

  // Postgres unreachable for this scheduler (the shared server stays up for the other tests): its database
  // refuses new connections and the ones it had are ended. Then back.
  await s.adminQuery(`ALTER DATABASE ${s.dbName} ALLOW_CONNECTIONS false`);
  await s.adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [s.dbName]);
  const noPg = await readyzUntil(s.httpAddress, 503);
  t.equal(noPg.status, 503, '/readyz: 503 with Postgres unreachable');
  t.ok(noPg.body.failed.includes('postgres'), `it names postgres (${JSON.stringify(noPg.body.failed)})`);
  t.ok(noPg.body.checks.postgres.error, `the reason is given: ${noPg.body.checks.postgres.error}`);
  t.same(noPg.body.checks.nats, { ok: true }, 'NATS is fine');
  t.equal(healthOf(s.schedulerAddress), 'NOT_SERVING', 'Health/Check: NOT_SERVING');
  t.equal((await get(s.httpAddress, '/healthz')).status, 200, '/healthz: still alive');
  await s.adminQuery(`ALTER DATABASE ${s.dbName} ALLOW_CONNECTIONS true`);
  const pgBack = await readyzUntil(s.httpAddress, 200);
  t.equal(pgBack.status, 200, `Postgres back: /readyz 200 ${JSON.stringify(pgBack.body.checks)}`);
  t.equal(healthOf(s.schedulerAddress), 'SERVING', 'Health/Check: SERVING again');

  // NATS gone, then back: /readyz and gRPC health follow it both ways.
  await s.nats!.kill9();
  const noNats = await readyzUntil(s.httpAddress, 503);
  t.equal(noNats.status, 503, '/readyz: 503 with NATS down');
  t.same(noNats.body.failed, ['nats'], 'only NATS failed');
  t.match(noNats.body.checks.nats.error, /NATS/, `the reason is given: ${noNats.body.checks.nats.error}`);
  t.same(noNats.body.checks.postgres, { ok: true });
  t.equal(healthOf(s.schedulerAddress), 'NOT_SERVING', 'Health/Check: NOT_SERVING');
  t.equal(healthOf(s.schedulerAddress, 'trainyard.v1.AgentLink'), 'NOT_SERVING', 'Health/Check for trainyard.v1.AgentLink: NOT_SERVING');
  t.equal((await get(s.httpAddress, '/healthz')).status, 200, '/healthz: still alive');
  await s.startNats(); // the same port and users: the scheduler's connection comes back by itself
  const natsBack = await readyzUntil(s.httpAddress, 200);
  t.equal(natsBack.status, 200, `NATS back: /readyz 200 ${JSON.stringify(natsBack.body.checks)}`);
  t.equal(healthOf(s.schedulerAddress), 'SERVING', 'Health/Check: SERVING again');
  t.equal(healthOf(s.schedulerAddress, 'trainyard.v1.AgentLink'), 'SERVING', 'Health/Check for trainyard.v1.AgentLink: SERVING again');

  // MinIO gone.
  await s.minioDaemon!.kill9();
  const noStorage = await get(s.httpAddress, '/readyz');
  t.equal(noStorage.status, 503, '/readyz: 503 with MinIO down');
  t.same(noStorage.body.failed, ['minio'], 'only MinIO failed');
  t.ok(noStorage.body.checks.minio.error, `the reason is given: ${noStorage.body.checks.minio.error}`);
  t.same(noStorage.body.checks.postgres, { ok: true });
  t.equal(healthOf(s.schedulerAddress), 'NOT_SERVING', 'Health/Check: NOT_SERVING');
  t.equal((await get(s.httpAddress, '/healthz')).status, 200, '/healthz: still alive');
});
