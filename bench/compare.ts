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
//   node dist/bench/compare.js [--latency-runs 50] [--burst 500] [--submits 2000] [--json]
import { parseArgs } from 'node:util';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { benchAdminToken, benchEnv, benchMinio, benchNats, median, percentile, startTrainyard, type BenchEnv, type Proc } from './lib.js';
import { Api, streamOf } from '../cli/client.js';
import { projectRoot } from '../shared/proto.js';

const { values } = parseArgs({ options: {
  'latency-runs': { type: 'string', default: '50' }, burst: { type: 'string', default: '500' }, submits: { type: 'string', default: '2000' }, json: { type: 'boolean' },
} });
const r1 = (x: number) => Math.round(x * 10) / 10;
const say = (m: string) => { if (!values.json) console.error(`[compare] ${m}`); };

/** Runs `n` calls of `fn`, `width` at a time. */
async function inFlight(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < n) await fn(next++); }));
}

interface Setup { bench: BenchEnv; scheduler: Proc; agent: Proc | null; address: string; api: Api; cli(args: string[]): void }

async function setup(withAgent: boolean): Promise<Setup> {
  const bench = await benchEnv({ TRAINYARD_SCHEDULER_LISTEN: '127.0.0.1:0', TRAINYARD_HTTP_LISTEN: '' });
  const scheduler = startTrainyard(['scheduler'], { ...bench.env, ...benchNats('scheduler'), ...benchMinio(), TRAINYARD_LOG_LEVEL: 'info' });
  const address = JSON.parse(await scheduler.waitFor(/"msg":"listening"/)).address as string;
  const api = new Api(address, { token: benchAdminToken(bench) });
  const work = mkdtempSync(path.join(os.tmpdir(), 'tycompare-'));
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(projectRoot(), 'bin', 'trainyard.js'), ...args, '--scheduler', address], { env: bench.env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`trainyard ${args.join(' ')}: ${r.stderr}`);
  };
  let agent: Proc | null = null;
  if (withAgent) {
    const joinToken = (await api.createJoinToken({ name: 'compare', expires_in_seconds: 3600 })).token;
    agent = startTrainyard(['agent'], {
      ...bench.env, ...benchNats('agent'), TRAINYARD_LOG_LEVEL: 'info', TRAINYARD_SCHEDULER: address, TRAINYARD_AGENT_NAME: 'compare-agent',
      TRAINYARD_JOIN_TOKEN: joinToken, TRAINYARD_WORK_DIR: path.join(work, 'work'), TRAINYARD_VENV_DIR: path.join(os.homedir(), '.cache', 'trainyard', 'bench-venvs'),
      TRAINYARD_CPUS: '2', TRAINYARD_MAX_RUNS: '2', TRAINYARD_NVIDIA_SMI: path.join(projectRoot(), 'test', 'fixtures', 'bin', 'nvidia-smi'),
      FAKE_NVIDIA_SMI_GPUS: '0, GPU-compare-0, NVIDIA H100 80GB HBM3, 81559;1, GPU-compare-1, NVIDIA H100 80GB HBM3, 81559',
    });
    await agent.waitFor(/"msg":"registered"/);
  }
  const pkg = path.join(work, 'pkg');
  const data = path.join(work, 'data');
  mkdirSync(pkg, { recursive: true });
  mkdirSync(data, { recursive: true });
  writeFileSync(path.join(pkg, 'train.py'), 'import time\nclass Main:\n    def train(self, d):\n        print("ENTERED %.6f" % time.time(), flush=True)\n    def save(self):\n        pass\n');
  writeFileSync(path.join(data, 'x.csv'), '1\n');
  cli(['package', 'push', pkg, '--name', 'noop']);
  cli(['dataset', 'push', data, '--name', 'tiny']);
  return { bench, scheduler, agent, address, api, cli };
}

async function teardown(s: Setup): Promise<void> {
  s.api.close();
  await s.agent?.stop();
  await s.scheduler.stop();
  await s.bench.drop();
}

async function waitEnded(api: Api, id: string): Promise<Awaited<ReturnType<Api['getRun']>>> {
  for (;;) {
    const r = await api.getRun(id);
    if (['Successful', 'Failed', 'Killed'].includes(r.status)) return r;
    await new Promise((res) => setTimeout(res, 20));
  }
}

const out: Record<string, number> = {};
{
  const s = await setup(true);
  try {
    const n = Number(values['latency-runs']);
    say(`latency: ${n} sequential runs (and 3 to warm the venv)`);
    const lat: number[] = [];
    for (let i = 0; i < n + 3; i++) {
      if (i >= 3) await new Promise((res) => setTimeout(res, Math.random() * 1000));
      const t0 = Date.now();
      const run = await s.api.submitRun({ package: 'noop', dataset: 'tiny', resources: { cpus: 1, gpus: 1 } });
      const end = await waitEnded(s.api, run.id);
      if (end.status !== 'Successful') throw new Error(`run ${run.id} ${end.status}: ${end.failure_reason}`);
      if (i < 3) continue;
      let entered = 0;
      for await (const l of streamOf(s.api.client.StreamLogs({ run_id: run.id, follow: false }))) {
        const m = /^ENTERED (\d+\.\d+)$/.exec(l.text);
        if (m) entered = Number(m[1]) * 1000;
      }
      if (!entered) throw new Error(`run ${run.id}: no ENTERED line`);
      lat.push(entered - t0);
    }
    out.latencyP50Ms = r1(median(lat));
    out.latencyP95Ms = r1(percentile(lat, 95));

    const burst = Number(values.burst);
    say(`burst: ${burst} runs, 1 CPU + 1 GPU each, one agent with 2 of each`);
    const ids: string[] = [];
    const t0 = Date.now();
    await inFlight(burst, 16, async (i) => {
      ids[i] = (await s.api.submitRun({ package: 'noop', dataset: 'tiny', resources: { cpus: 1, gpus: 1 } })).id;
    });
    let last = 0;
    for (const id of ids) {
      const r = await waitEnded(s.api, id);
      if (r.status !== 'Successful' || !r.output_version) throw new Error(`burst run ${id} ${r.status}: ${r.failure_reason}`);
      last = Math.max(last, new Date(r.times!.ended_at).getTime());
    }
    out.burstRunsPerS = r1(burst / ((last - t0) / 1000));
  } finally {
    await teardown(s);
  }
}
{
  const s = await setup(false);
  try {
    const n = Number(values.submits);
    say(`SubmitRun alone: ${n} submits, 16 in flight, no agent`);
    const t0 = Date.now();
    await inFlight(n, 16, async () => { await s.api.submitRun({ package: 'noop', dataset: 'tiny' }); });
    out.submitRunsPerS = r1(n / ((Date.now() - t0) / 1000));
  } finally {
    await teardown(s);
  }
}
if (values.json) console.log(JSON.stringify(out));
else {
  console.log('| system | submit → job code starts, p50 / p95 | 500-run burst, 2 slots | SubmitRun, 16 in flight |');
  console.log('|---|---|---|---|');
  console.log(`| Trainyard (this checkout) | ${out.latencyP50Ms} / ${out.latencyP95Ms} ms | ${out.burstRunsPerS} runs/s | ${out.submitRunsPerS} runs/s |`);
}
process.exit(0);
