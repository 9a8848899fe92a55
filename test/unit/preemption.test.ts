// Issue 22: which runs the placer preempts for a run that nothing free can take (scheduler/placement/
// preemption.ts), on the pure fleet model: the least work lost, never more victims than needed, only lower
// priorities, and a held agent's hold is kept from other runs (fleet-index.ts holdBack/chooseOn).
import t from 'tap';
import type { AgentCapacity, Request } from '../../scheduler/placement/fleet.js';
import { FleetIndex } from '../../scheduler/placement/fleet-index.js';
import { chooseVictims, type Candidate } from '../../scheduler/placement/preemption.js';
import { workLostMs } from '../../scheduler/placement/work-lost.js';

const NOW = Date.parse('2026-12-05T12:00:00Z');
const gpu = (index: number) => ({ index, uuid: `GPU-${index}`, name: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 });
const req = (o: Partial<Request> = {}): Request => ({ gpus: 0, gpuModel: '', gpuMemoryMb: 0, cpus: 0, memoryMb: 0, selector: {}, ...o });
/** An agent whose every GPU is held by `runs` (each with its GPU indices). */
function agent(name: string, nGpus: number, runs: Candidate[], o: Partial<AgentCapacity> = {}): AgentCapacity {
  const usedGpus = new Set(runs.flatMap((r) => r.gpuIndices));
  return {
    name, status: 'online', cpus: 16, memoryMb: 64000, labels: {}, gpus: Array.from({ length: nGpus }, (_, i) => gpu(i)), usedGpus,
    usedCpus: runs.reduce((s, r) => s + r.cpus, 0), usedMemoryMb: runs.reduce((s, r) => s + r.memoryMb, 0), maxRuns: 0, usedRuns: runs.length, ...o,
  };
}
/** A run started `minutesAgo` (checkpointed `checkpointMinutesAgo`, if given). */
function run(id: string, agentName: string, gpuIndices: number[], minutesAgo: number, o: Partial<Candidate> & { checkpointMinutesAgo?: number } = {}): Candidate {
  const { checkpointMinutesAgo, ...rest } = o;
  return {
    id, lease: 1, agent: agentName, priority: 0, cpus: 0, memoryMb: 0, gpuIndices, runningAt: new Date(NOW - minutesAgo * 60_000),
    checkpointAt: checkpointMinutesAgo === undefined ? null : new Date(NOW - checkpointMinutesAgo * 60_000), ...rest,
  };
}
const byAgent = (cs: Candidate[]) => {
  const m = new Map<string, Candidate[]>();
  for (const c of cs) m.set(c.agent, [...(m.get(c.agent) ?? []), c]);
  return m;
};

t.test('work lost: time since the newest checkpoint if known, else since the start', async (t) => {
  t.equal(workLostMs(run('a', 'x', [], 60), NOW), 60 * 60_000, 'no checkpoint: the whole runtime');
  t.equal(workLostMs(run('a', 'x', [], 60, { checkpointMinutesAgo: 5 }), NOW), 5 * 60_000, 'a checkpoint 5 minutes ago: 5 minutes');
});

t.test('among several candidates, the one losing the least work is preempted, and only one', async (t) => {
  const runs = [run('long', 'box', [0], 300), run('short', 'box', [1], 20), run('mid', 'box', [2], 90)];
  const plan = chooseVictims(req({ gpus: 1 }), 5, [agent('box', 3, runs)], byAgent(runs), NOW);
  t.same(plan?.victims.map((v) => v.id), ['short'], 'the shortest-running run, alone');
  t.equal(plan?.agent, 'box');

  const checkpointed = [run('long', 'box', [0], 300, { checkpointMinutesAgo: 2 }), run('short', 'box', [1], 20)];
  const p2 = chooseVictims(req({ gpus: 1 }), 5, [agent('box', 2, checkpointed)], byAgent(checkpointed), NOW);
  t.same(p2?.victims.map((v) => v.id), ['long'], 'a long run checkpointed 2 minutes ago loses less than a 20-minute one without');
});

t.test('never more victims than needed: a two-GPU request stops two one-GPU runs, not three', async (t) => {
  const runs = [run('a', 'box', [0], 10), run('b', 'box', [1], 20), run('c', 'box', [2], 30), run('d', 'box', [3], 40)];
  const plan = chooseVictims(req({ gpus: 2 }), 1, [agent('box', 4, runs)], byAgent(runs), NOW);
  t.same(plan?.victims.map((v) => v.id).sort(), ['a', 'b']);

  // A run that frees nothing the request needs (it holds no GPU) is never a victim, even if it loses least.
  const mixed = [run('cpu-only', 'box', [], 1), run('g0', 'box', [0], 50)];
  const p2 = chooseVictims(req({ gpus: 1 }), 1, [agent('box', 1, mixed)], byAgent(mixed), NOW);
  t.same(p2?.victims.map((v) => v.id), ['g0'], 'the CPU-only run is left alone');
});

t.test('only lower priorities; the agent that loses least overall wins', async (t) => {
  const same = [run('peer', 'box', [0], 5, { priority: 3 })];
  t.equal(chooseVictims(req({ gpus: 1 }), 3, [agent('box', 1, same)], byAgent(same), NOW), null, 'an equal priority is never preempted');
  const higher = [run('boss', 'box', [0], 5, { priority: 9 })];
  t.equal(chooseVictims(req({ gpus: 1 }), 3, [agent('box', 1, higher)], byAgent(higher), NOW), null, 'nor a higher one');

  const runs = [run('x1', 'x', [0], 10), run('x2', 'x', [1], 10), run('y1', 'y', [0, 1], 15)];
  const plan = chooseVictims(req({ gpus: 2 }), 1, [agent('x', 2, runs.slice(0, 2)), agent('y', 2, runs.slice(2))], byAgent(runs), NOW);
  t.equal(plan?.agent, 'y', 'one run of 15 minutes loses less than two of 10');
  t.same(plan?.victims.map((v) => v.id), ['y1']);

  const offline = chooseVictims(req({ gpus: 1 }), 1, [agent('x', 2, runs.slice(0, 2), { status: 'draining' })], byAgent(runs), NOW);
  t.equal(offline, null, 'an agent that takes no runs is not preempted on');
  const tooSmall = chooseVictims(req({ gpus: 4 }), 1, [agent('x', 2, runs.slice(0, 2))], byAgent(runs), NOW);
  t.equal(tooSmall, null, 'an agent that could never hold the request is not preempted on');
});

t.test('slots and memory count: a CPU run preempts on a box whose run slots are full', async (t) => {
  const runs = [run('a', 'box', [], 30, { cpus: 2, memoryMb: 1000 }), run('b', 'box', [], 10, { cpus: 2, memoryMb: 1000 })];
  const plan = chooseVictims(req({ cpus: 2 }), 1, [agent('box', 0, runs, { maxRuns: 2 })], byAgent(runs), NOW);
  t.same(plan?.victims.map((v) => v.id), ['b'], 'one slot freed, by the run that loses least');
  const big = chooseVictims(req({ memoryMb: 63_500 }), 1, [agent('box', 0, runs, { maxRuns: 4 })], byAgent(runs), NOW);
  t.same(big?.victims.map((v) => v.id).sort(), ['a', 'b'], 'memory for a big request needs both');
});

t.test('a held agent: no other run is chosen there; the run it is held for is', async (t) => {
  const index = new FleetIndex([agent('held', 1, []), agent('other', 1, [])]);
  index.beginPass();
  index.holdBack('held');
  const c1 = index.choose(req({ gpus: 1 }));
  t.match(c1, { ok: true, agent: 'other' }, 'another run goes elsewhere');
  if (c1.ok) index.take(c1.agent, req({ gpus: 1 }), c1.gpuIndices);
  t.match(index.choose(req({ gpus: 1 })), { ok: false, never: false }, 'and waits rather than take the held agent');
  t.match(index.chooseOn('held', req({ gpus: 1 })), { ok: true, agent: 'held', gpuIndices: [0] }, 'the run it is held for is placed there');
});
