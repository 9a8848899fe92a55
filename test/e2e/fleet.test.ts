// Several schedulers and project caps, end to end.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

t.test('two schedulers, many concurrent submissions: each run dispatched exactly once', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const first = s.schedulerAddress;
  const second = String((await (await s.startScheduler()).waitFor((l) => l.msg === 'listening')).address);
  s.schedulerAddress = `${first},${second}`;
  await s.startAgent('w1', { cpus: 16 });
  await s.startAgent('w2', { cpus: 16 });
  await pushGated(s);
  const gate = new Gate();
  gate.open();
  const apis = [s.api(undefined, first), s.api(undefined, second)];
  t.teardown(() => apis.forEach((a) => a.close()));
  const n = 40;
  const submitted = await Promise.all(Array.from({ length: n }, (_, i) => apis[i % 2]!.submitRun({
    package: 'gated', dataset: 'd', env: { GATE: gate.file }, resources: { cpus: 1 },
  })));
  const ids = submitted.map((r) => r.id);
  t.equal(new Set(ids).size, n, `${n} distinct runs, half through each scheduler`);
  for (const id of ids) await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  const rows = await s.query('SELECT id, status, attempt, failure_reason FROM runs WHERE id = ANY($1)', [ids]);
  t.same(rows.filter((r) => r.status !== 'Successful' || r.attempt !== 1), [], 'every run Successful on its first attempt');
  const placed = await s.query("SELECT run_id, count(*)::int AS n FROM run_events WHERE detail LIKE 'placed on %' GROUP BY run_id");
  t.same(placed.filter((p) => p.n !== 1), [], 'each run was placed once');
  t.equal(placed.length, n);
  const received = new Map<string, number>();
  for (const name of ['w1', 'w2']) {
    for (const line of s.logOf(name).split('\n')) {
      if (!line.includes('"dispatch received"')) continue;
      const run = JSON.parse(line).run as string;
      received.set(run, (received.get(run) ?? 0) + 1);
    }
  }
  t.same(ids.filter((id) => received.get(id) !== 1), [], 'each run reached exactly one agent, exactly once');
  const versions = await s.query('SELECT count(*)::int AS n FROM package_versions WHERE run_id = ANY($1)', [ids]);
  t.equal(versions[0]!.n, n, 'one version per run');
});

t.test('a project capped at one concurrent run waits for its own run, not for the fleet', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'big', cpus: 16 }] });
  await pushGated(s);
  const set = await s.cliJson(['projects', 'set', 'team-a', '--max-runs', '1']);
  t.equal(set.max_runs, 1);
  const gate = new Gate();
  const a1 = await submitGated(s, gate, ['--project', 'team-a']);
  await waitForAttempt(s, a1, 1);
  const a2 = await submitGated(s, gate, ['--project', 'team-a']);
  const b1 = await submitGated(s, gate, ['--project', 'team-b']);
  const waiting = await s.waitForStatus(a2, ['Waiting for resources']);
  t.equal(waiting.status_detail, 'project team-a is at its limit of 1 concurrent runs');
  await waitForAttempt(s, b1, 1);
  t.pass('another project still runs');
  const projects = await s.cliJson<any[]>(['projects']);
  const teamA = projects.find((p) => p.name === 'team-a');
  t.same([teamA.running, teamA.queued, teamA.max_runs], [1, 1, 1]);
  gate.open();
  for (const id of [a1, a2, b1]) t.equal((await s.waitForStatus(id, ['Successful', 'Failed'])).status, 'Successful');
});
