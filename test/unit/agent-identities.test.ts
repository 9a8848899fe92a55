// Agents' identities remembered by a scheduler (scheduler/auth/agent-identities.ts), on a real Postgres:
// a match is remembered for the TTL and forgotten at once when told; a refusal is always made against the
// row as it is (a rotated credential is let in at once, an unknown agent is never remembered); Register's
// check reads the row; a read that was in flight when the identity was forgotten is not remembered.
import t from 'tap';
import { pino } from 'pino';
import { testDatabase } from '../helpers/stack.js';
import { register } from '../../scheduler/agents/status.js';
import { AgentIdentities } from '../../scheduler/auth/agent-identities.js';
import { newAgentCredential, sha256Hex } from '../../scheduler/auth/secrets.js';
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
  t.ok(await ids.matches('box', sha256Hex(box.credential)), 'its own credential matches');
  t.equal(ids.size, 1, 'and is remembered');
  t.notOk(await ids.matches('box', sha256Hex('tya_not-it')), 'another credential does not');

  // Revoked behind this scheduler's back (another scheduler whose message did not arrive): the TTL bounds it.
  await setIdentity(db, 'box', null);
  t.ok(await ids.matches('box', sha256Hex(box.credential)), 'remembered: still let in within the TTL');
  t.notOk(await ids.matchesNow('box', sha256Hex(box.credential)), 'Register\'s check reads the row: refused');
  ids.forget('box');
  t.notOk(await ids.matches('box', sha256Hex(box.credential)), 'forgotten: refused at once');
  t.equal(ids.size, 0, 'a revoked agent is not remembered');
});

t.test('the TTL ends what is remembered', async (t) => {
  const { db } = await testDatabase(t);
  const ids = new AgentIdentities(db, 50);
  const box = await agent(db, 'box');
  t.ok(await ids.matches('box', sha256Hex(box.credential)));
  await setIdentity(db, 'box', null);
  await new Promise((r) => setTimeout(r, 80));
  t.notOk(await ids.matches('box', sha256Hex(box.credential)), 'read again after the TTL: refused');
  const none = new AgentIdentities(db, 0);
  await setIdentity(db, 'box', box.sha256);
  t.ok(await none.matches('box', sha256Hex(box.credential)));
  await setIdentity(db, 'box', null);
  t.notOk(await none.matches('box', sha256Hex(box.credential)), 'a TTL of 0 reads on every call');
});

t.test('a refusal is the row\'s answer: a new credential is let in at once, an unknown agent is never remembered', async (t) => {
  const { db } = await testDatabase(t);
  const ids = new AgentIdentities(db, 60_000);
  const box = await agent(db, 'box');
  t.ok(await ids.matches('box', sha256Hex(box.credential)));
  const next = newAgentCredential();
  await setIdentity(db, 'box', next.sha256);
  t.ok(await ids.matches('box', sha256Hex(next.credential)), 'the credential now in the row is let in, not refused for what was remembered');
  t.notOk(await ids.matches('box', sha256Hex(box.credential)), 'and the old one, read again on the way, is refused');

  t.notOk(await ids.matches('later', sha256Hex('tya_x')), 'an unknown agent is refused');
  t.equal(ids.size, 1, 'and not remembered');
  const later = await agent(db, 'later');
  t.ok(await ids.matches('later', sha256Hex(later.credential)), 'so it is let in as soon as it has joined');
});

t.test('a read in flight when the identity is forgotten is not remembered', async (t) => {
  const { db } = await testDatabase(t);
  const ids = new AgentIdentities(db, 60_000);
  const box = await agent(db, 'box');
  const [a, b] = [ids.matches('box', sha256Hex(box.credential)), ids.matches('box', sha256Hex(box.credential))];
  ids.forget('box');
  t.same(await Promise.all([a, b]), [true, true], 'both calls are answered (one read)');
  t.equal(ids.size, 0, 'but what they read is not remembered: it may be older than the change that forgot it');
  await setIdentity(db, 'box', null);
  t.notOk(await ids.matches('box', sha256Hex(box.credential)), 'the next call reads the row');
});
