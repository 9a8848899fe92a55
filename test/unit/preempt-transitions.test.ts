// Issue 22: preemption's transitions on a real Postgres (scheduler/runs/transitions.ts): `preempt` is all or
// nothing and guarded in SQL (preemptible project, lower priority, past --min-runtime, still Running on the
// attempt seen); an agent held for the preempting run takes no other run; a preempted attempt's end
// requeues it without spending an attempt, unless a kill was asked.
import t from 'tap';
import { sql } from 'kysely';
import { testDatabase } from '../helpers/stack.js';
import { RunTransitions } from '../../scheduler/runs/transitions.js';
import type { Db } from '../../scheduler/db/database.js';

async function queue(db: Db, id: string, o: { priority?: number; project?: string; maxAttempts?: number } = {}): Promise<string> {
  await db.insertInto('runs').values({
    id, package: 'p', package_major: 1, package_minor: 0, package_object_key: 'k', dataset: 'd', gpus: 1, selector: '{}', env: '{}',
    max_attempts: o.maxAttempts ?? 2, timeout_seconds: 0, priority: o.priority ?? 0, project: o.project ?? 'low',
  }).execute();
  return id;
}

/** A run placed on `agent` (GPU `gpu`) and Running since `agoS` seconds; returns its lease. */
async function running(db: Db, runs: RunTransitions, id: string, agent: string, gpu: number, agoS: number): Promise<number> {
  const { placed } = await runs.assign([{ id, agent, gpuIndices: [gpu], session: 1 }]);
  const lease = Number(placed[0]!.lease);
  await runs.startPackaging(id, lease, agent);
  await runs.startRunning(id, lease, agent);
  await sql`UPDATE runs SET running_at = now() - make_interval(secs => ${agoS}) WHERE id = ${id}`.execute(db);
  return lease;
}

t.test('preempt: all or nothing, guarded in SQL; the hold keeps other runs off the agent; the requeue spends no attempt', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  await db.insertInto('agents').values(['box', 'spare'].map((name) => ({ name, status: 'online' as const, session: 1, cpus: 8, memory_mb: 1000 }))).execute();
  await db.insertInto('project_limits').values([{ project: 'low', max_runs: null, max_gpus: null, preemptible: true }, { project: 'keep', max_runs: null, max_gpus: null }]).execute();
  const v1 = await queue(db, 'run_v1', { maxAttempts: 1 });
  const v2 = await queue(db, 'run_v2');
  const kept = await queue(db, 'run_keep', { project: 'keep' });
  const young = await queue(db, 'run_young');
  const l1 = await running(db, runs, v1, 'box', 0, 120);
  const l2 = await running(db, runs, v2, 'box', 1, 120);
  const lk = await running(db, runs, kept, 'box', 2, 120);
  const ly = await running(db, runs, young, 'box', 3, 5);
  const urgent = await queue(db, 'run_urgent', { priority: 5, project: 'high' });
  const peer = await queue(db, 'run_peer', { priority: 0, project: 'high' });

  t.same(await runs.preempt(peer, 'box', [{ id: v1, lease: l1 }], 60), [], 'an equal priority preempts nothing');
  t.same(await runs.preempt(urgent, 'box', [{ id: v1, lease: l1 }, { id: kept, lease: lk }], 60), [], 'one victim of a non-preemptible project: nothing at all');
  t.same(await runs.preempt(urgent, 'box', [{ id: young, lease: ly }], 60), [], 'a run younger than --min-runtime: nothing');
  t.same(await runs.preempt(urgent, 'box', [{ id: v1, lease: l1 + 100 }], 60), [], 'an attempt that is no longer the one seen: nothing');
  t.same(await runs.preempt(urgent, 'spare', [{ id: v1, lease: l1 }], 60), [], 'a run not on that agent: nothing');
  t.same((await db.selectFrom('runs').select('id').where('preempted_by', 'is not', null).execute()), [], 'no run was marked by a refused preemption');
  t.equal((await db.selectFrom('run_preemptions').selectAll().execute()).length, 0, 'nor recorded');

  const marked = await runs.preempt(urgent, 'box', [{ id: v1, lease: l1 }], 60);
  t.same(marked.map((m) => m.id), [v1], 'the victim is marked');
  t.same(await runs.preempt(urgent, 'box', [{ id: v2, lease: l2 }], 60), [], 'a run holding an agent already preempts no more');
  const [u] = await db.selectFrom('runs').select(['reserved_agent']).where('id', '=', urgent).execute();
  t.equal(u?.reserved_agent, 'box', 'the preempting run holds the agent');
  const ev = await db.selectFrom('events').select(['kind', 'subject', 'detail']).where('kind', '=', 'run.preempted').execute();
  t.same(ev, [{ kind: 'run.preempted', subject: v1, detail: `preempted by ${urgent} on agent box` }], 'one run.preempted event, written with it');

  // The agent is held: another queued run is refused there, the held run is not.
  const other = await queue(db, 'run_other');
  t.same((await runs.assign([{ id: other, agent: 'box', gpuIndices: [4], session: 1 }])).placed, [], 'another run is not placed on the held agent');
  t.equal((await runs.assign([{ id: other, agent: 'spare', gpuIndices: [0], session: 1 }])).placed.length, 1, 'it is placed elsewhere');

  // The victim's attempt ends (its agent reports Killed): requeued, "preempted by", no attempt spent.
  const back = await runs.requeuePreempted(v1, l1, 'box');
  t.match(back, { status: 'Waiting for resources', detail: `preempted by ${urgent}`, freed: true });
  const [row] = await db.selectFrom('runs').select(['lost_attempts', 'preempted_by', 'agent', 'status']).where('id', '=', v1).execute();
  t.same(row, { lost_attempts: 0, preempted_by: null, agent: null, status: 'Waiting for resources' }, 'queued again, with --max-attempts 1 untouched');
  t.same(await db.selectFrom('gpu_leases').select('gpu_index').where('run_id', '=', v1).execute(), [], 'its GPU lease is gone');
  t.equal(await runs.requeuePreempted(v1, l1, 'box'), null, 'a second report changes nothing');

  const placed = await runs.assign([{ id: urgent, agent: 'box', gpuIndices: [0], session: 1 }]);
  t.equal(placed.placed.length, 1, 'the held run is placed on its agent');
  t.equal((await db.selectFrom('runs').select('reserved_agent').where('id', '=', urgent).executeTakeFirst())?.reserved_agent, null, 'the hold ends with the placement');

  // A kill asked while a victim stops wins: it ends Killed, not requeued.
  const urgent2 = await queue(db, 'run_urgent2', { priority: 5, project: 'high' });
  t.equal((await runs.preempt(urgent2, 'box', [{ id: v2, lease: l2 }], 60)).length, 1);
  await runs.kill(v2);
  t.equal(await runs.requeuePreempted(v2, l2, 'box'), null, 'a killed victim is not requeued');
});
