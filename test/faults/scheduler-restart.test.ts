// kill -9 of the scheduler mid-flight loses nothing: the running run finishes and is recorded when it
// returns, the queued one is dispatched once, and every log line lands exactly once, in order.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

const order = ['Scheduled', 'Waiting for resources', 'Packaging', 'Running', 'Successful', 'Failed', 'Killed'];

t.test('scheduler killed with one run running and one queued', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'worker', cpus: 4 }] });
  await pushGated(s);
  const gate = new Gate();
  // Both want all 4 CPUs, so the second queues behind the first.
  const first = await submitGated(s, gate, ['--cpus', '4', '--env', 'LINES=200', '--env', 'LINE_DELAY=0.02']);
  await waitForAttempt(s, first, 1);
  const second = await submitGated(s, gate, ['--cpus', '4']);
  await s.waitForStatus(second, ['Waiting for resources']);

  const scheduler = s.daemons.find((d) => d.name === 'scheduler1')!;
  await scheduler.kill9();
  gate.open(); // the first run finishes while no scheduler is there to hear it
  await new Promise((r) => setTimeout(r, 2000));
  await s.startScheduler({}, s.schedulerAddress);

  const a = await s.waitForStatus(first, ['Successful', 'Failed']);
  const b = await s.waitForStatus(second, ['Successful', 'Failed']);
  t.equal(a.status, 'Successful', 'the running run is recorded when the scheduler returns');
  t.equal(b.status, 'Successful', 'the queued run is dispatched after the restart');
  t.equal(a.attempt, 1, 'the running run was not run twice');
  t.equal(b.attempt, 1, 'the queued run was dispatched once');
  const versions = await s.query('SELECT run_id, minor FROM package_versions WHERE run_id IS NOT NULL ORDER BY minor');
  t.equal(versions.length, 2, 'one version per run');
  t.same(new Set(versions.map((v) => v.run_id)), new Set([first, second]));

  for (const id of [first, second]) {
    const events = await s.query('SELECT status FROM run_events WHERE run_id = $1 ORDER BY id', [id]);
    const ranks = events.map((e) => order.indexOf(e.status)).filter((r) => r !== order.indexOf('Waiting for resources'));
    t.same(ranks, [...ranks].sort((x, y) => x - y), `${id}: no status went backwards`);
  }

  const logs = await s.query("SELECT seq, text FROM run_logs WHERE run_id = $1 AND stream = 'stdout' ORDER BY seq", [first]);
  const numbered = logs.map((l) => l.text).filter((x: string) => x.startsWith('line '));
  t.same(numbered, Array.from({ length: 200 }, (_, i) => `line ${i + 1}`), 'every line exactly once and in order');
  const all = await s.query('SELECT seq FROM run_logs WHERE run_id = $1 ORDER BY seq', [first]);
  t.same(all.map((l) => Number(l.seq)), Array.from({ length: all.length }, (_, i) => i + 1), 'sequence numbers have no gap');
});

t.test('two schedulers: when one is killed, the other places and serves', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const first = s.schedulerAddress;
  const second = await s.startScheduler();
  const secondAddress = String((await second.waitFor((l) => l.msg === 'listening')).address);
  // Agents and clients are given both addresses and fail over between them.
  s.schedulerAddress = `${first},${secondAddress}`;
  await s.startAgent('worker');
  await pushGated(s);
  const gate = new Gate();
  gate.open();
  const before = await submitGated(s, gate);
  t.equal((await s.waitForStatus(before, ['Successful', 'Failed'])).status, 'Successful');
  await s.daemons.find((d) => d.name === 'scheduler1')!.kill9();
  await second.waitFor((l) => l.msg === 'placer: this scheduler now places runs', 30_000);
  const after = await submitGated(s, gate);
  const run = await s.waitForStatus(after, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', 'a run submitted after the kill is placed, run and recorded');
  t.equal(run.attempt, 1);
  const [agent] = await s.query("SELECT status FROM agents WHERE name = 'worker'");
  t.equal(agent!.status, 'online', 'the agent failed over to the surviving scheduler and stayed online');
});
