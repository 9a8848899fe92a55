// Defect 8: two agents started with the same name (both default to the hostname) must not silently become
// one. Each agent keeps a random identity in its work dir; a second live agent under a taken name is
// refused, told where the first is, and exits non-zero; the same agent restarting is still accepted.
import t from 'tap';
import path from 'node:path';
import { statSync } from 'node:fs';
import { Stack, fakeGpus } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

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
  t.match(why, `agent name "box" is held by another agent, at ${first!.address}`, 'the refusal names the first agent\'s address');
  t.match(why, `since ${new Date(first!.registered_at).toISOString()}`, 'and since when it holds the name');
  t.match(s.logOf('second'), /error: agent name "box" is held by another agent/, 'and says so on stderr');

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

  // Once the holder has left (offline), the name is free for another agent.
  t.equal(await restarted.stop(), 0, 'the first agent leaves cleanly');
  const third = await s.startAgent('third', { env: { TRAINYARD_AGENT_NAME: 'box' } });
  await third.waitFor((l) => l.msg === 'registered');
  const [taken] = await s.query("SELECT identity_sha256, status FROM agents WHERE name = 'box'");
  t.not(taken!.identity_sha256, first!.identity_sha256, 'another agent took the name over once it was free');
  t.equal(taken!.status, 'online');
});
