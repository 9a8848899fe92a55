// The partial-gang invariant (scheduler/invariants.ts, issue 24): a gang run holds every member's GPUs or
// none. Gangs placed by the real place statement are healthy; a lease taken away from one member, a member
// row missing, and a lease left on a gang that is queued again are each flagged, by the sweep's check and
// by partialGangs() (what the soak samples).
import t from 'tap';
import pino from 'pino';
import { testDatabase } from '../helpers/stack.js';
import { RunTransitions } from '../../scheduler/runs/transitions.js';
import { Invariants, ViolationKind, partialGangs } from '../../scheduler/invariants.js';

t.test('a gang holding GPUs on only some of its members is flagged; whole gangs are not', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  const ids = ['whole', 'short-lease', 'short-member', 'requeued', 'single'];
  await db.insertInto('runs').values(ids.map((id) => ({
    id, package: 'p', package_major: 1, package_minor: 0, package_object_key: 'k', dataset: 'd', gpus: 1,
    selector: '{}', env: '{}', max_attempts: 3, timeout_seconds: 0, agents: id === 'single' ? 1 : 2,
  }))).execute();
  const agents = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'];
  await db.insertInto('agents').values(agents.map((name) => ({ name, status: 'online', session: 1, cpus: 8, memory_mb: 1000 }))).execute();
  const place = async (id: string, on: string[]) => {
    const p = await runs.assignGang(id, on.map((agent) => ({ agent, gpuIndices: [0], session: 1 })));
    t.ok(p, `${id} placed on ${on.join(', ')}`);
    return Number(p!.lease);
  };
  await place('whole', ['a', 'b']);
  await place('short-lease', ['c', 'd']);
  await place('short-member', ['e', 'f']);
  const requeuedLease = await place('requeued', ['g', 'h']);
  await runs.assign([{ id: 'single', agent: 'i', gpuIndices: [0], session: 1 }]);
  t.same(await partialGangs(db), [], 'gangs placed by the place statement hold all their members\' GPUs');

  // The bad rows: a member's GPU lease gone, a member row gone (its lease kept), and the gang requeued
  // with one member's lease left behind (written back, as a bug that forgot it would leave it).
  await db.deleteFrom('gpu_leases').where('run_id', '=', 'short-lease').where('agent', '=', 'd').execute();
  await db.deleteFrom('run_members').where('run_id', '=', 'short-member').execute();
  t.ok(await runs.requeue('requeued', requeuedLease, 'agent lost', true), 'requeued');
  await db.insertInto('gpu_leases').values({ agent: 'h', gpu_index: 0, run_id: 'requeued', lease: requeuedLease }).execute();

  const found = Object.fromEntries((await partialGangs(db)).map((g) => [g.id, g.detail]));
  t.same(Object.keys(found).sort(), ['requeued', 'short-lease', 'short-member'], 'each partial gang, and only those');
  t.match(found['short-lease'], /GPU leases on 1 agents for its 2 members \(1 GPUs of 2\)/, 'says what it holds against what it should');
  t.match(found['short-member'], /1 members current/, 'a member row missing');
  t.match(found.requeued, /placed nowhere/, 'a queued gang holding a GPU');

  const inv = new Invariants({ db, runs, log: pino({ level: 'silent' }), agentLostAfterMs: 15_000 });
  const seen = (await inv.check({ repair: false, judgeSilence: false })).filter((v) => v.kind === ViolationKind.PartialGang);
  t.same(seen.map((v) => v.runId).sort(), ['requeued', 'short-lease', 'short-member'], 'the sweep (and doctor) report them as partial_gang');
  t.ok(seen.every((v) => !v.repaired), 'reported only');
});
