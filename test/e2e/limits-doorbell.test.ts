// A placer keeps the projects' caps it read for a while (scheduler/placement/placer.ts #projectCaps), so
// `projects set` must reach it by its doorbell, on whichever scheduler the change is made. Both schedulers
// here keep caps for ten minutes: only the doorbell can make a raised cap take effect within this test.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';

const quick = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';

t.test('a raised project cap takes effect at once, set through either scheduler', async (t) => {
  const keep = { TRAINYARD_PLACER_CAPS_KEPT_MS: '600000' };
  const s = await Stack.create(t, { agents: [], schedulerEnv: keep });
  const a = s.schedulerAddress;
  const second = await s.startScheduler(keep);
  const b = String((await second.waitFor((l) => l.msg === 'listening')).address);
  const through = async (address: string, args: string[]) => {
    s.schedulerAddress = address;
    try { return await s.cliJson(args); } finally { s.schedulerAddress = a; }
  };
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  await s.cliJson(['projects', 'set', 'default', '--max-runs', '1']);
  const agent = await FakeAgent.start(s, 'box', { cpus: 8 });
  t.teardown(() => agent.close());
  const submit = async () => (await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd'])).id as string;
  const waiting = async (id: string) => {
    for (let i = 0; i < 600; i++) {
      const [r] = await s.query('SELECT status, status_detail FROM runs WHERE id = $1', [id]);
      if (/at its limit of/.test(String(r?.status_detail))) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`run ${id} never waited for its project's limit`);
  };

  const first = await submit();
  t.equal((await agent.nextDispatch()).run_id, first, 'the first run is placed');
  const second1 = await submit();
  t.match(await waiting(second1), { status: 'Waiting for resources' }, 'the second waits: the project is at its limit of 1');

  // Raised through the second scheduler: its doorbell reaches the first over NATS (or its own placer).
  await through(b, ['projects', 'set', 'default', '--max-runs', '2']);
  t.equal((await agent.nextDispatch(30_000)).run_id, second1, 'raised to 2 through the second scheduler: the waiting run is placed');
  const third = await submit();
  t.match(await waiting(third), { status: 'Waiting for resources' }, 'the next one waits at the new limit');
  // And through the first.
  await through(a, ['projects', 'set', 'default', '--max-runs', '3']);
  t.equal((await agent.nextDispatch(30_000)).run_id, third, 'raised to 3 through the first scheduler: placed');

  // The control: the cap raised in the table behind the schedulers' backs (no doorbell) is not seen while
  // the caps are kept. Over the 5 s a placer keeps them by default, so this fails if the test's setting
  // were not read (and the steps above would then prove nothing).
  const fourth = await submit();
  await waiting(fourth);
  await s.query("UPDATE project_limits SET max_runs = 4 WHERE project = 'default'");
  await new Promise((res) => setTimeout(res, 6500));
  t.match((await s.query('SELECT status, status_detail FROM runs WHERE id = $1', [fourth]))[0], { status: 'Waiting for resources', status_detail: /at its limit of 3/ },
    'a change no doorbell announced is not seen while the caps are kept');
  await s.cliJson(['projects', 'set', 'default', '--max-runs', '4']);
  t.equal((await agent.nextDispatch(30_000)).run_id, fourth, 'announced: placed');
});

// A placer that kept a project's old agents (its doorbell lost) must not fail a run as one that can never
// be placed: "never" is decided only on caps read for that pass.
t.test('a run is not failed as never placeable on caps kept from before a change', async (t) => {
  const keep = { TRAINYARD_PLACER_CAPS_KEPT_MS: '600000' };
  const s = await Stack.create(t, { agents: [], schedulerEnv: keep });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const agent = await FakeAgent.start(s, 'box', { cpus: 8, labels: { pool: 'b' } });
  t.teardown(() => agent.close());
  await s.cliJson(['projects', 'set', 'default', '--agents', 'pool=b']);
  const first = (await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd'])).id as string;
  t.equal((await agent.nextDispatch()).run_id, first, 'placed inside the project\'s agents (the placer now keeps these caps)');
  // The kept caps say pool=a (announced), the table says pool=b (changed with no doorbell, as when one is
  // lost), and the only agent is in pool=b: on the kept caps the run fits no agent at all.
  await s.cliJson(['projects', 'set', 'default', '--agents', 'pool=a']);
  // A run now fits no agent and fails as one that never will: the placer has read pool=a, and keeps it.
  const probe = (await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd'])).id as string;
  t.match(await s.waitForStatus(probe, ['Failed', 'Successful', 'Killed']), { status: 'Failed', failure_reason: /no registered agent could ever satisfy/ },
    'on caps read for its pass, a run no agent can take fails');
  await s.query(`UPDATE project_limits SET agent_labels = '{"pool": "b"}' WHERE project = 'default'`);
  const second = (await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd'])).id as string;
  const d = await agent.nextDispatch(30_000).catch(async (err: unknown) => {
    const [r] = await s.query('SELECT status, failure_reason FROM runs WHERE id = $1', [second]);
    throw new Error(`${String(err)}; the run is ${JSON.stringify(r)}`);
  });
  t.equal(d.run_id, second, 'the placer read the caps again rather than fail it, and placed it');
});
