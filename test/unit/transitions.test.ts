// The run state machine on a real Postgres: kill is one transition whatever the run's state, so a kill
// racing a requeue always ends Killed (issue 7, defect 5), and every transition writes its event and its
// lease change in the same statement.
import t from 'tap';
import { testDatabase } from '../helpers/stack.js';
import { RunTransitions, type Changed } from '../../scheduler/runs/transitions.js';
import type { Db } from '../../scheduler/db/database.js';

async function queueRuns(db: Db, n: number, prefix: string): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  await db.insertInto('runs').values(ids.map((id) => ({
    id, package: 'p', package_major: 1, package_minor: 0, package_object_key: 'k', dataset: 'd', gpus: 1,
    selector: '{}', env: '{}', max_attempts: 2, timeout_seconds: 0,
  }))).execute();
  return ids;
}

/** Registered, online agents (session 1): the place statement places only on such an agent. */
async function onlineAgents(db: Db, names: string[]): Promise<void> {
  await db.insertInto('agents').values(names.map((name) => ({ name, status: 'online' as const, session: 1, cpus: 8, memory_mb: 1000 }))).execute();
}

t.test('a kill racing a requeue always ends Killed, with the reason "killed"', async (t) => {
  const { db } = await testDatabase(t);
  const seen: Changed[] = [];
  const runs = new RunTransitions(db, (c) => seen.push(c));
  const ids = await queueRuns(db, 120, 'race');
  await onlineAgents(db, ids.map((_, i) => `a${i}`));
  // Each run is placed, then a kill and a requeue (its agent lost) are sent at the same moment, on
  // separate connections, in both orders.
  for (const [i, id] of ids.entries()) {
    const { placed } = await runs.assign([{ id, agent: `a${i}`, gpuIndices: [0], session: 1 }]);
    const lease = Number(placed[0]!.lease);
    const kill = () => runs.kill(id);
    const requeue = () => runs.requeue(id, lease, 'agent lost', true);
    await Promise.all(i % 2 ? [kill(), requeue()] : [requeue(), kill()]);
    // A requeue that landed before the kill leaves the run queued for a moment only if the kill then
    // ended it; a kill that landed first leaves it for requeue to end. Either way: Killed, now.
  }
  const rows = await db.selectFrom('runs').select(['id', 'status', 'failure_reason', 'status_detail', 'kill_requested', 'agent']).execute();
  const notKilled = rows.filter((r) => r.status !== 'Killed');
  t.same(notKilled, [], 'every run is Killed');
  t.same(rows.filter((r) => !/^killed/.test(r.failure_reason ?? '')), [], 'every reason says killed');
  t.same(rows.filter((r) => /attempts spent/.test(r.status_detail)), [], 'no killed run is described as "attempts spent"');
  t.same(await db.selectFrom('gpu_leases').selectAll().execute(), [], 'no GPU lease is left');
  t.ok(seen.some((c) => c.status === 'Killed'), 'the hook saw the kills');
});

t.test('each transition writes its event and lease change with it', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  const [id] = await queueRuns(db, 1, 'ev');
  await onlineAgents(db, ['a']);
  const { placed } = await runs.assign([{ id: id!, agent: 'a', gpuIndices: [0], session: 1 }]);
  const lease = Number(placed[0]!.lease);
  t.equal((await db.selectFrom('gpu_leases').selectAll().execute()).length, 1, 'placing leases the GPU');
  t.equal(await runs.startPackaging(id!, lease, 'b'), null, 'another agent with the right lease changes nothing');
  t.ok(await runs.startPackaging(id!, lease, 'a'), 'Packaging');
  t.equal(await runs.startPackaging(id!, lease + 1, 'a'), null, 'a stale lease changes nothing');
  t.ok(await runs.startRunning(id!, lease, 'a'), 'Running');
  t.equal(await runs.endAttempt(id!, lease, 'b', 'Failed', 'boom'), null, 'nor can another agent end it');
  const ended = await runs.endAttempt(id!, lease, 'a', 'Failed', 'boom');
  t.equal(ended?.status, 'Failed', 'Failed');
  t.equal(ended?.agent, 'a', 'the change names the agent that held it');
  t.same(await db.selectFrom('gpu_leases').selectAll().execute(), [], 'the lease went with the transition');
  const events = await db.selectFrom('run_events').select(['status', 'detail']).where('run_id', '=', id!).orderBy('id').execute();
  t.same(events.map((e) => e.status), ['Scheduled', 'Packaging', 'Running', 'Failed'], 'one event per transition');
  t.equal(events[3]!.detail, 'boom', 'the event carries the reason');
});

t.test('a batch placement with one bad row places the others', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  const ids = await queueRuns(db, 3, 'batch');
  const [stale] = await queueRuns(db, 1, 'gone');
  await onlineAgents(db, ['x', 'y']);
  // GPU 0 of agent x is still leased (a leftover): giving it to batch0 must fail alone.
  await db.insertInto('gpu_leases').values({ agent: 'x', gpu_index: 0, run_id: stale!, lease: 1 }).execute();
  const { placed, failed } = await runs.assign([
    { id: ids[0]!, agent: 'x', gpuIndices: [0], session: 1 }, { id: ids[1]!, agent: 'x', gpuIndices: [1], session: 1 }, { id: ids[2]!, agent: 'y', gpuIndices: [0], session: 1 },
  ]);
  t.same(placed.map((p) => p.id).sort(), [ids[1], ids[2]], 'the other two are placed');
  t.same(failed.map((f) => f.id), [ids[0]], 'the bad one is reported');
  const [row] = await db.selectFrom('runs').select(['status', 'agent']).where('id', '=', ids[0]!).execute();
  t.same(row, { status: 'Scheduled', agent: null }, 'and stays queued, unchanged');
});

t.test('the place statement refuses an agent that is not online, not responsive, or registered again', async (t) => {
  // The placer's model of the fleet is kept between passes; the database's guard decides.
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  const ids = await queueRuns(db, 5, 'guard');
  await onlineAgents(db, ['ok', 'draining', 'silent', 'again']);
  await db.updateTable('agents').set({ status: 'draining' }).where('name', '=', 'draining').execute();
  await db.updateTable('agents').set({ unresponsive_since: new Date() }).where('name', '=', 'silent').execute();
  await db.updateTable('agents').set({ session: 2 }).where('name', '=', 'again').execute();
  const { placed, failed } = await runs.assign([
    { id: ids[0]!, agent: 'ok', gpuIndices: [0], session: 1 },
    { id: ids[1]!, agent: 'draining', gpuIndices: [0], session: 1 },
    { id: ids[2]!, agent: 'silent', gpuIndices: [0], session: 1 },
    { id: ids[3]!, agent: 'again', gpuIndices: [0], session: 1 },
    { id: ids[4]!, agent: 'unknown', gpuIndices: [0], session: 1 },
  ]);
  t.same(placed.map((p) => p.id), [ids[0]], 'only the online agent in the registration the placer read gets its run');
  t.same(failed, [], 'the others are refused, not failed');
  const queued = await db.selectFrom('runs').select('id').where('agent', 'is', null).orderBy('id').execute();
  t.same(queued.map((r) => r.id), ids.slice(1).sort(), 'and stay queued');
  t.same((await db.selectFrom('gpu_leases').select('agent').execute()).map((l) => l.agent), ['ok'], 'no lease for a refused one');
});

t.test('the place statement keeps a project\'s rules whatever the placer chose (issue 19)', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  const ids = await queueRuns(db, 6, 'tenant');
  const project = (id: string, p: string) => db.updateTable('runs').set({ project: p, gpus: 0 }).where('id', '=', id).execute();
  const [a1, a2, b1, b2, c1, d1] = ids as [string, string, string, string, string, string];
  for (const [id, p] of [[a1, 'alpha'], [a2, 'alpha'], [b1, 'beta'], [b2, 'beta'], [c1, 'gamma'], [d1, 'delta']] as const) await project(id, p);
  await onlineAgents(db, ['x', 'y', 'pool-a', 'only-delta']);
  await db.updateTable('agents').set({ labels: JSON.stringify({ pool: 'a' }) }).where('name', '=', 'pool-a').execute();
  await db.updateTable('agents').set({ accept_projects: ['delta'] }).where('name', '=', 'only-delta').execute();
  await db.insertInto('project_limits').values([
    { project: 'alpha', max_runs: null, max_gpus: null, exclusive: true },
    { project: 'gamma', max_runs: null, max_gpus: null, agent_labels: JSON.stringify({ pool: 'a' }) },
  ]).execute();
  const place = async (ps: [string, string][]) => (await runs.assign(ps.map(([id, agent]) => ({ id, agent, gpuIndices: [], session: 1 })))).placed.map((p) => p.id).sort();

  // Exclusive alpha and beta sent to one agent in the same statement: neither lands beside the other.
  t.same(await place([[a1, 'x'], [b1, 'x']]), [], 'an exclusive project\'s run and another\'s in one statement: both refused');
  t.same(await place([[a1, 'x'], [a2, 'x']]), [a1, a2].sort(), 'two runs of the exclusive project share the agent');
  t.same(await place([[b1, 'x']]), [], 'another project\'s run is refused beside them');
  t.same(await place([[b1, 'y'], [b2, 'y']]), [b1, b2].sort(), 'and placed on another agent');
  // A binding: gamma may use pool=a agents only.
  t.same(await place([[c1, 'y']]), [], 'a bound project\'s run on an agent outside its labels is refused');
  t.same(await place([[c1, 'pool-a']]), [c1], 'and placed on one inside them');
  // --accept-projects delta.
  // b2 back in the queue (as a requeue would leave it), to be offered to the delta-only agent.
  await db.updateTable('runs').set({ agent: null, status: 'Waiting for resources' }).where('id', '=', b2).execute();
  t.same(await place([[b2, 'only-delta']]), [], 'another project\'s run is refused there');
  t.same(await place([[d1, 'only-delta']]), [d1], 'delta\'s run is placed');
});

// Issue 20 (suspected, confirmed): the ack deadline's requeue had no acked_at guard, so a claim landing
// between the sweep's read and its requeue lost the attempt the agent had just started.
t.test('the ack deadline takes back only a dispatch still unacknowledged', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  const [id] = await queueRuns(db, 1, 'ack');
  await onlineAgents(db, ['a']);
  const { placed } = await runs.assign([{ id: id!, agent: 'a', gpuIndices: [0], session: 1 }]);
  const lease = Number(placed[0]!.lease);
  // The sweep read it unacknowledged; the claim lands before its requeue.
  t.ok(await runs.startPackaging(id!, lease, 'a'), 'claimed');
  t.equal(await runs.requeue(id!, lease, 'dispatch not acknowledged', false, null, { unacked: true }), null, 'the deadline\'s requeue changes nothing');
  const row = await db.selectFrom('runs').select(['status', 'agent']).where('id', '=', id!).executeTakeFirstOrThrow();
  t.same(row, { status: 'Packaging', agent: 'a' }, 'the attempt stays with its agent');
  t.ok(await runs.requeue(id!, lease, 'agent lost', true), 'a requeue without the guard (agent lost) still takes it');
});
