// An agent told to stop while the scheduler is away still stops within its grace: the end report of a
// finished attempt retries while the agent runs, and gives up (saying so) once the agent stops for good,
// on a second SIGTERM or at its drain deadline. The scheduler, back, requeues the unreported attempt by
// its agent-loss sweep and the run still ends once, Successful.
import t, { type Test } from 'tap';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt, waitForLog } from '../helpers/packages.js';

async function finishedWhileSchedulerAway(t: Test, agentEnv: Record<string, string> = {}) {
  const s = await Stack.create(t, { agents: [{ name: 'stranded', killGraceMs: 2000, env: agentEnv }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--env', 'LINES=1']);
  await waitForAttempt(s, id, 1);
  // train.py is really running (its first line reached the scheduler), not only Running in the table: a
  // scheduler killed between committing Running and the agent hearing so leaves a run the agent has not
  // started, and this test, whose scheduler stays away, would wait for an upload that cannot come.
  await waitForLog(s, id, 'line 1');
  await s.daemons.find((d) => d.name === 'scheduler1')!.kill9();
  gate.open(); // train() ends, the outputs go up, and the end report (its last log lines first) finds no scheduler
  const agent = s.daemons.find((d) => d.name === 'stranded')!;
  const end = Date.now() + 60_000;
  while (!(await s.objects(`runs/${id}/`)).includes(`runs/${id}/attempt-1/package.zip`)) {
    if (Date.now() > end) throw new Error('the attempt did not upload its package');
    await new Promise((r) => setTimeout(r, 200));
  }
  await new Promise((r) => setTimeout(r, 2000)); // the attempt is now in its end report, retrying
  t.ok(agent.alive, 'the agent keeps retrying while it runs');
  return { s, id, agent };
}

t.test('a second SIGTERM while the end report cannot reach the scheduler: the agent exits within its grace', async (t) => {
  const { s, id, agent } = await finishedWhileSchedulerAway(t);
  const started = Date.now();
  // SIGTERM, then SIGTERM again half a second later; SIGKILL (a failure) only after 20 s.
  const code = await agent.stop('SIGTERM', 20_000, { againAfterMs: 500 });
  const took = Date.now() - started;
  t.equal(code, 0, 'the agent exits 0');
  t.ok(took < 10_000, `it exited ${took} ms after the first SIGTERM (kill grace 2 s + 3 s for the reports)`);
  await agent.waitFor((l) => l.msg === 'agent stopping: the end of this attempt was not reported; the scheduler will requeue or end it when it finds this agent gone' && l.run === id, 1000)
    .then(() => t.pass('the agent says the end was not reported'));

  // The scheduler comes back; the attempt's agent is gone, so the loss sweep requeues the run.
  await s.startScheduler({}, s.schedulerAddress);
  await s.startAgent('rescuer');
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.equal(run.status, 'Successful', run.failure_reason ?? '');
  t.equal((await s.query('SELECT * FROM package_versions WHERE run_id = $1', [id])).length, 1, 'one version, registered once');
});

t.test('one SIGTERM and the drain deadline while the scheduler is away: the agent still exits', async (t) => {
  const { agent } = await finishedWhileSchedulerAway(t, { TRAINYARD_DRAIN_TIMEOUT_MS: '1000' });
  const started = Date.now();
  const code = await agent.stop('SIGTERM', 20_000);
  const took = Date.now() - started;
  t.equal(code, 0, 'the agent exits 0');
  t.ok(took < 12_000, `it exited ${took} ms after SIGTERM (drain deadline 1 s + kill grace 2 s + 3 s)`);
});
