// Agents that die or are cut off: the run goes back to the queue and runs again elsewhere, a stale attempt
// can never commit, and each run registers at most one version.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

t.test('kill -9 of an agent mid-train: attempt 2 runs on another agent', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'doomed' }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate);
  await waitForAttempt(s, id, 1);
  await s.daemons.find((d) => d.name === 'doomed')!.kill9();
  await s.startAgent('rescuer');
  const second = await waitForAttempt(s, id, 2);
  t.equal(second.last_agent, 'rescuer', 'attempt 2 is on the surviving agent');
  gate.open();
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful');
  t.equal(run.attempt, 2);
  t.equal(run.lost_attempts, 1);
  const events = await s.query('SELECT status, detail FROM run_events WHERE run_id = $1 ORDER BY id', [id]);
  t.ok(events.some((e) => e.status === 'Waiting for resources' && e.detail === 'agent lost'), 'the loss is recorded');
  const versions = await s.query('SELECT major, minor, object_key, sha256 FROM package_versions WHERE run_id = $1', [id]);
  t.same(versions, [{ major: 1, minor: 1, object_key: `packages/gated/${versions[0]?.sha256}/package.zip`, sha256: versions[0]?.sha256 }], 'exactly one version, from attempt 2 (registered at its verified copy)');
  t.ok(await s.objectText(`runs/${id}/attempt-2/package.zip`), 'attempt 2 uploaded it');
  t.equal(await s.objectText(`runs/${id}/attempt-2/artifacts/attempt.txt`), '2');
});

t.test('agent lost with no attempts left: Failed, "agent lost"', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'doomed' }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--max-attempts', '1']);
  await waitForAttempt(s, id, 1);
  await s.daemons.find((d) => d.name === 'doomed')!.kill9();
  const run = await s.waitForStatus(id, ['Failed', 'Successful', 'Killed'], 60_000);
  t.equal(run.status, 'Failed');
  t.equal(run.failure_reason, 'agent lost');
  t.equal(run.status_detail, 'attempts spent: 1 of 1');
  t.same(await s.query('SELECT * FROM package_versions WHERE run_id = $1', [id]), []);
  gate.open();
});

t.test('a partitioned agent that comes back cannot commit its stale attempt', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'partitioned' }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate);
  await waitForAttempt(s, id, 1);
  const stale = s.daemons.find((d) => d.name === 'partitioned')!;
  // SIGSTOP freezes the agent (no heartbeats, no reports) while train.py, in its own process group,
  // carries on: what a network partition looks like from the scheduler.
  stale.child.kill('SIGSTOP');
  await s.startAgent('healthy');
  await waitForAttempt(s, id, 2);
  gate.open();
  const done = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(done.status, 'Successful');
  t.equal(done.attempt, 2);

  stale.child.kill('SIGCONT');
  // The stale attempt's train.py has finished too; its agent now tries to report and is refused.
  await stale.waitFor((l) => l.msg === 'finish report refused (a stale attempt)' && l.run === id, 60_000);
  const after = (await s.query('SELECT status, attempt, output_major, output_minor FROM runs WHERE id = $1', [id]))[0];
  t.same(after, { status: 'Successful', attempt: 2, output_major: 1, output_minor: 1 }, 'the stale report changed nothing');
  const versions = await s.query('SELECT major, minor, run_id, object_key, sha256 FROM package_versions WHERE package = $1 ORDER BY minor', ['gated']);
  t.same(versions.map((v) => `${v.major}.${v.minor}`), ['1.0', '1.1'], 'one trained version, no second one');
  t.equal(versions[1]!.object_key, `packages/gated/${versions[1]!.sha256}/package.zip`, 'registered at its verified copy');
  const results = JSON.parse(await s.objectText(`runs/${id}/attempt-2/_results.json`));
  t.equal(results.run_summary.outputs.package, 'gated', 'outputs.package is the package name (AI Center\'s template)');
  // The agent that came back registers again and is usable.
  await stale.waitFor((l) => l.msg === 'registered' && Number(l.session) > 1, 30_000);
  t.pass('the returning agent registered again');
});
