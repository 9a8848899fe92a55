// Agent status on a real Postgres (scheduler/agents/status.ts): the statuses are the ones the schema
// allows, each transition is guarded (a name held by another identity is refused, live or gone, until an
// admin removes it; a stale session changes nothing; a lost agent is not lost twice), and each change is
// logged once.
import t from 'tap';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { testDatabase } from '../helpers/stack.js';
import {
  AgentStatus, agentStatuses, drain, forget, heartbeat, loseSilent, markUnresponsive, register, revoke, type Registration,
} from '../../scheduler/agents/status.js';
import { TrainyardError } from '../../shared/errors.js';
import { RunTransitions } from '../../scheduler/runs/transitions.js';
import { removeAgent } from '../../scheduler/agents/remove.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write(c: Buffer, _e, cb) { lines.push(JSON.parse(c.toString()) as Record<string, unknown>); cb(); } }));
  return { log, changes: () => lines.filter((l) => l.msg === 'agent status').map((l) => `${l.agent} ${l.from}→${l.to}${l.unresponsive !== undefined ? ` unresponsive=${l.unresponsive}` : ''}`) };
}

const reg = (over: Partial<Registration> = {}): Registration => ({
  name: 'box', hostname: 'h1', version: 'v', cpus: 4, memoryMb: 1024, labels: {}, gpus: [{ index: 0, uuid: 'GPU-a', name: 'H100', memory_mb: 80_000 }],
  identitySha256: 'a'.repeat(64), address: '10.0.0.1:5000', joining: true, ...over,
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
  const { session } = await register(deps, reg());

  // Another identity while the first is alive: refused, naming the first; nothing changes.
  const refused = await register(deps, reg({ identitySha256: 'b'.repeat(64), address: '10.0.0.2:6000', gpus: [] })).catch((e: unknown) => e);
  t.ok(refused instanceof TrainyardError && refused.code === 'ALREADY_EXISTS', 'a second identity is refused with ALREADY_EXISTS');
  t.match(String((refused as Error).message), /agent name "box" is taken; .*trainyard agents remove box/);
  t.notMatch(String((refused as Error).message), /10\.0\.0\.1|h1|online/, 'saying nothing of the holder (address, host, state) to a join-token holder');
  const [row] = await db.selectFrom('agents').selectAll().execute();
  t.same([row!.session, row!.address, row!.identity_sha256], [session, '10.0.0.1:5000', 'a'.repeat(64)], 'the holder is untouched');
  t.equal((await db.selectFrom('agent_gpus').selectAll().execute()).length, 1, 'and so are its GPUs');

  // The same identity (a restart): accepted, new session; the old session's heartbeats are refused.
  const again = await register(deps, reg({ joining: false, address: '10.0.0.1:5001' }));
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

  // Offline, the name is still its holder's: another identity is refused, told how to free it.
  const gone = await register(deps, reg({ identitySha256: 'b'.repeat(64), address: '10.0.0.2:6000' })).catch((e: unknown) => e);
  t.ok(gone instanceof TrainyardError && gone.code === 'ALREADY_EXISTS', 'a join under an offline agent\'s name is refused');
  t.match(String((gone as Error).message), /agent name "box" is taken; .*trainyard agents remove box/);
  t.notMatch(String((gone as Error).message), /10\.0\.0\.1|h1|offline/, 'nor of a gone one');
  // Its own credential still restarts it.
  const back = await register(deps, reg({ joining: false, address: '10.0.0.1:5002' }));
  t.ok(back.session > again.session, 'the offline agent itself comes back');
  t.equal(await heartbeat(deps, { name: 'box', session: back.session, draining: true, leaving: true }), AgentStatus.Offline);

  // An admin forgets it: the row and its GPUs go, with an event; then the name is free.
  t.equal(await forget(deps, 'box'), AgentStatus.Offline);
  t.equal((await db.selectFrom('agent_gpus').selectAll().execute()).length, 0, 'its GPUs are forgotten with it');
  t.same((await db.selectFrom('events').select(['kind', 'subject']).where('kind', '=', 'agent.removed').execute()), [{ kind: 'agent.removed', subject: 'box' }]);
  const stale = await register(deps, reg({ joining: false })).catch((e: unknown) => e);
  t.ok(stale instanceof TrainyardError && stale.code === 'UNAUTHENTICATED', 'its old credential registers nothing once it is removed');
  t.equal((await db.selectFrom('agents').selectAll().execute()).length, 0, 'and makes no row');
  await register(deps, reg({ identitySha256: 'b'.repeat(64), address: '10.0.0.2:6000' }));
  t.match(String(await forget(deps, 'nobody').catch((e: unknown) => e)), /agent "nobody" not found/);
  const live = await forget(deps, 'box').catch((e: unknown) => e);
  t.ok(live instanceof TrainyardError && live.code === 'FAILED_PRECONDITION', 'a live agent is not forgotten');
  t.match(String(live), /agent "box" is online: stop it first .* or shut it out now with --force/);
  t.same(changes(), ['box null→online', 'box online→online', 'box online→draining', 'box draining→offline', 'box offline→online', 'box online→offline',
    'box offline→removed', 'box null→online']);
});

t.test('revoke: a live agent is lost and its credential is worth nothing; forget then frees the name', async (t) => {
  const { db } = await testDatabase(t);
  const { log, changes } = capture();
  const deps = { db, log };
  const { session } = await register(deps, reg());
  t.equal(await revoke(deps, 'nobody'), null);
  t.same(await revoke(deps, 'box'), { from: AgentStatus.Online, held: 0 }, 'returns the status it had, and the runs it held');
  const row = await db.selectFrom('agents').select(['status', 'identity_sha256']).where('name', '=', 'box').executeTakeFirstOrThrow();
  t.same(row, { status: 'lost', identity_sha256: null }, 'lost, and no credential matches it');
  t.equal(await heartbeat(deps, { name: 'box', session, draining: false, leaving: false }), null, 'its session is over');
  const restart = await register(deps, reg({ joining: false })).catch((e: unknown) => e);
  t.ok(restart instanceof TrainyardError && restart.code === 'UNAUTHENTICATED', 'its old identity registers nothing');
  const join = await register(deps, reg({ identitySha256: 'e'.repeat(64) })).catch((e: unknown) => e);
  t.ok(join instanceof TrainyardError && join.code === 'ALREADY_EXISTS', 'nor does a join under its name, until it is forgotten');
  t.same(await revoke(deps, 'box'), { from: AgentStatus.Lost, held: 0 }, 'revoking again changes nothing more');
  const lost = await db.selectFrom('events').select(['kind', 'detail']).where('subject', '=', 'box').orderBy('id').execute();
  t.same(lost.map((e) => e.kind), ['agent.joined', 'agent.lost'], 'one loss event, not two');
  t.match(lost[1]!.detail, /removed by an admin: its credential is revoked/);
  t.equal(await forget(deps, 'box'), AgentStatus.Lost);
  await register(deps, reg({ identitySha256: 'e'.repeat(64) }));
  t.same(changes(), ['box null→online', 'box online→lost', 'box lost→removed', 'box null→online']);
});

t.test('loseSilent and markUnresponsive: only what changes, once', async (t) => {
  const { db } = await testDatabase(t);
  const { log, changes } = capture();
  const deps = { db, log };
  const a = await register(deps, reg({ name: 'quiet' }));
  await register(deps, reg({ name: 'chatty', identitySha256: 'c'.repeat(64) }));
  t.same(await loseSilent(deps, LOST_AFTER), [], 'nobody is silent yet');

  t.same(await markUnresponsive(deps, ['quiet']), ['quiet']);
  t.same(await markUnresponsive(deps, ['quiet']), [], 'already marked: kept, not logged again');
  t.equal(await heartbeat(deps, { name: 'quiet', session: a.session, draining: false, leaving: false }), AgentStatus.Online);
  t.equal((await db.selectFrom('agents').select('unresponsive_since').where('name', '=', 'quiet').executeTakeFirstOrThrow()).unresponsive_since, null,
    'a heartbeat clears the flag');

  // A lost agent comes back with its own credential (a join under its name would be refused).
  await db.updateTable('agents').set({ last_heartbeat_at: new Date(Date.now() - 60_000) }).where('name', '=', 'quiet').execute();
  t.same(await loseSilent(deps, LOST_AFTER), ['quiet']);
  t.same(await loseSilent(deps, LOST_AFTER), [], 'a lost agent is not lost twice');
  t.equal(await heartbeat(deps, { name: 'quiet', session: a.session, draining: false, leaving: false }), null, 'a lost agent must register again');
  const taken = await register(deps, reg({ name: 'quiet', identitySha256: 'd'.repeat(64) })).catch((e: unknown) => e);
  t.ok(taken instanceof TrainyardError && taken.code === 'ALREADY_EXISTS', 'a join token does not take a lost agent\'s name');
  await register(deps, reg({ name: 'quiet', joining: false }));
  t.same(changes(), [
    'quiet null→online', 'chatty null→online', 'quiet online→online unresponsive=true', 'quiet online→online unresponsive=false',
    'quiet online→lost', 'quiet lost→online',
  ]);
});

t.test('agents remove --force counts the runs the agent held, even when the failure sweep requeues them first', async (t) => {
  const { db } = await testDatabase(t);
  const { log } = capture();
  const real = new RunTransitions(db, () => {});
  const { session } = await register({ db, log }, reg());
  await db.insertInto('runs').values(['r1', 'r2'].map((id) => ({
    id, package: 'p', package_major: 1, package_minor: 0, package_object_key: 'k', dataset: 'd', gpus: 0,
    selector: '{}', env: '{}', max_attempts: 3, timeout_seconds: 0,
  }))).execute();
  await real.assign([{ id: 'r1', agent: 'box', gpuIndices: [], session }, { id: 'r2', agent: 'box', gpuIndices: [], session }]);
  // The agent is lost from the revoke on, so the sweep may requeue its runs between the revoke and the
  // remove's own requeue: here it wins for r1 (its requeue runs just before the remove's, which then finds
  // the lease moved on and changes nothing).
  let sweepWon = 0;
  const runs = Object.assign(Object.create(real) as RunTransitions, {
    requeue: async (id: string, lease: number, reason: string, loss: boolean) => {
      if (id === 'r1') { await real.requeue(id, lease, 'agent lost', true); sweepWon++; }
      return real.requeue(id, lease, reason, loss);
    },
  });
  let kicks = 0;
  const res = await removeAgent({ db, log, runs, kick: () => { kicks++; }, agentChanged: () => {} }, { name: 'box', force: true });
  t.equal(sweepWon, 1, 'the sweep took r1 first');
  t.same(res, { name: 'box', was: AgentStatus.Online, requeued: 2 }, 'both runs it held are counted as back in the queue');
  t.same(await db.selectFrom('runs').select(['id', 'status', 'agent', 'lost_attempts']).orderBy('id').execute(), [
    { id: 'r1', status: 'Waiting for resources', agent: null, lost_attempts: 1 },
    { id: 'r2', status: 'Waiting for resources', agent: null, lost_attempts: 1 },
  ], 'each requeued once, one attempt spent');
  t.equal(kicks, 1, 'the placer is told');
  t.same(await db.selectFrom('agents').select('name').execute(), [], 'and the agent is forgotten');
});

t.test('revoking an agent that is not live still says its identity changed (schedulers forget its credential)', async (t) => {
  const { db } = await testDatabase(t);
  const changed: string[] = [];
  const deps = { db, log: capture().log, agentChanged: (n: string) => changed.push(n) };
  const { session } = await register(deps, reg());
  await heartbeat(deps, { name: 'box', session, draining: false, leaving: true });
  changed.length = 0;
  t.same(await revoke(deps, 'box'), { from: AgentStatus.Offline, held: 0 });
  t.same(changed, ['box'], 'told once, though no status changed');
});
