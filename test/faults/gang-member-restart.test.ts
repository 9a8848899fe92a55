// A multi-agent run whose member's agent restarts and registers again without it (the member was still
// being set up: nothing to take over). Its other ranks would wait at their rendezvous for ever, holding
// their agents; the scheduler takes the gang back whole at that Register, as one lost attempt, as it does
// for a lost member's agent. Scripted agents (FakeAgent): the test says what each one holds.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { quickTrainPy } from '../helpers/packages.js';

t.test('a gang member lost by its agent\'s restart sends the gang back to the queue, counted as a lost attempt', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', 'p']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const a = await FakeAgent.start(s, 'gang-a');
  const b = await FakeAgent.start(s, 'gang-b');
  t.teardown(async () => { await a.close(); await b.close(); });
  const id = (await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'd', '--agents', '2'])).id as string;
  const [da, db] = await Promise.all([a.nextDispatch(), b.nextDispatch()]);
  t.same([da.run_id, db.run_id], [id, id], 'both members are claimed');
  const [placed] = await s.query<{ attempt: number; lost_attempts: number }>('SELECT attempt, lost_attempts FROM runs WHERE id = $1', [id]);
  t.equal(placed!.lost_attempts, 0);

  // B restarts: it registers again (same name and credential) holding nothing, and beats so.
  b.stopBeats();
  await b.call('Register', {
    name: b.name, hostname: 'fake', cpus: 4, memory_mb: 4096, labels: {}, version: 'test', held: [], accept_projects: [], identity: b.identity, gpus: [],
  }).then((r) => { b.session = Number((r as { session: number }).session); });
  // Alive, beating, holding nothing: never taken for a lost agent.
  const beats = setInterval(() => { b.call('Heartbeat', { name: b.name, session: b.session, held: [], draining: false, leaving: false }).catch(() => {}); }, 300);
  t.teardown(() => clearInterval(beats));
  let row = placed!;
  for (const until = Date.now() + 15_000; Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
    [row] = await s.query<{ attempt: number; lost_attempts: number }>('SELECT attempt, lost_attempts FROM runs WHERE id = $1', [id]);
    if (row!.lost_attempts > 0) break;
  }
  t.equal(row.lost_attempts, 1, 'the gang went back to the queue as one lost attempt');
  const [ev] = await s.query<{ detail: string }>("SELECT detail FROM run_events WHERE run_id = $1 AND detail LIKE '%restarted%' ORDER BY id LIMIT 1", [id]);
  t.match(ev?.detail, /gang member on agent gang-b: the agent restarted and lost it/, 'saying why');
  const [agentRow] = await s.query<{ status: string }>("SELECT status FROM agents WHERE name = 'gang-b'");
  t.equal(agentRow?.status, 'online', 'with the member\'s agent online all along (not its loss)');
});
