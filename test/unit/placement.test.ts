// The placement rules, on the pure fleet model: exact GPUs, no oversubscription, best fit, selectors,
// and the difference between "not now" and "never".
import t from 'tap';
import { couldEverFit, type AgentCapacity, type Request } from '../../scheduler/placement/fleet.js';
import { FleetIndex } from '../../scheduler/placement/fleet-index.js';

// One pass's view of the fleet, as the placer builds it.
const choose = (agents: AgentCapacity[], r: Request) => new FleetIndex(agents).choose(r);

const gpu = (index: number, name = 'NVIDIA H100 80GB HBM3', memoryMb = 81559) => ({ index, uuid: `GPU-${index}`, name, memoryMb });
const agent = (name: string, gpus: ReturnType<typeof gpu>[], o: Partial<AgentCapacity> = {}): AgentCapacity => ({
  name, status: 'online', cpus: 16, memoryMb: 64000, labels: {}, gpus, usedGpus: new Set(), usedCpus: 0, usedMemoryMb: 0, maxRuns: 0, usedRuns: 0, ...o,
});
const req = (o: Partial<Request> = {}): Request => ({ gpus: 0, gpuModel: '', gpuMemoryMb: 0, cpus: 0, memoryMb: 0, selector: {}, ...o });

t.test('assigns specific GPUs and never gives one GPU twice', async (t) => {
  const fleet = new FleetIndex([agent('a', [gpu(0), gpu(1)])]);
  const seen = new Set<number>();
  for (let i = 0; i < 2; i++) {
    const c = fleet.choose(req({ gpus: 1 }));
    t.ok(c.ok, `request ${i + 1} placed`);
    if (!c.ok) return;
    t.equal(c.gpuIndices.length, 1);
    t.notOk(seen.has(c.gpuIndices[0]!), 'a GPU not given before');
    seen.add(c.gpuIndices[0]!);
    fleet.take(c.agent, req({ gpus: 1 }), c.gpuIndices);
  }
  const third = fleet.choose(req({ gpus: 1 }));
  t.notOk(third.ok, 'a third one-GPU request waits');
  if (!third.ok) t.equal(third.never, false, 'waits, it is not impossible');
});

t.test('best fit keeps whole agents free for big requests', async (t) => {
  const big = agent('big', [gpu(0), gpu(1), gpu(2), gpu(3)]);
  const small = agent('small', [gpu(0), gpu(1)]);
  small.usedGpus.add(0);
  const fleet = new FleetIndex([big, small]);
  const c = fleet.choose(req({ gpus: 1 }));
  t.ok(c.ok && c.agent === 'small', 'the one-GPU request goes where it leaves the fewest GPUs free');
  if (c.ok) fleet.take(c.agent, req({ gpus: 1 }), c.gpuIndices);
  const four = fleet.choose(req({ gpus: 4 }));
  t.ok(four.ok && four.agent === 'big' && four.gpuIndices.join() === '0,1,2,3', 'the four-GPU request still finds a whole agent');
});

t.test('GPU model, memory, CPUs, memory and selectors', async (t) => {
  const a = agent('a100', [gpu(0, 'NVIDIA A100-SXM4-40GB', 40960)], { labels: { zone: 'a' } });
  const h = agent('h100', [gpu(0), gpu(1)], { labels: { zone: 'b' }, cpus: 4 });
  const fleet = [a, h];
  const byModel = choose(fleet, req({ gpus: 1, gpuModel: 'h100' }));
  t.ok(byModel.ok && byModel.agent === 'h100', 'model matches nvidia-smi name, case-insensitively');
  const byMem = choose(fleet, req({ gpus: 1, gpuMemoryMb: 50000 }));
  t.ok(byMem.ok && byMem.agent === 'h100', 'minimum memory per GPU');
  const bySel = choose(fleet, req({ gpus: 1, selector: { zone: 'a' } }));
  t.ok(bySel.ok && bySel.agent === 'a100', 'selector matches labels');
  const byCpu = choose(fleet, req({ cpus: 8, selector: { zone: 'b' } }));
  t.ok(!byCpu.ok && byCpu.never, 'more CPUs than the only matching agent has: never');
  const never = choose(fleet, req({ gpus: 3 }));
  t.ok(!never.ok && never.never, 'three GPUs on one agent: no agent could ever');
  if (!never.ok) t.match(never.reason, /no registered agent could ever satisfy this request \(3 GPUs\)/);
  t.ok(couldEverFit(h, req({ gpus: 2, gpuModel: 'H100' })));
});

t.test('agents that are not online take nothing, but still count for "could ever"', async (t) => {
  const d = agent('d', [gpu(0)], { status: 'draining' });
  const c = choose([d], req({ gpus: 1 }));
  t.ok(!c.ok && !c.never, 'waits for the draining agent rather than failing');
  const none = choose([], req({ gpus: 1 }));
  t.ok(!none.ok && !none.never, 'with no agents registered yet, waits');
  if (!none.ok) t.match(none.reason, /no agent has registered yet/);
});

t.test('run slots: an agent takes at most max_runs runs, whatever CPUs they ask for', async (t) => {
  const fleet = new FleetIndex([agent('two-slots', [], { maxRuns: 2, cpus: 64 }), agent('busy', [], { maxRuns: 1, usedRuns: 1 })]);
  for (let i = 0; i < 2; i++) {
    const c = fleet.choose(req());
    t.ok(c.ok && c.agent === 'two-slots', `0-CPU run ${i + 1} takes a slot on the agent with free slots`);
    if (c.ok) fleet.take(c.agent, req(), c.gpuIndices);
  }
  const third = fleet.choose(req());
  t.notOk(third.ok, 'a third waits: both slots are taken, though 64 CPUs are free');
  if (!third.ok) t.equal(third.never, false, 'waiting, not impossible');
  const unlimited = new FleetIndex([agent('old', [], { maxRuns: 0, usedRuns: 500 })]);
  t.ok(unlimited.choose(req()).ok, 'max_runs 0 (an agent from before slots): no limit');
});
