// Issue 11's protocol, the one the README's comparison table uses, against this checkout's Trainyard:
//   1. latency: 50 runs one at a time, a random 0-1 s pause before each; the clock runs from just before
//      SubmitRun to train()'s first statement (it prints time.time()); warm venv; p50 / p95.
//   2. burst: 500 runs from one client (16 submits in flight), each asking 1 CPU and 1 GPU, on one agent
//      with 2 CPUs and 2 (fake) GPUs; throughput = 500 / (last run ended - first submit), every run
//      Successful with its version committed.
//   3. SubmitRun alone: 2,000 submits from one client with 16 in flight, against a scheduler with no agent
//      (the runs stay queued); runs/s.
// It prints the table's Trainyard row (and --json the figures).
//
//   node dist/bench/compare.js [--latency-runs 50] [--burst 500] [--submits 2000] [--only latency|burst|submit] [--json]
// --only runs one part (comma-separated for several); the others print as —.
import { parseArgs } from 'node:util';
import path from 'node:path';
import { enteredAt, median, percentile, startNoopTrainyard, waitEnded } from './lib.js';
import { projectRoot } from '../shared/proto.js';

const { values } = parseArgs({ options: {
  'latency-runs': { type: 'string', default: '50' }, burst: { type: 'string', default: '500' }, submits: { type: 'string', default: '2000' }, json: { type: 'boolean' },
  only: { type: 'string' },
} });
const parts = new Set((values.only ?? 'latency,burst,submit').split(','));
for (const p of parts) if (!['latency', 'burst', 'submit'].includes(p)) throw new Error(`--only: unknown part "${p}" (latency, burst, submit)`);
const r1 = (x: number) => Math.round(x * 10) / 10;
const say = (m: string) => { if (!values.json) console.error(`[compare] ${m}`); };

/** One agent with 2 CPUs, 2 run slots and 2 (fake) GPUs. */
const COMPARE_AGENT = {
  TRAINYARD_AGENT_NAME: 'compare-agent', TRAINYARD_CPUS: '2', TRAINYARD_MAX_RUNS: '2', TRAINYARD_NVIDIA_SMI: path.join(projectRoot(), 'test', 'fixtures', 'bin', 'nvidia-smi'),
  FAKE_NVIDIA_SMI_GPUS: '0, GPU-compare-0, NVIDIA H100 80GB HBM3, 81559;1, GPU-compare-1, NVIDIA H100 80GB HBM3, 81559',
};

/** Runs `n` calls of `fn`, `width` at a time. */
async function inFlight(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < n) await fn(next++); }));
}

const out: Record<string, number> = {};
if (parts.has('latency') || parts.has('burst')) {
  const s = await startNoopTrainyard({ agent: COMPARE_AGENT });
  try {
    const n = parts.has('latency') ? Number(values['latency-runs']) : 0;
    if (n > 0) say(`latency: ${n} sequential runs (and 3 to warm the venv)`);
    const lat: number[] = [];
    for (let i = 0; i < n + 3; i++) {
      if (i >= 3) await new Promise((res) => setTimeout(res, Math.random() * 1000));
      const t0 = Date.now();
      const run = await s.api.submitRun({ package: 'noop', dataset: 'tiny', resources: { cpus: 1, gpus: 1 } });
      const end = await waitEnded(s.api, run.id);
      if (end.status !== 'Successful') throw new Error(`run ${run.id} ${end.status}: ${end.failure_reason}`);
      if (i < 3) continue;
      lat.push(await enteredAt(s.api, run.id) - t0);
    }
    if (n > 0) {
      out.latencyP50Ms = r1(median(lat));
      out.latencyP95Ms = r1(percentile(lat, 95));
    }

    const burst = parts.has('burst') ? Number(values.burst) : 0;
    if (burst > 0) say(`burst: ${burst} runs, 1 CPU + 1 GPU each, one agent with 2 of each`);
    const ids: string[] = [];
    const t0 = Date.now();
    await inFlight(burst, 16, async (i) => {
      ids[i] = (await s.api.submitRun({ package: 'noop', dataset: 'tiny', resources: { cpus: 1, gpus: 1 } })).id;
    });
    let last = 0;
    for (const id of ids) {
      // The figure is read off each run's ended_at, not off this loop: it polls every 250 ms, so that it
      // takes little of the CPU the runs need (at 20 ms it was about 3 GetRun calls per run).
      const r = await waitEnded(s.api, id, 250);
      if (r.status !== 'Successful' || !r.output_version) throw new Error(`burst run ${id} ${r.status}: ${r.failure_reason}`);
      last = Math.max(last, new Date(r.times!.ended_at).getTime());
    }
    if (burst > 0) out.burstRunsPerS = r1(burst / ((last - t0) / 1000));
  } finally {
    await s.stop();
  }
}
if (parts.has('submit')) {
  const s = await startNoopTrainyard({ agent: null });
  try {
    const n = Number(values.submits);
    say(`SubmitRun alone: ${n} submits, 16 in flight, no agent`);
    const t0 = Date.now();
    await inFlight(n, 16, async () => { await s.api.submitRun({ package: 'noop', dataset: 'tiny' }); });
    out.submitRunsPerS = r1(n / ((Date.now() - t0) / 1000));
  } finally {
    await s.stop();
  }
}
if (values.json) console.log(JSON.stringify(out));
else {
  console.log('| system | submit → job code starts, p50 / p95 | 500-run burst, 2 slots | SubmitRun, 16 in flight |');
  console.log('|---|---|---|---|');
  const or = (x: number | undefined, unit: string) => (x === undefined ? '—' : `${x} ${unit}`);
  console.log(`| Trainyard (this checkout) | ${out.latencyP50Ms === undefined ? '—' : `${out.latencyP50Ms} / ${out.latencyP95Ms} ms`} | ${or(out.burstRunsPerS, 'runs/s')} | ${or(out.submitRunsPerS, 'runs/s')} |`);
}
process.exit(0);
