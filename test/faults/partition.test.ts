// A real network partition: the agent runs in its own network namespace (a second host) and reaches the
// scheduler, NATS and MinIO only over a veth link, which the test takes down. The scheduler sees the agent
// go silent, runs the job elsewhere, and when the link comes back the cut-off agent's stale attempt is
// refused: one run, one version.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { createNetns } from '../helpers/netns.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

t.test('partitioned agent: the run finishes elsewhere, the stale attempt cannot commit', async (t) => {
  const ns = createNetns(t);
  const s = await Stack.create(t, { agents: [], host: ns.hostIp, privateNats: true, privateMinio: true });
  const island = await s.startAgent('island', { netns: ns.name });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--env', 'LINES=1']);
  await waitForAttempt(s, id, 1);
  t.equal((await s.query('SELECT last_agent FROM runs WHERE id = $1', [id]))[0]!.last_agent, 'island');

  ns.cut();
  let healed = false;
  t.teardown(() => { if (!healed) ns.heal(); });
  await s.startAgent('mainland');
  const second = await waitForAttempt(s, id, 2);
  t.equal(second.last_agent, 'mainland', 'the scheduler gave up on the silent agent and placed the run again');
  gate.open(); // both attempts' train.py finish; only the mainland one can reach anything
  const done = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(done.status, 'Successful');
  t.equal(done.attempt, 2);
  const [agent] = await s.query("SELECT status FROM agents WHERE name = 'island'");
  t.equal(agent!.status, 'lost');

  ns.heal();
  healed = true;
  await island.waitFor((l) => l.run === id && (l.msg === 'finish report refused (a stale attempt)'), 120_000);
  const after = (await s.query('SELECT status, attempt, output_major, output_minor FROM runs WHERE id = $1', [id]))[0];
  t.same(after, { status: 'Successful', attempt: 2, output_major: 1, output_minor: 1 }, 'the stale report changed nothing');
  const versions = await s.query('SELECT major, minor, run_id, object_key FROM package_versions WHERE run_id IS NOT NULL');
  t.same(versions.map((v) => [v.major, v.minor, v.run_id]), [[1, 1, id]], 'exactly one trained version');
  t.equal((await s.query('SELECT attempt FROM runs WHERE id = $1', [id]))[0]!.attempt, 2, 'from attempt 2');
  t.match(versions[0]!.object_key, /^packages\/[^/]+\/[0-9a-f]{64}\/package\.zip$/, 'registered at its verified copy');
  await island.waitFor((l) => l.msg === 'registered' && Number(l.session) > 1, 60_000);
  t.pass('the agent registered again once the link was back');
});
