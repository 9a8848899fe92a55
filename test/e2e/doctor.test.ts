// `trainyard doctor`: the invariant check on request. A clean stack has no violation (exit 0); a GPU lease
// whose run does not hold it is reported as orphan_gpu_lease (exit 1) and `--repair` removes it.
import t from 'tap';
import pg from 'pg';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated } from '../helpers/packages.js';

const PLACER_LOCK = 7_246_002; // scheduler/placement/placer.ts: whoever holds it places runs and sweeps

t.test('doctor finds an orphan GPU lease, and --repair removes it', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  // The placing scheduler's own sweep would repair the orphan within seconds, racing the check below. So
  // this stack's scheduler is replaced by one that never leads: the test holds the placer's lock.
  await s.daemons.find((d) => d.name === 'scheduler1')!.kill9();
  const lock = new pg.Client({ connectionString: s.databaseUrl });
  await lock.connect();
  t.teardown(() => lock.end());
  await lock.query('SELECT pg_advisory_lock($1)', [PLACER_LOCK]);
  const d = await s.startScheduler();
  s.schedulerAddress = String((await d.waitFor((l) => l.msg === 'listening')).address);

  const clean = await s.cli(['doctor']);
  t.equal(clean.code, 0, `a clean stack: exit 0 (stderr: ${clean.stderr})`);
  t.match(clean.stdout, /No invariant violations now/);
  t.match(clean.stdout, /Recorded by the sweep: 0/);
  const cleanJson = await s.cli(['doctor', '--json']);
  t.equal(cleanJson.code, 0);
  t.same(JSON.parse(cleanJson.stdout).current, [], '--json: no current violation');

  await pushGated(s);
  const id = await submitGated(s, new Gate()); // queued: nobody places it
  await s.query("INSERT INTO gpu_leases (agent, gpu_index, run_id, lease) VALUES ('ghost', 0, $1, 12345)", [id]);

  const found = await s.cli(['doctor']);
  t.equal(found.code, 1, 'a violation now: exit 1');
  t.match(found.stdout, /orphan_gpu_lease/);
  t.match(found.stdout, new RegExp(`${id}\\s+ghost\\s+GPU 0 leased to ${id}`), 'the table names the run, the agent and what is wrong');
  t.match(found.stderr, /1 violation now/);
  const foundJson = await s.cli(['doctor', '--json']);
  t.equal(foundJson.code, 1);
  const report = JSON.parse(foundJson.stdout);
  t.same(report.current.map((v: Record<string, unknown>) => [v.kind, v.run_id, v.agent, v.repaired]), [['orphan_gpu_lease', id, 'ghost', false]]);
  t.equal((await s.query('SELECT * FROM gpu_leases')).length, 1, 'without --repair, nothing is changed');

  const repaired = await s.cli(['doctor', '--repair']);
  t.equal(repaired.code, 0, `--repair: everything found was repaired, exit 0 (stderr: ${repaired.stderr})`);
  t.match(repaired.stdout, /orphan_gpu_lease.*yes/);
  t.match(repaired.stdout, /orphan_gpu_lease\s+1/, 'the repair is recorded, counted by kind');
  t.same(await s.query('SELECT * FROM gpu_leases'), [], 'the orphan lease is gone');

  const after = await s.cli(['doctor']);
  t.equal(after.code, 0, 'then doctor: exit 0');
  t.match(after.stdout, /No invariant violations now/);

  const help = await s.cli(['doctor', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /trainyard doctor \[--repair\] \[--storage\] \[--grace AGE\] \[--json\]/);
});
