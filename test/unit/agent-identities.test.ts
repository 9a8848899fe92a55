// Agents' identities remembered by a scheduler (scheduler/auth/agent-identities.ts), on a real Postgres:
// a match is remembered for the TTL and forgotten at once when told; a refusal is always made against the
// row as it is (a rotated credential is let in at once, an unknown agent is never remembered); Register's
// check reads the row; a read that was in flight when the identity was forgotten is not remembered.
import t from 'tap';
import { pino } from 'pino';
import { testDatabase } from '../helpers/stack.js';
import { register } from '../../scheduler/agents/status.js';
import { AgentIdentities } from '../../scheduler/auth/agent-identities.js';
import { newAgentCredential } from '../../scheduler/auth/secrets.js';
import type { Db } from '../../scheduler/db/database.js';

const log = pino({ level: 'silent' });

async function agent(db: Db, name: string) {
  const c = newAgentCredential();
  await register({ db, log }, {
    name, hostname: 'h', version: 'v', cpus: 1, memoryMb: 1, labels: {}, gpus: [], identitySha256: c.sha256, address: '10.0.0.1:1', joining: true,
  });
  return c;
}
const setIdentity = (db: Db, name: string, sha256: string | null) =>
  db.updateTable('agents').set({ identity_sha256: sha256 }).where('name', '=', name).execute();

t.test('a match is remembered for the TTL, until forgotten; Register reads the row', async (t) => {
  const { db } = await testDatabase(t);
  const ids = new AgentIdentities(db, 60_000);
  const box = await agent(db, 'box');
  t.ok(await ids.matches('box', box.credential), 'its own credential matches');
  t.equal(ids.size, 1, 'and is remembered');
  t.notOk(await ids.matches('box', 'tya_not-it'), 'another credential does not');

  // Revoked behind this scheduler's back (another scheduler whose message did not arrive): the TTL bounds it.
  await setIdentity(db, 'box', null);
  t.ok(await ids.matches('box', box.credential), 'remembered: still let in within the TTL');
  t.notOk(await ids.matchesNow('box', box.credential), 'Register\'s check reads the row: refused');
  ids.forget('box');
  t.notOk(await ids.matches('box', box.credential), 'forgotten: refused at once');
  t.equal(ids.size, 0, 'a revoked agent is not remembered');
});

t.test('the TTL ends what is remembered', async (t) => {
  const { db } = await testDatabase(t);
  const ids = new AgentIdentities(db, 50);
  const box = await agent(db, 'box');
  t.ok(await ids.matches('box', box.credential));
  await setIdentity(db, 'box', null);
  await new Promise((r) => setTimeout(r, 80));
  t.notOk(await ids.matches('box', box.credential), 'read again after the TTL: refused');
  const none = new AgentIdentities(db, 0);
  await setIdentity(db, 'box', box.sha256);
  t.ok(await none.matches('box', box.credential));
  await setIdentity(db, 'box', null);
  t.notOk(await none.matches('box', box.credential), 'a TTL of 0 reads on every call');
});

t.test('a refusal is the row\'s answer: a new credential is let in at once, an unknown agent is never remembered', async (t) => {
  const { db } = await testDatabase(t);
  const ids = new AgentIdentities(db, 60_000);
  const box = await agent(db, 'box');
  t.ok(await ids.matches('box', box.credential));
  const next = newAgentCredential();
  await setIdentity(db, 'box', next.sha256);
  t.ok(await ids.matches('box', next.credential), 'the credential now in the row is let in, not refused for what was remembered');
  t.notOk(await ids.matches('box', box.credential), 'and the old one, read again on the way, is refused');

  t.notOk(await ids.matches('later', 'tya_x'), 'an unknown agent is refused');
  t.equal(ids.size, 1, 'and not remembered');
  const later = await agent(db, 'later');
  t.ok(await ids.matches('later', later.credential), 'so it is let in as soon as it has joined');
});

t.test('a read in flight when the identity is forgotten is not remembered', async (t) => {
  const { db } = await testDatabase(t);
  const ids = new AgentIdentities(db, 60_000);
  const box = await agent(db, 'box');
  const [a, b] = [ids.matches('box', box.credential), ids.matches('box', box.credential)];
  ids.forget('box');
  t.same(await Promise.all([a, b]), [true, true], 'both calls are answered (one read)');
  t.equal(ids.size, 0, 'but what they read is not remembered: it may be older than the change that forgot it');
  await setIdentity(db, 'box', null);
  t.notOk(await ids.matches('box', box.credential), 'the next call reads the row');
});

// Register keeps a name's row for the credential the caller presented, not for whatever the row holds by
// the time it looks again: a name removed and taken by a new agent between the caller's authentication
// and its registration must not be taken over by the old holder (it would match the new agent's hash
// against itself).
t.test('Register keeps the name only for the credential presented', async (t) => {
  const { db } = await testDatabase(t);
  const { registerAgent } = await import('../../scheduler/agents/register.js');
  const { RunTransitions } = await import('../../scheduler/runs/transitions.js');
  const ctx = {
    db, log, runs: new RunTransitions(db), kick: () => {}, agentChanged: () => {},
    settings: { heartbeatIntervalMs: 1000, subjectPrefix: 'test', attemptLeaseBeats: 3 },
  } as unknown as Parameters<typeof registerAgent>[0];
  const req = { name: 'box', hostname: 'h2', version: 'v', cpus: 1, memory_mb: 1, labels: {}, gpus: [], max_runs: 0, identity: '', accept_projects: [], advertise_addr: '', rendezvous_port_lo: 0, rendezvous_port_hi: 0, held: [] };
  const old = newAgentCredential();
  const taken = await agent(db, 'box'); // the name's holder now: a new agent
  const stale = { kind: 'agent' as const, agent: 'box', identitySha256: old.sha256 };
  await t.rejects(registerAgent(ctx, req as never, stale, '10.0.0.2:1'), { code: 'UNAUTHENTICATED' }, 'the old holder\'s Register is refused');
  const [row] = await db.selectFrom('agents').select(['identity_sha256', 'hostname']).where('name', '=', 'box').execute();
  t.same(row, { identity_sha256: taken.sha256, hostname: 'h' }, 'and the new holder\'s row is untouched');
  const own = { kind: 'agent' as const, agent: 'box', identitySha256: taken.sha256 };
  t.ok((await registerAgent(ctx, req as never, own, '10.0.0.3:1')).session, 'the holder itself registers again');
});
