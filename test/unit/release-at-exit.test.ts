// Issue 22 on a real Postgres: the "released" report (scheduler/runs/transitions.ts releaseCapacity) gives a
// Running attempt's GPUs and slot back, fenced like every report; the fleet read no longer counts the run;
// the GPU can be placed again while the run is still Running; the run's end (success, failure, agent lost)
// then frees nothing twice. And the "checkpointed" report (scheduler/runs/checkpoint-report.ts): fenced,
// its time read by preemption (the victim with the newer checkpoint loses least), its bytes counted in the
// project's storage.
import t from 'tap';
import { sql } from 'kysely';
import { testDatabase } from '../helpers/stack.js';
import { RunTransitions, type Changed } from '../../scheduler/runs/transitions.js';
import { loadFleet } from '../../scheduler/placement/load-fleet.js';
import { readCandidates } from '../../scheduler/placement/preemption-reads.js';
import { chooseVictims } from '../../scheduler/placement/preemption.js';
import type { AgentCapacity, Request } from '../../scheduler/placement/fleet.js';
import { recordCheckpoint, checkpointsDeleted } from '../../scheduler/runs/checkpoint-report.js';
import { storageOf } from '../../scheduler/storage/quota.js';
import type { Db } from '../../scheduler/db/database.js';

async function queue(db: Db, id: string, o: { priority?: number; project?: string } = {}): Promise<string> {
  await db.insertInto('runs').values({
    id, package: 'p', package_major: 1, package_minor: 0, package_object_key: 'k', dataset: 'd', gpus: 1, selector: '{}', env: '{}',
    max_attempts: 2, timeout_seconds: 0, priority: o.priority ?? 0, project: o.project ?? 'default',
  }).execute();
  return id;
}

async function running(runs: RunTransitions, id: string, agent: string, gpu: number): Promise<number> {
  const { placed } = await runs.assign([{ id, agent, gpuIndices: [gpu], session: 1 }]);
  const lease = Number(placed[0]!.lease);
  await runs.startPackaging(id, lease, agent);
  await runs.startRunning(id, lease, agent);
  return lease;
}

t.test('released at process exit: fenced, counted by no one, the GPU placed again, and the end frees nothing twice', async (t) => {
  const { db } = await testDatabase(t);
  const seen: Changed[] = [];
  const runs = new RunTransitions(db, (c) => seen.push(c));
  await db.insertInto('agents').values([{ name: 'box', status: 'online' as const, session: 1, cpus: 8, memory_mb: 1000, max_runs: 1 }]).execute();
  await db.insertInto('agent_gpus').values([{ agent: 'box', index: 0, uuid: 'GPU-0', name: 'H100', memory_mb: 81559 }]).execute();
  const first = await queue(db, 'run_first');
  const lease = await running(runs, first, 'box', 0);

  t.equal(await runs.releaseCapacity(first, lease, 'other'), null, 'another agent cannot release it');
  t.equal(await runs.releaseCapacity(first, lease + 1, 'box'), null, 'nor a stale lease');
  const before = await loadFleet(db);
  t.same(before.holdings.map((h) => h.run), [first], 'before: the run holds its capacity');
  const released = await runs.releaseCapacity(first, lease, 'box');
  t.match(released, { status: 'Running', freed: true, lease }, 'released: still Running, capacity freed (the placer is told)');
  t.equal(await runs.releaseCapacity(first, lease, 'box'), null, 'a second report changes nothing');
  t.same(await db.selectFrom('gpu_leases').selectAll().execute(), [], 'its GPU lease is gone');
  const after = await loadFleet(db);
  t.same(after.holdings, [], 'the fleet read counts no holding for it');
  t.same([...after.agents[0]!.usedGpus], [], 'nor its GPU');
  t.equal(after.agents[0]!.usedRuns, 0, 'nor its slot');
  t.match((await db.selectFrom('runs').select(['status', 'status_detail']).where('id', '=', first).executeTakeFirst()), { status: 'Running', status_detail: /uploading/ });

  // The next run gets GPU 0 while the first still uploads; invariants see nothing wrong.
  const second = await queue(db, 'run_second');
  const { placed } = await runs.assign([{ id: second, agent: 'box', gpuIndices: [0], session: 1 }]);
  t.equal(placed.length, 1, 'the next run is placed on the same GPU');
  const [noMissing] = (await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs r, unnest(r.gpu_indices) g WHERE r.id = ${first}
    AND NOT EXISTS (SELECT 1 FROM gpu_leases l WHERE l.run_id = r.id)`.execute(db)).rows;
  t.equal(noMissing?.n, 1, 'the first still shows its GPU (run get) without a lease');

  // The first's upload then fails: it ends Failed, and the second's lease is untouched.
  t.ok(await runs.endAttempt(first, lease, 'box', 'Failed', 'upload failed'), 'the first ends Failed');
  t.same(await db.selectFrom('gpu_leases').select(['run_id', 'gpu_index']).execute(), [{ run_id: second, gpu_index: 0 }], 'GPU 0 stays leased to the second');

  // Lost while uploading: requeued as before; a new placement holds capacity again (released_at cleared).
  const l2 = Number(placed[0]!.lease);
  await runs.startPackaging(second, l2, 'box');
  await runs.startRunning(second, l2, 'box');
  await runs.releaseCapacity(second, l2, 'box');
  t.match(await runs.requeue(second, l2, 'agent box lost', true), { status: 'Waiting for resources' }, 'an agent lost while uploading: requeued');
  const again = await runs.assign([{ id: second, agent: 'box', gpuIndices: [0], session: 1 }]);
  t.equal(again.placed.length, 1, 'placed again');
  const row = await db.selectFrom('runs').select(['released_at']).where('id', '=', second).executeTakeFirst();
  t.equal(row?.released_at, null, 'the new attempt holds its capacity');
  t.same((await loadFleet(db)).holdings.map((h) => h.run), [second], 'and the fleet read counts it');
});

t.test('a gang run gives nothing back at its rank 0\'s exit: its leases are every member\'s', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  await db.insertInto('agents').values([{ name: 'box', status: 'online' as const, session: 1, cpus: 8, memory_mb: 1000, max_runs: 1 }]).execute();
  await db.insertInto('agent_gpus').values([{ agent: 'box', index: 0, uuid: 'GPU-0', name: 'H100', memory_mb: 81559 }]).execute();
  const id = await queue(db, 'run_gang');
  const lease = await running(runs, id, 'box', 0);
  // A two-agent gang (migrations/035) whose rank 0 is here; its other member's leases are the run's too.
  await db.updateTable('runs').set({ agents: 2 }).where('id', '=', id).execute();
  t.equal(await runs.releaseCapacity(id, lease, 'box'), null, 'the release is refused');
  const r = await db.selectFrom('runs').select(['released_at']).where('id', '=', id).executeTakeFirstOrThrow();
  t.equal(r.released_at, null, 'not marked released');
  const leases = await db.selectFrom('gpu_leases').selectAll().where('run_id', '=', id).execute();
  t.equal(leases.length, 1, 'its GPU lease stays');
});

t.test('a reported checkpoint: fenced, and the victim with the newer checkpoint is the one preempted', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  await db.insertInto('agents').values([{ name: 'box', status: 'online' as const, session: 1, cpus: 8, memory_mb: 1000 }]).execute();
  await db.insertInto('project_limits').values([{ project: 'low', max_runs: null, max_gpus: null, preemptible: true }]).execute();
  const older = await queue(db, 'run_old_ckpt', { project: 'low' });
  const newer = await queue(db, 'run_new_ckpt', { project: 'low' });
  const lo = await running(runs, older, 'box', 0);
  const ln = await running(runs, newer, 'box', 1);
  // Without checkpoints the one started later would lose least (it would be the victim).
  await sql`UPDATE runs SET running_at = now() - interval '2 hours' WHERE id = ${older}`.execute(db);
  await sql`UPDATE runs SET running_at = now() - interval '1 hour' WHERE id = ${newer}`.execute(db);
  const now = Date.now() / 1000;
  t.equal(await recordCheckpoint(db, newer, ln + 100, 'box', now - 60, 10), false, 'a stale lease records nothing');
  t.equal(await recordCheckpoint(db, newer, ln, 'other', now - 60, 10), false, 'nor another agent');
  t.ok(await recordCheckpoint(db, older, lo, 'box', now - 60, 1000), 'the run started first checkpointed a minute ago');
  t.ok(await recordCheckpoint(db, newer, ln, 'box', now - 1800, 500), 'the one started later, half an hour ago');
  const candidates = (await readCandidates(db, 60)).get('box') ?? [];
  t.equal(candidates.length, 2, 'both are candidates');
  t.ok(candidates.every((c) => c.checkpointAt !== null), 'each with the checkpoint time its agent reported');
  const gpu = (index: number) => ({ index, uuid: `GPU-${index}`, name: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 });
  const box: AgentCapacity = {
    name: 'box', status: 'online', cpus: 16, memoryMb: 64000, labels: {}, gpus: [gpu(0), gpu(1)], usedGpus: new Set([0, 1]),
    usedCpus: 0, usedMemoryMb: 0, maxRuns: 0, usedRuns: 2,
  };
  const req: Request = { gpus: 1, gpuModel: '', gpuMemoryMb: 0, cpus: 0, memoryMb: 0, selector: {} };
  const plan = chooseVictims(req, 5, [box], new Map([['box', candidates]]), Date.now());
  t.same(plan?.victims.map((v) => v.id), [older], 'the run with the newer checkpoint is preempted, though it started first');
});

t.test('checkpoint bytes count in the project\'s storage: the newest per attempt, and none after retention', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  await db.insertInto('agents').values([{ name: 'box', status: 'online' as const, session: 1, cpus: 8, memory_mb: 1000 }]).execute();
  const id = await queue(db, 'run_ckpt', { project: 'p1' });
  const l1 = await running(runs, id, 'box', 0);
  t.equal((await storageOf(db, 'p1')).used, 0, 'nothing held yet');
  await recordCheckpoint(db, id, l1, 'box', Date.now() / 1000, 1000);
  t.equal((await storageOf(db, 'p1')).used, 1000, 'a checkpoint counts');
  await recordCheckpoint(db, id, l1, 'box', Date.now() / 1000, 1500);
  t.equal((await storageOf(db, 'p1')).used, 1500, 'a newer one of the same attempt replaces it (the agent removed the older)');
  await runs.requeue(id, l1, 'agent lost', true);
  const l2 = await running(runs, id, 'box', 0);
  await recordCheckpoint(db, id, l2, 'box', Date.now() / 1000, 200);
  t.equal((await storageOf(db, 'p1')).used, 1700, 'a later attempt\'s adds to what the earlier attempt left');
  await checkpointsDeleted(db, id);
  t.equal((await storageOf(db, 'p1')).used, 0, 'deleted after success: nothing held');
});
