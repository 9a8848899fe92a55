// Agent status on a real Postgres (scheduler/agents/status.ts): the statuses are the ones the schema
// allows, each transition is guarded (a name held by a live agent with another identity is refused; a
// stale session changes nothing; a lost agent is not lost twice), and each change is logged once.
import t from 'tap';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { testDatabase } from '../helpers/stack.js';
import {
  AgentStatus, agentStatuses, drain, heartbeat, loseSilent, markUnresponsive, register, type Registration,
} from '../../scheduler/agents/status.js';
import { TrainyardError } from '../../shared/errors.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write(c: Buffer, _e, cb) { lines.push(JSON.parse(c.toString()) as Record<string, unknown>); cb(); } }));
  return { log, changes: () => lines.filter((l) => l.msg === 'agent status').map((l) => `${l.agent} ${l.from}→${l.to}${l.unresponsive !== undefined ? ` unresponsive=${l.unresponsive}` : ''}`) };
}

const reg = (over: Partial<Registration> = {}): Registration => ({
  name: 'box', hostname: 'h1', version: 'v', cpus: 4, memoryMb: 1024, labels: {}, gpus: [{ index: 0, uuid: 'GPU-a', name: 'H100', memory_mb: 80_000 }],
  identitySha256: 'a'.repeat(64), address: '10.0.0.1:5000', ...over,
});
const LOST_AFTER = 4000;

t.test('the statuses are the ones the agents table allows', async (t) => {
  const { db } = await testDatabase(t);
  const { rows } = await (await import('kysely')).sql<{ def: string }>`
    SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'agents'::regclass AND contype = 'c'`.execute(db);
  const allowed = [...rows.map((r) => r.def).join(' ').matchAll(/'([a-z]+)'/g)].map((m) => m[1]).sort();
  t.same(allowed, [...agentStatuses].sort());
});

t.test('register, heartbeat, drain and leave: guarded, each change logged once', async (t) => {
  const { db } = await testDatabase(t);
  const { log, changes } = capture();
  const deps = { db, log };
  const { session } = await register(deps, reg(), LOST_AFTER);

  // Another identity while the first is alive: refused, naming the first; nothing changes.
  const refused = await register(deps, reg({ identitySha256: 'b'.repeat(64), address: '10.0.0.2:6000', gpus: [] }), LOST_AFTER).catch((e: unknown) => e);
  t.ok(refused instanceof TrainyardError && refused.code === 'ALREADY_EXISTS', 'a second identity is refused with ALREADY_EXISTS');
  t.match(String((refused as Error).message), /held by another agent, at 10\.0\.0\.1:5000 \(host h1\), online since /);
  const [row] = await db.selectFrom('agents').selectAll().execute();
  t.same([row!.session, row!.address, row!.identity_sha256], [session, '10.0.0.1:5000', 'a'.repeat(64)], 'the holder is untouched');
  t.equal((await db.selectFrom('agent_gpus').selectAll().execute()).length, 1, 'and so are its GPUs');

  // The same identity (a restart): accepted, new session; the old session's heartbeats are refused.
  const again = await register(deps, reg({ address: '10.0.0.1:5001' }), LOST_AFTER);
  t.ok(again.session > session);
  t.equal(await heartbeat(deps, { name: 'box', session, draining: false, leaving: false }), null, 'a stale session changes nothing');
  t.equal(await heartbeat(deps, { name: 'box', session: again.session, draining: false, leaving: false }), AgentStatus.Online);

  await drain(deps, 'box');
  t.equal(await heartbeat(deps, { name: 'box', session: again.session, draining: false, leaving: false }), AgentStatus.Draining,
    'a drained agent stays draining even before it heard of the drain');
  t.equal(await heartbeat(deps, { name: 'box', session: again.session, draining: true, leaving: true }), AgentStatus.Offline);
  t.equal(await heartbeat(deps, { name: 'box', session: again.session, draining: false, leaving: false }), null, 'an offline agent must register again');
  const notLive = await drain(deps, 'box').catch((e: unknown) => e);
  t.match(String(notLive), /is offline; only an online agent can be drained/);
  t.match(String(await drain(deps, 'nobody').catch((e: unknown) => e)), /agent "nobody" not found/);

  // Once offline, the name is free for another identity.
  await register(deps, reg({ identitySha256: 'b'.repeat(64), address: '10.0.0.2:6000' }), LOST_AFTER);
  t.same(changes(), ['box null→online', 'box online→online', 'box online→draining', 'box draining→offline', 'box offline→online']);
});

t.test('loseSilent and markUnresponsive: only what changes, once', async (t) => {
  const { db } = await testDatabase(t);
  const { log, changes } = capture();
  const deps = { db, log };
  const a = await register(deps, reg({ name: 'quiet' }), LOST_AFTER);
  await register(deps, reg({ name: 'chatty', identitySha256: 'c'.repeat(64) }), LOST_AFTER);
  t.same(await loseSilent(deps, LOST_AFTER), [], 'nobody is silent yet');

  t.same(await markUnresponsive(deps, ['quiet']), ['quiet']);
  t.same(await markUnresponsive(deps, ['quiet']), [], 'already marked: kept, not logged again');
  t.equal(await heartbeat(deps, { name: 'quiet', session: a.session, draining: false, leaving: false }), AgentStatus.Online);
  t.equal((await db.selectFrom('agents').select('unresponsive_since').where('name', '=', 'quiet').executeTakeFirstOrThrow()).unresponsive_since, null,
    'a heartbeat clears the flag');

  // A live holder silent past the deadline may be taken over even before the sweep calls it lost.
  await db.updateTable('agents').set({ last_heartbeat_at: new Date(Date.now() - 60_000) }).where('name', '=', 'quiet').execute();
  t.same(await loseSilent(deps, LOST_AFTER), ['quiet']);
  t.same(await loseSilent(deps, LOST_AFTER), [], 'a lost agent is not lost twice');
  t.equal(await heartbeat(deps, { name: 'quiet', session: a.session, draining: false, leaving: false }), null, 'a lost agent must register again');
  await register(deps, reg({ name: 'quiet', identitySha256: 'd'.repeat(64) }), LOST_AFTER);
  t.same(changes(), [
    'quiet null→online', 'chatty null→online', 'quiet online→online unresponsive=true', 'quiet online→online unresponsive=false',
    'quiet online→lost', 'quiet lost→online',
  ]);
});
