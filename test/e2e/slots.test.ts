// Run slots (issue 11): an agent advertising 4 CPUs with --max-runs 2 takes two 0-CPU runs at once and no
// more; the third waits with the reason, and is placed when a slot frees. `trainyard agents` shows the slots.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

t.test('an agent takes at most --max-runs runs at once, whatever CPUs they ask', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1', cpus: 4, env: { TRAINYARD_MAX_RUNS: '2' } }] });
  await pushGated(s);
  const gate = new Gate();
  const ids = [await submitGated(s, gate), await submitGated(s, gate), await submitGated(s, gate)];
  await waitForAttempt(s, ids[0]!, 1);
  await waitForAttempt(s, ids[1]!, 1);
  const third = await s.waitForStatus(ids[2]!, ['Waiting for resources'], 60_000);
  t.equal(third.status, 'Waiting for resources', 'the third run waits: both slots are taken (4 CPUs are free)');
  t.match(third.status_detail, /waiting for a free agent/, `with the reason (${third.status_detail})`);
  const agents = await s.cliJson(['agents']);
  t.equal(agents[0].max_runs, 2, 'the agent registered its slots');
  t.equal(agents[0].run_ids.length, 2, 'and holds two runs');
  const table = await s.cli(['agents']);
  t.match(table.stdout, /SLOTS/, 'trainyard agents has a slots column');
  t.match(table.stdout, /a1\s+\S+\s+2\/2/, 'showing 2/2');
  gate.open();
  for (const id of ids) t.equal((await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'])).status, 'Successful', `${id} Successful once a slot freed`);
});

t.test('by default an agent has one slot per advertised CPU', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1', cpus: 3 }] });
  const agents = await s.cliJson(['agents']);
  t.equal(agents[0].max_runs, 3, '--cpus 3, no --max-runs: 3 slots');
});
