// The queue's order and caps, on a real Postgres: priority, then fair share between projects, then age;
// per-project caps on runs and GPUs.
import t from 'tap';
import { sql } from 'kysely';
import { testDatabase } from '../helpers/stack.js';
import { queueHead, projectCaps, overLimit } from '../../scheduler/placement/queue.js';
import { FleetIndex } from '../../scheduler/placement/fleet-index.js';
import { FleetCache } from '../../scheduler/placement/fleet-cache.js';
import type { AgentCapacity } from '../../scheduler/placement/fleet.js';
import type { Db } from '../../scheduler/db/database.js';

/** What the placer reads: the queue's head, given what each project runs now (from its model of the fleet). */
async function queueHeadNow(db: Db, n: number) {
  const cache = new FleetCache();
  await cache.sync(db);
  return queueHead(db, n, cache.runningByProject());
}

async function queue(db: Awaited<ReturnType<typeof testDatabase>>['db'], project: string, n: number, o: { priority?: number; placedOn?: string } = {}) {
  const base = Date.now();
  for (let i = 0; i < n; i++) {
    await db.insertInto('runs').values({
      id: `${project}-${o.placedOn ? 'p' : 'q'}${String(i).padStart(5, '0')}`, project, priority: o.priority ?? 0,
      package: 'p', package_major: 1, package_minor: 0, package_object_key: 'k', dataset: 'd', dataset_sub: '',
      gpus: 0, gpu_model: '', gpu_memory_mb: 0, cpus: 0, memory_mb: 0, selector: '{}', env: '{}', timeout_seconds: 0, max_attempts: 2,
      agent: o.placedOn ?? null, lease: o.placedOn ? i + 1 : null,
      created_at: new Date(base + i) as never,
    } as never).execute();
  }
}

t.test('fair share: a project with many queued runs does not starve one with few', async (t) => {
  const { db } = await testDatabase(t);
  await queue(db, 'big', 300);
  await queue(db, 'small', 3);
  const head = await queueHeadNow(db, 10);
  t.same(head.slice(0, 6).map((r) => r.project).sort(), ['big', 'big', 'big', 'small', 'small', 'small'],
    'the three small runs are among the first six, not behind 300 big ones');
  t.equal(head[0]!.project, 'big', 'ties go to the older run');
});

t.test('a project already running a lot waits behind one running little', async (t) => {
  const { db } = await testDatabase(t);
  await queue(db, 'busy', 5, { placedOn: 'a1' });
  await queue(db, 'busy', 5);
  await queue(db, 'idle', 5);
  const head = await queueHeadNow(db, 5);
  t.same(head.map((r) => r.project), ['idle', 'idle', 'idle', 'idle', 'idle']);
});

t.test('priority comes before fair share', async (t) => {
  const { db } = await testDatabase(t);
  await queue(db, 'a', 3);
  await queue(db, 'urgent', 1, { priority: 10 });
  const head = await queueHeadNow(db, 4);
  t.equal(head[0]!.project, 'urgent');
});

t.test('per-project caps on runs and GPUs', async (t) => {
  const { db } = await testDatabase(t);
  await db.insertInto('project_limits').values({ project: 'capped', max_runs: 2, max_gpus: 4 }).execute();
  await queue(db, 'capped', 2, { placedOn: 'a1' });
  const cache = new FleetCache();
  await cache.sync(db);
  const caps = await projectCaps(db);
  t.same(cache.running('capped'), { runs: 2, gpus: 0 }, 'the model counts what the project runs');
  t.match(overLimit('capped', cache.running('capped'), caps.get('capped'), 0), /project capped is at its limit of 2 concurrent runs/);
  t.equal(overLimit('free', cache.running('free'), caps.get('free'), 8), null, 'no cap, no limit');
  await sql`UPDATE project_limits SET max_runs = NULL`.execute(db);
  const again = await projectCaps(db);
  t.equal(overLimit('capped', cache.running('capped'), again.get('capped'), 4), null, 'four GPUs fit a cap of four');
  t.match(overLimit('capped', { runs: 2, gpus: 1 }, again.get('capped'), 4), /at its limit of 4 GPUs/);
});

t.test('the fleet index: best fit, and reservation against fragmentation', async (t) => {
  const agent = (name: string, gpus: number, used: number[] = []): AgentCapacity => ({
    name, status: 'online', cpus: 64, memoryMb: 512000, labels: {}, usedCpus: 0, usedMemoryMb: 0, maxRuns: 0, usedRuns: used.length, usedGpus: new Set(used),
    gpus: Array.from({ length: gpus }, (_, i) => ({ index: i, uuid: `${name}-${i}`, name: 'NVIDIA H100', memoryMb: 81559 })),
  });
  const req = (gpus: number) => ({ gpus, gpuModel: '', gpuMemoryMb: 0, cpus: 0, memoryMb: 0, selector: {} });
  const idx = new FleetIndex([agent('eight', 8), agent('two-left', 8, [0, 1, 2, 3, 4, 5])]);
  const one = idx.choose(req(1));
  t.ok(one.ok && one.agent === 'two-left', 'a 1-GPU run goes where the fewest GPUs stay free');

  // A blocked 8-GPU request reserves the emptiest agent: later 1-GPU runs must not fragment it.
  const busy = new FleetIndex([agent('a', 8, [0]), agent('b', 8, [0, 1])]);
  t.notOk(busy.choose(req(8)).ok);
  t.equal(busy.reserveFor(req(8)), 'a', 'the agent closest to fitting is held back');
  const small = busy.choose(req(1));
  t.ok(small.ok && small.agent === 'b', 'small runs go elsewhere meanwhile');

});
