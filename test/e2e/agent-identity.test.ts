// Defect 8: two agents started with the same name (both default to the hostname) must not silently become
// one. Each agent keeps a random identity in its work dir; a second live agent under a taken name is
// refused, told only that the name is taken, and exits non-zero; the same agent restarting is still accepted.
import t from 'tap';
import path from 'node:path';
import { statSync } from 'node:fs';
import { Stack, fakeGpus } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';
import * as grpc from '@grpc/grpc-js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { channelOptions, loadProto } from '../../shared/proto.js';
import type { AgentLinkClient } from '../../shared/proto/gen/trainyard/v1/AgentLink.js';

t.test('a second agent under a live name is refused; the first keeps its runs; a restart is accepted', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'box', gpus: fakeGpus(1, 'first') }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate);
  await waitForAttempt(s, id, 1);
  const [first] = await s.query("SELECT * FROM agents WHERE name = 'box'");

  // Another work dir, the same name: another agent.
  const second = await s.startAgent('second', {
    gpus: fakeGpus(2, 'second'), env: { TRAINYARD_AGENT_NAME: 'box' }, expectExit: 1, waitForRegistered: false,
  });
  const refused = await second.waitFor((l) => l.msg === 'registration refused', 30_000);
  t.equal(await second.exited, 1, 'the second agent exits 1');
  t.match(first!.address, /^.+:\d+$/, 'the scheduler keeps the address the agent registered from');
  t.match(first!.identity_sha256, /^[0-9a-f]{64}$/, 'and only a hash of its identity');
  const identityFile = path.join(s.dir, 'work-box', 'identity');
  t.equal(statSync(identityFile).mode & 0o777, 0o600, 'the identity file is readable by its owner only');
  const why = String(refused.err);
  t.match(why, 'agent name "box" is taken', 'the refusal says the name is taken');
  t.notMatch(why, first!.address, 'and not where its holder is (a join-token holder learns nothing of it)');
  t.notMatch(why, new Date(first!.registered_at).toISOString(), 'nor since when');
  t.match(s.logOf('second'), /error: agent name "box" is taken/, 'and says so on stderr');

  const [after] = await s.query("SELECT session, address, identity_sha256, status FROM agents WHERE name = 'box'");
  t.same(after, { session: first!.session, address: first!.address, identity_sha256: first!.identity_sha256, status: 'online' }, 'the first agent\'s row is untouched');
  t.same((await s.query("SELECT uuid FROM agent_gpus WHERE agent = 'box'")).map((g) => g.uuid), ['GPU-first-0'], 'and so are its GPUs');
  gate.open();
  const done = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.same([done.status, done.attempt, done.last_agent], ['Successful', 1, 'box'], 'the first agent kept its run and finished it');

  // The same agent, killed and started again at once (its row still says online, heard from just now).
  await s.daemons.find((d) => d.name === 'box')!.kill9();
  const restarted = await s.startAgent('box', { gpus: fakeGpus(1, 'first') });
  const registered = await restarted.waitFor((l) => l.msg === 'registered');
  t.ok(Number(registered.session) > Number(first!.session), 'a restart from the same work dir is accepted, with a new session');
  const [again] = await s.query("SELECT identity_sha256, status FROM agents WHERE name = 'box'");
  t.same(again, { identity_sha256: first!.identity_sha256, status: 'online' }, 'with the same identity');
  const next = await submitGated(s, gate);
  t.equal((await s.waitForStatus(next, ['Successful', 'Failed', 'Killed'])).status, 'Successful', 'and it runs work');

  // Once the holder has left (offline), its name is still its own: a join token does not take it over.
  t.equal(await restarted.stop(), 0, 'the first agent leaves cleanly');
  const third = await s.startAgent('third', { env: { TRAINYARD_AGENT_NAME: 'box' }, expectExit: 1, waitForRegistered: false });
  const gone = await third.waitFor((l) => l.msg === 'registration refused', 30_000);
  t.equal(await third.exited, 1, 'a new agent under an offline agent\'s name exits 1');
  t.match(String(gone.err), /agent name "box" is taken; .*trainyard agents remove box/, 'told the name is taken and how an admin frees it');
  t.notMatch(String(gone.err), /offline|since/, 'not whose it is');
  const [kept] = await s.query("SELECT identity_sha256, status FROM agents WHERE name = 'box'");
  t.same(kept, { identity_sha256: first!.identity_sha256, status: 'offline' }, 'the offline agent keeps its name and credential');

  // An admin forgets it; then a new agent takes the name, and the old credential is worth nothing.
  const removed = await s.cliJson(['agents', 'remove', 'box']);
  t.same(removed, { name: 'box', was: 'offline', requeued: 0 }, 'agents remove says what it forgot');
  t.same(await s.query("SELECT kind FROM events WHERE subject = 'box' AND kind = 'agent.removed'"), [{ kind: 'agent.removed' }], 'the ML log reports it');
  const fourth = await s.startAgent('fourth', { env: { TRAINYARD_AGENT_NAME: 'box' } });
  const [taken] = await s.query("SELECT identity_sha256, status FROM agents WHERE name = 'box'");
  t.not(taken!.identity_sha256, first!.identity_sha256, 'a new agent took the freed name, with a credential of its own');
  t.equal(taken!.status, 'online');
  const old = await s.startAgent('box', { gpus: fakeGpus(1, 'first'), expectExit: 1, waitForRegistered: false });
  const oldRefused = await old.waitFor((l) => l.msg === 'registration refused', 30_000);
  t.equal(await old.exited, 1, 'the removed agent, started again from its work dir, is refused');
  t.match(old.lines.join('\n'), /the scheduler refused this agent's credential/, 'its old credential is refused');
  t.match(String(oldRefused.err), /agent name "box" is taken/, 'and its join token does not take the name back from the new holder');
  t.equal(await fourth.stop(), 0);
});

t.test('agents remove: a live agent only with --force, which shuts it out and hands its runs to another', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'solo', gpus: fakeGpus(1, 'solo') }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate);
  await waitForAttempt(s, id, 1);

  const refused = await s.cli(['agents', 'remove', 'solo', '--json']);
  t.equal(refused.code, 1, 'a live agent is not removed without --force');
  t.equal(JSON.parse(refused.stderr).error?.code, 'FAILED_PRECONDITION');
  t.match(refused.stderr, /agent \\"solo\\" is online: stop it first .*--force/, 'the refusal says what to do');
  t.same(await s.query("SELECT status FROM agents WHERE name = 'solo'"), [{ status: 'online' }], 'nothing changed');
  const missing = await s.cli(['agents', 'remove', 'nobody', '--json']);
  t.equal(JSON.parse(missing.stderr).error?.code, 'NOT_FOUND', 'an unknown agent: NOT_FOUND');
  t.equal((await s.cli(['agents', 'remove'])).code, 2, 'no name: a usage error');

  const solo = s.daemons.find((d) => d.name === 'solo')!.expectExit(1);
  const forced = await s.cliJson(['agents', 'remove', 'solo', '--force']);
  t.same(forced, { name: 'solo', was: 'online', requeued: 1 }, 'forced: it was online, its run went back to the queue');
  t.same(await s.query("SELECT * FROM agents WHERE name = 'solo'"), [], 'the agent is forgotten');
  const [run] = await s.query('SELECT status, agent, lost_attempts FROM runs WHERE id = $1', [id]);
  t.same(run, { status: 'Waiting for resources', agent: null, lost_attempts: 1 }, 'its run waits for another agent, one attempt spent');
  t.same((await s.query("SELECT kind, detail FROM events WHERE subject = 'solo' ORDER BY id")).map((e) => e.kind), ['agent.joined', 'agent.lost', 'agent.removed']);
  await solo.waitFor((l) => String(l.msg).startsWith('shut out'), 15_000);
  t.equal(await solo.exited, 1, 'the shut-out agent stops its runs and exits 1');
  t.same(await s.query("SELECT * FROM agents WHERE name = 'solo'"), [], 'its last words (leaving) made no row');

  await s.startAgent('spare', { gpus: fakeGpus(1, 'spare') });
  gate.open();
  const done = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.same([done.status, done.attempt, done.last_agent], ['Successful', 2, 'spare'], 'the run finished on another agent, as its second attempt');
});

// Schedulers remember a checked agent credential (--auth-cache-ms, scheduler/auth/agent-identities.ts).
// A removal on one scheduler must reach another that remembers it at once, not when its memory expires:
// the TTL here is ten minutes, so only the message between the schedulers can refuse it in time.
t.test('an agent removed on one scheduler is refused at once by another that remembered its credential', async (t) => {
  const ttl = { TRAINYARD_AUTH_CACHE_MS: '600000' };
  const s = await Stack.create(t, { schedulerEnv: ttl });
  const b = await s.startScheduler(ttl);
  const listening = await b.waitFor((l) => l.msg === 'listening');
  const fake = await FakeAgent.start(s, 'remote');
  t.teardown(() => fake.close());
  const onB = new (loadProto().trainyard.v1.AgentLink)(String(listening.address), grpc.credentials.createInsecure(), channelOptions) as AgentLinkClient;
  t.teardown(() => onB.close());
  const beatB = () => new Promise<unknown>((resolve, reject) => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(fake.auth)) md.set(k, v);
    onB.Heartbeat({ name: 'remote', session: fake.session, held: [], draining: false, leaving: false }, md, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
  t.ok(await beatB(), 'the other scheduler takes the agent\'s call');
  // Changed behind both schedulers' backs (no message): the other one goes on trusting what it remembered,
  // so what refuses the agent below is the removal's message, not a read of the row.
  const [{ identity_sha256: sha }] = await s.query("SELECT identity_sha256 FROM agents WHERE name = 'remote'");
  await s.query("UPDATE agents SET identity_sha256 = NULL WHERE name = 'remote'");
  t.ok(await beatB(), 'a change no scheduler announced: still remembered');
  await s.query("UPDATE agents SET identity_sha256 = $1 WHERE name = 'remote'", [sha]);

  t.same(await s.cliJson(['agents', 'remove', 'remote', '--force']), { name: 'remote', was: 'online', requeued: 0 }, 'removed through the first scheduler');
  await t.rejects(fake.call('Heartbeat', { name: 'remote', session: fake.session, held: [], draining: false, leaving: false }),
    { code: grpc.status.UNAUTHENTICATED }, 'the scheduler that removed it refuses it');
  // The message is on its way as the CLI returns; a few seconds at most, against the ten minutes of the TTL.
  const deadline = Date.now() + 5_000;
  let last: unknown = null;
  while (Date.now() < deadline) {
    last = await beatB().then(() => null, (err: unknown) => err);
    if ((last as { code?: number } | null)?.code === grpc.status.UNAUTHENTICATED) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.match(last, { code: grpc.status.UNAUTHENTICATED, details: /the credential is not agent "remote"'s/ }, 'and so does the other, at once');
});
