// A gang's members in the placer's model (scheduler/placement/gang.ts): N distinct agents or nothing held,
// and a gang that did not fit leaves the pass's answers for ordinary runs as they were.
import t from 'tap';
import type { AgentCapacity, Request } from '../../scheduler/placement/fleet.js';
import { FleetIndex } from '../../scheduler/placement/fleet-index.js';
import { chooseGang, checkGang, checkPreferSame, memberKey, reserveGang, reservingGang, reservingText } from '../../scheduler/placement/gang.js';
import type { QueuedRun } from '../../scheduler/placement/queue.js';

const gpu = (index: number) => ({ index, uuid: `GPU-${index}`, name: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 });
const agent = (name: string, gpus: number, labels: Record<string, string> = {}, model = 'NVIDIA H100 80GB HBM3'): AgentCapacity => ({
  name, status: 'online', cpus: 16, memoryMb: 64000, labels, gpus: Array.from({ length: gpus }, (_, i) => ({ ...gpu(i), name: model })),
  usedGpus: new Set(), usedCpus: 0, usedMemoryMb: 0, maxRuns: 0, usedRuns: 0,
});
const req = (o: Partial<Request> = {}): Request => ({ gpus: 0, gpuModel: '', gpuMemoryMb: 0, cpus: 0, memoryMb: 0, selector: {}, ...o });

/** chooseGang with the index's own take/release, as the placer's holdings do. */
function place(index: FleetIndex, r: Request) {
  const taken: { agent: string; gpus: number[] }[] = [];
  const c = chooseGang(index, r, undefined, (_rank, m) => { index.take(m.agent, r, m.gpuIndices); taken.push({ agent: m.agent, gpus: m.gpuIndices }); },
    () => { for (const h of taken.splice(0)) index.release(h.agent, r, h.gpus); });
  return { c, taken };
}

t.test('a gang gets N distinct agents, even when one agent could hold two members', async (t) => {
  const index = new FleetIndex([agent('a', 8), agent('b', 8)]);
  const { c } = place(index, req({ gpus: 2, members: 2 }));
  t.ok(c.ok);
  if (c.ok) t.same(c.members.map((m) => m.agent).sort(), ['a', 'b'], 'one member per agent');
});

t.test('a gang that does not fit whole holds nothing, and says why', async (t) => {
  const index = new FleetIndex([agent('a', 2), agent('b', 2), agent('c', 2)]);
  const first = place(index, req({ gpus: 2, members: 2 }));
  t.ok(first.c.ok, 'the first 2-agent gang is placed');
  const second = place(index, req({ gpus: 2, members: 2 }));
  t.notOk(second.c.ok, 'the second does not fit: only one agent is free');
  if (!second.c.ok) t.match(second.c.reason, /waiting for 2 agents at once: 1 of 2 agents free/);
  t.same(second.taken, [], 'and every member it had chosen was given back');
  const free = [...['a', 'b', 'c']].filter((n) => index.get(n)!.usedGpus.size === 0);
  t.equal(free.length, 1, 'the one free agent is free again');
  t.ok(index.choose(req({ gpus: 2 })).ok, 'an ordinary run still fits there in the same pass');
});

t.test('a gang no N agents could ever take is "never"', async (t) => {
  const index = new FleetIndex([agent('a', 2)]);
  const { c } = place(index, req({ gpus: 4, members: 2 }));
  t.notOk(c.ok);
  if (!c.ok) t.equal(c.never, true);
});

t.test('submit-time checks of a gang\'s shape', async (t) => {
  t.throws(() => checkGang(65, 1, 0), /agents must be 1 to 64, got 65/);
  t.throws(() => checkGang(2, 17, 0), /procs_per_agent must be 1 to 16, got 17/);
  t.throws(() => checkGang(2, 2, 3), /3 GPUs per agent is not a multiple of 2/);
  t.doesNotThrow(() => checkGang(2, 2, 4));
  t.equal(memberKey('run_x', 0), 'run_x', 'member 0 is held under the run\'s own id');
  t.equal(memberKey('run_x', 2), 'run_x#2');
});

/** Takes n GPUs on the agent, as a small run placed there would. */
const busy = (index: FleetIndex, name: string, gpus: number[]) => index.take(name, { cpus: 0, memoryMb: 0 }, gpus);
const agentsOf = (c: ReturnType<typeof place>['c']) => (c.ok ? c.members.map((m) => m.agent).sort() : []);

t.test('reservation: the N agents with the most free GPUs, ties by name, then kept where it drains', async (t) => {
  const index = new FleetIndex([agent('a', 2), agent('b', 2), agent('c', 2), agent('d', 2)]);
  busy(index, 'a', [0, 1]); busy(index, 'b', [0]); busy(index, 'c', [0]); busy(index, 'd', [0, 1]);
  const r = req({ gpus: 2, members: 2 });
  t.same(reserveGang(index, r, undefined, []), ['b', 'c'], 'b and c have a GPU free each: they fit it soonest');
  t.same(reserveGang(index, r, undefined, []), ['b', 'c'], 'the same model gives the same agents');
  // c's GPU frees and b's does not: c still first; at equal free GPUs the agents it reserved before win.
  index.release('c', { cpus: 0, memoryMb: 0 }, [0]);
  t.same(reserveGang(index, r, undefined, ['b', 'c']), ['c', 'b']);
  t.same(reserveGang(index, r, undefined, ['a', 'c']), ['c', 'b'], 'free GPUs first: b (1 free) over a (none), reserved before or not');
  const three = { ...r, members: 3 };
  t.same(reserveGang(index, three, undefined, []), ['c', 'b', 'a'], 'a and d have none free: by name');
  t.same(reserveGang(index, three, undefined, ['d']), ['c', 'b', 'd'], 'at a tie, the agent reserved before stays reserved');
  index.holdBack('c');
  t.notOk(reserveGang(index, r, undefined, []).includes('c'), 'an agent held back for someone else (a preempting run) is not reserved');
});

t.test('a reservation keeps small runs off its agents until the gang fits; without one they backfill', async (t) => {
  // 3 agents of 1 GPU, all busy; a 2-agent gang of 1 GPU each waits.
  const index = new FleetIndex([agent('a', 1), agent('b', 1), agent('c', 1)]);
  for (const n of ['a', 'b', 'c']) busy(index, n, [0]);
  const gang = req({ gpus: 1, members: 2 });
  const small = req({ gpus: 1 });
  index.release('a', { cpus: 0, memoryMb: 0 }, [0]);
  t.notOk(place(index, gang).c.ok, 'one agent free: the gang does not fit');
  // No reservation reached: the small run backfills the free agent (the gang holds nothing meanwhile).
  const backfill = index.choose(small);
  t.ok(backfill.ok && backfill.agent === 'a', 'a small run backfills agent a');
  // Reserved instead (the placer holds these back from every other run in the pass):
  index.beginPass();
  const reserved = reserveGang(index, gang, undefined, []);
  t.same(reserved, ['a', 'b'], 'a (free) and then b by name');
  for (const a of reserved) index.holdBack(a);
  t.notOk(index.choose(small).ok, 'a new small run is not placed on a reserved agent');
  index.release('b', { cpus: 0, memoryMb: 0 }, [0]);
  index.beginPass();
  for (const a of reserved) index.holdBack(a);
  t.notOk(index.choose(small).ok, 'b freed too: still not for small runs');
  index.letGo(reserved);
  const c = place(index, gang).c;
  t.same(agentsOf(c), ['a', 'b'], 'the gang itself takes its reserved agents, all at once');
});

t.test('the reserving gang: highest priority, then oldest, among those that waited long enough', async (t) => {
  const q = (id: string, agents: number, priority: number, at: number) => ({ id, agents, priority, created_at: new Date(at) }) as QueuedRun;
  const queue = [q('small', 1, 9, 0), q('g-new', 2, 5, 900), q('g-old', 2, 5, 100), q('g-low', 3, 1, 0), q('g-hi-young', 2, 9, 1000)];
  t.equal(reservingGang(queue, 950), 'g-old', 'g-hi-young has not waited long enough; of priority 5, the oldest');
  t.equal(reservingGang(queue, 1000), 'g-hi-young', 'once it has, the higher priority wins');
  t.equal(reservingGang(queue, 50), 'g-low', 'only g-low has waited that long');
  t.equal(reservingGang([q('small', 1, 0, 0)], 1e12), null, 'ordinary runs never reserve');
  t.match(reservingText(['a', 'b'], Date.UTC(2026, 0, 1, 12, 3, 5)), /^reserving a, b since 12:03:05Z$/);
  t.match(reservingText(Array.from({ length: 10 }, (_, i) => `n${i}`), 0), /n7 and 2 more since/);
});

t.test('--prefer-same: members share the label\'s value when a group fits, the tightest group first', async (t) => {
  const index = new FleetIndex([agent('a', 1, { rack: 'r1' }), agent('b', 1, { rack: 'r2' }), agent('c', 1, { rack: 'r1' }),
    agent('d', 1, { rack: 'r2' }), agent('e', 1, { rack: 'r2' })]);
  const r = req({ gpus: 1, members: 2, preferSame: 'rack' });
  const first = place(index, r).c;
  t.same(agentsOf(first), ['a', 'c'], 'both in rack r1 (2 free there, 3 in r2: the tightest that fits)');
  const second = place(index, r).c;
  t.equal(new Set(agentsOf(second).map((n) => index.get(n)!.labels.rack)).size, 1, 'the next gang is all in r2');
  const third = place(index, req({ gpus: 1, members: 1 }));
  t.ok(third.c.ok);
});

t.test('--prefer-same falls back to mixed values when no single value group fits; agents without the label are mixed only', async (t) => {
  const index = new FleetIndex([agent('a', 1, { rack: 'r1' }), agent('b', 1, { rack: 'r2' }), agent('c', 1)]);
  const c = place(index, req({ gpus: 1, members: 2, preferSame: 'rack' })).c;
  t.ok(c.ok, 'placed across racks rather than waiting');
  t.equal(agentsOf(c).length, 2);
  const none = place(index, req({ gpus: 1, members: 2, preferSame: 'rack' })).c;
  t.notOk(none.ok, 'one agent left: it waits, holding nothing');
});

t.test('members share a GPU model by default; mixed only when no one model fits; a named model pins it', async (t) => {
  const index = new FleetIndex([agent('a', 1, {}, 'NVIDIA A100-SXM4-80GB'), agent('b', 1, {}, 'NVIDIA H100 80GB HBM3'),
    agent('c', 1, {}, 'NVIDIA A100-SXM4-80GB'), agent('d', 1, {}, 'NVIDIA L4')]);
  const c = place(index, req({ gpus: 1, members: 2 })).c;
  t.same(agentsOf(c), ['a', 'c'], 'the two A100 agents, not the first two of any model');
  const mixed = place(index, req({ gpus: 1, members: 2 })).c;
  t.same(agentsOf(mixed), ['b', 'd'], 'then H100 + L4: mixed rather than waiting for ever');
  const cpuOnly = new FleetIndex([agent('x', 1, {}, 'A'), agent('y', 1, {}, 'B')]);
  t.ok(place(cpuOnly, req({ gpus: 0, members: 2 })).c.ok, 'a gang without GPUs has no model to share');
  const pinned = new FleetIndex([agent('p', 1, {}, 'NVIDIA A100-SXM4-80GB'), agent('q', 1, {}, 'NVIDIA A100-PCIE-40GB')]);
  t.ok(place(pinned, req({ gpus: 1, members: 2, gpuModel: 'A100' })).c.ok, '--gpu-model A100 already pins the model: both A100 variants serve');
});

t.test('--prefer-same and the GPU model together: both shared first, then the label alone', async (t) => {
  const index = new FleetIndex([agent('a', 1, { rack: 'r1' }, 'A100'), agent('b', 1, { rack: 'r1' }, 'H100'),
    agent('c', 1, { rack: 'r2' }, 'H100'), agent('d', 1, { rack: 'r2' }, 'H100')]);
  t.same(agentsOf(place(index, req({ gpus: 1, members: 2, preferSame: 'rack' })).c), ['c', 'd'], 'r2: same rack and model');
  t.same(agentsOf(place(index, req({ gpus: 1, members: 2, preferSame: 'rack' })).c), ['a', 'b'], 'then r1, same rack, mixed models');
});

t.test('--prefer-same: submit-time checks', async (t) => {
  t.doesNotThrow(() => checkPreferSame('', 1), 'none given');
  t.doesNotThrow(() => checkPreferSame('rack', 2));
  t.throws(() => checkPreferSame('rack', 1), /prefer_same is for multi-agent runs/);
  t.throws(() => checkPreferSame('a=b', 2), /is not a label key/);
  t.throws(() => checkPreferSame(' rack', 2), /is not a label key/);
  t.throws(() => checkPreferSame('x'.repeat(129), 2), /is not a label key/);
});
