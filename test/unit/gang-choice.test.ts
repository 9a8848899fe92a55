// A gang's members in the placer's model (scheduler/placement/gang.ts): N distinct agents or nothing held,
// and a gang that did not fit leaves the pass's answers for ordinary runs as they were.
import t from 'tap';
import type { AgentCapacity, Request } from '../../scheduler/placement/fleet.js';
import { FleetIndex } from '../../scheduler/placement/fleet-index.js';
import { chooseGang, checkGang, memberKey } from '../../scheduler/placement/gang.js';

const gpu = (index: number) => ({ index, uuid: `GPU-${index}`, name: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 });
const agent = (name: string, gpus: number): AgentCapacity => ({
  name, status: 'online', cpus: 16, memoryMb: 64000, labels: {}, gpus: Array.from({ length: gpus }, (_, i) => gpu(i)),
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
