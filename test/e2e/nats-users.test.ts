// NATS users (scripts/services.sh; the stack's private servers get the same): anonymous connections are
// refused, and the agents' user may subscribe to the agent subjects but publish nothing, so an agent box
// cannot ring another agent's doorbell (nor wake the placer).
import t from 'tap';
import { connect, type NatsConnection } from 'nats';
import { Stack } from '../helpers/stack.js';

t.test('anonymous and wrong-password connections are refused', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  t.ok(s.natsUsers.scheduler && s.natsUsers.agent, 'the services gave NATS users (TRAINYARD_NATS_*_USER from nats-users.env)');
  await t.rejects(connect({ servers: s.natsUrl, reconnect: false }), { code: 'AUTHORIZATION_VIOLATION' }, 'anonymous: AUTHORIZATION_VIOLATION');
  await t.rejects(connect({ servers: s.natsUrl, reconnect: false, user: s.natsUsers.agent!.user, pass: 'wrong' }), { code: 'AUTHORIZATION_VIOLATION' }, 'a wrong password too');
  const ok = await connect(s.natsOptions('agent'));
  t.pass('the agent user connects');
  await ok.close();
});

t.test('the agent user cannot publish a dispatch; the scheduler user can', async (t) => {
  const s = await Stack.create(t);
  const agent = s.daemons.find((d) => d.name === 'agent1')!;
  const conns: NatsConnection[] = [];
  t.teardown(() => Promise.all(conns.map((c) => c.close())));
  const as = async (role: 'scheduler' | 'agent') => { const c = await connect(s.natsOptions(role)); conns.push(c); return c; };

  const listener = await as('agent');
  const got: string[] = [];
  listener.subscribe(`${s.prefix}.agent.agent1.dispatch`, { callback: (_err, m) => got.push(new TextDecoder().decode(m.data)) });
  await listener.flush();

  const forger = await as('agent');
  const violations: string[] = [];
  void (async () => { for await (const st of forger.status()) if (st.type === 'error') violations.push(String(st.data)); })();
  forger.publish(`${s.prefix}.agent.agent1.dispatch`, JSON.stringify({ run_id: 'run_bbbbbbbbbbbbbb', attempt: 1 }));
  forger.publish(`${s.prefix}.kick`);
  await forger.flush();

  // The control: the scheduler's user reaches the same subscription and the agent (which refuses it).
  const scheduler = await as('scheduler');
  scheduler.publish(`${s.prefix}.agent.agent1.dispatch`, JSON.stringify({ run_id: 'run_cccccccccccccc', attempt: 1 }));
  await scheduler.flush();
  await agent.waitFor((l) => l.msg === 'dispatch refused' && l.run === 'run_cccccccccccccc', 20_000);
  await listener.flush();
  await new Promise((r) => setTimeout(r, 500));

  t.same(got.map((m) => JSON.parse(m).run_id), ['run_cccccccccccccc'], 'only the scheduler user\'s message arrived');
  t.ok(violations.some((v) => /PERMISSIONS_VIOLATION/.test(v)), `the agent user's publish was a permissions violation (${violations.join('; ')})`);
  t.notOk(agent.lines.some((l) => l.includes('run_bbbbbbbbbbbbbb')), 'the agent never heard of the forged doorbell');
  t.notOk(forger.isClosed(), 'the forging connection itself survives (the publish is dropped, not fatal)');
});
