// Graceful agent shutdown: SIGTERM (or `agents drain`) stops new work, lets running runs finish (or hands
// them back after the drain deadline), and the agent exits 0.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

t.test('SIGTERM: the running run finishes, new runs go elsewhere, exit 0', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'leaving' }] });
  await pushGated(s);
  const gate = new Gate();
  const running = await submitGated(s, gate);
  await waitForAttempt(s, running, 1);
  const leaving = s.daemons.find((d) => d.name === 'leaving')!;
  leaving.child.kill('SIGTERM');
  await leaving.waitFor((l) => l.msg === 'agent state' && l.to === 'DRAINING');
  for (let i = 0; i < 50; i++) {
    const [a] = await s.query("SELECT status FROM agents WHERE name = 'leaving'");
    if (a!.status === 'draining') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const next = await submitGated(s, gate);
  const waiting = await s.waitForStatus(next, ['Waiting for resources']);
  t.equal(waiting.attempt, 0, 'nothing new is placed on a draining agent');
  await s.startAgent('staying');
  gate.open();
  t.equal((await s.waitForStatus(running, ['Successful', 'Failed'])).status, 'Successful', 'the running run finished');
  t.equal(await leaving.exited, 0, 'the drained agent exits 0');
  const n = await s.waitForStatus(next, ['Successful', 'Failed']);
  t.equal(n.status, 'Successful');
  t.equal(n.last_agent, 'staying');
  const [agent] = await s.query("SELECT status FROM agents WHERE name = 'leaving'");
  t.equal(agent!.status, 'offline');
});

t.test('agents drain NAME past the drain deadline: the run is handed back and runs elsewhere', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'slow', env: { TRAINYARD_DRAIN_TIMEOUT_MS: '1000' } }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate);
  await waitForAttempt(s, id, 1);
  const drained = await s.cliJson(['agents', 'drain', 'slow']);
  t.equal(drained.status, 'draining');
  const slow = s.daemons.find((d) => d.name === 'slow')!;
  t.equal(await slow.exited, 0, 'the agent exits 0 once drained');
  await s.startAgent('other');
  await waitForAttempt(s, id, 2);
  gate.open();
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful');
  t.equal(run.lost_attempts, 0, 'a hand-back is not counted as a loss');
  t.equal(run.last_agent, 'other');
});
