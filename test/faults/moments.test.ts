// Faults at the two moments the other fault tests do not reach by timing: before an agent acknowledges a
// dispatch, and in the middle of registering a version.
import t from 'tap';
import pg from 'pg';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

t.test('a dispatch its agent never acknowledges is placed again elsewhere', async (t) => {
  const s = await Stack.create(t, {
    agents: [{ name: 'frozen' }],
    // The ack deadline is far shorter than the loss deadline, so this is the path under test.
    schedulerEnv: { TRAINYARD_DISPATCH_ACK_TIMEOUT_MS: '2000', TRAINYARD_AGENT_LOST_AFTER_MS: '60000' },
  });
  await pushGated(s);
  const frozen = s.daemons.find((d) => d.name === 'frozen')!;
  frozen.child.kill('SIGSTOP'); // registered and online, but it will take nothing
  t.teardown(() => { frozen.child.kill('SIGCONT'); });
  const gate = new Gate();
  gate.open();
  const id = await submitGated(s, gate);
  for (let i = 0; i < 100; i++) {
    if ((await s.query("SELECT 1 FROM run_events WHERE run_id = $1 AND detail = 'placed on frozen'", [id])).length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await s.startAgent('awake');
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', `the run succeeds (${run.failure_reason ?? ''})`);
  const events = (await s.query('SELECT detail FROM run_events WHERE run_id = $1 ORDER BY id', [id])).map((e) => e.detail as string);
  t.ok(events.includes('placed on frozen'), 'first placed on the frozen agent');
  t.ok(events.includes('dispatch not acknowledged by frozen within 2000 ms'), 'taken back when the ack deadline passed');
  t.equal(run.last_agent, 'awake', 'then run by the agent that answers');
  t.equal(run.attempt, 2, 'the frozen agent was not offered the run again');
  const [frozenRow] = await s.query("SELECT unresponsive_since FROM agents WHERE name = 'frozen'");
  t.ok(frozenRow!.unresponsive_since, 'the agent that missed the dispatch is marked unresponsive');
  t.equal(run.lost_attempts, 0, 'a dispatch never taken does not count as a lost attempt');
});

t.test('scheduler killed while it registers the version: exactly one version after it returns', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'worker' }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate);
  await waitForAttempt(s, id, 1);
  // Hold the package's row lock: the success commit's one statement inserts the version row, whose
  // foreign key takes a share lock on that row, so it blocks after the outputs were checked and
  // _results.json written, before anything of the commit is visible.
  const blocker = new pg.Client({ connectionString: s.databaseUrl });
  await blocker.connect();
  await blocker.query('BEGIN');
  await blocker.query("SELECT name FROM packages WHERE name = 'gated' FOR UPDATE");
  gate.open();
  const waiting = async () => (await s.query(
    "SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted AND a.query LIKE '%package_versions%'"))[0]!.n as number;
  for (let i = 0; i < 600 && (await waiting()) === 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.ok((await waiting()) > 0, 'the success commit is in flight, waiting on the lock');
  await s.daemons.find((d) => d.name === 'scheduler1')!.kill9();
  await blocker.query('ROLLBACK');
  await blocker.end();
  // The commit is one statement: Postgres finishes it (or not) whole, even with its client gone. Either
  // way nothing half-made: a version exactly when the run is Successful.
  await new Promise((r) => setTimeout(r, 500));
  const [mid] = await s.query('SELECT status, (SELECT count(*)::int FROM package_versions WHERE run_id = $1) AS versions FROM runs WHERE id = $1', [id]);
  t.ok((mid!.status === 'Successful' && mid!.versions === 1) || (mid!.status === 'Running' && mid!.versions === 0),
    `all or nothing after the kill (${mid!.status}, ${mid!.versions} version)`);
  await s.startScheduler({}, s.schedulerAddress);
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', 'the agent retried its report and the run committed');
  const versions = await s.query('SELECT major, minor FROM package_versions WHERE run_id = $1', [id]);
  t.same(versions, [{ major: 1, minor: 1 }], 'exactly one version');
});
