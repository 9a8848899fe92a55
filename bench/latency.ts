// Submit → train() entered, with a real scheduler, a real agent and a warm venv: N sequential runs of a
// package with no requirements whose train() prints time.time() as its first statement; the clock starts
// just before SubmitRun and stops at that timestamp (same machine, same clock). The agent's "train.py
// started" record (the process spawn) is reported too, to show where the time goes. Each run finishes
// before the next is submitted, after a random 0-1 s pause (issue 11's protocol).
//
//   node dist/bench/latency.js [--runs 50] [--json]
import { parseArgs } from 'node:util';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchAdminToken, benchEnv, benchMinio, benchNats, median, percentile, startTrainyard } from './lib.js';
import { Api, streamOf } from '../cli/client.js';
import { spawnSync } from 'node:child_process';
import { projectRoot } from '../shared/proto.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '50' }, json: { type: 'boolean' }, 'no-pause': { type: 'boolean' } } });
const n = Number(values.runs);

const bench = await benchEnv({ TRAINYARD_SCHEDULER_LISTEN: '127.0.0.1:0' });
const scheduler = startTrainyard(['scheduler'], { ...bench.env, ...benchNats('scheduler'), ...benchMinio(), TRAINYARD_LOG_LEVEL: 'info' });
let agent: ReturnType<typeof startTrainyard> | null = null;
try {
  const address = JSON.parse(await scheduler.waitFor(/"msg":"listening"/)).address as string;
  const work = mkdtempSync(path.join(os.tmpdir(), 'tybench-'));
  const joiner = new Api(address, { token: benchAdminToken(bench) });
  const joinToken = (await joiner.createJoinToken({ name: 'bench', expires_in_seconds: 3600 })).token;
  joiner.close();
  agent = startTrainyard(['agent'], {
    TRAINYARD_JOIN_TOKEN: joinToken,
    ...bench.env, ...benchNats('agent'), TRAINYARD_LOG_LEVEL: 'info', TRAINYARD_SCHEDULER: address, TRAINYARD_AGENT_NAME: 'bench-agent',
    TRAINYARD_WORK_DIR: path.join(work, 'work'), TRAINYARD_VENV_DIR: path.join(os.homedir(), '.cache', 'trainyard', 'bench-venvs'),
  });
  await agent.waitFor(/"msg":"registered"/);
  const pkg = path.join(work, 'pkg');
  const data = path.join(work, 'data');
  for (const [dir, file, text] of [[pkg, 'train.py', 'import time\nclass Main:\n    def train(self, d):\n        print("ENTERED %.6f" % time.time(), flush=True)\n    def save(self):\n        pass\n'], [data, 'x.csv', '1\n']] as const) {
    spawnSync('mkdir', ['-p', dir]);
    writeFileSync(path.join(dir, file), text);
  }
  const cli = (args: string[]) => spawnSync(process.execPath, [path.join(projectRoot(), 'bin', 'trainyard.js'), ...args, '--scheduler', address], { env: bench.env, encoding: 'utf8' });
  for (const args of [['package', 'push', pkg, '--name', 'noop'], ['dataset', 'push', data, '--name', 'tiny']]) {
    const r = cli(args);
    if (r.status !== 0) throw new Error(r.stderr);
  }
  const api = new Api(address, { token: benchAdminToken(bench) });
  const latencies: number[] = [];
  const spawns: number[] = [];
  for (let i = 0; i < n + 3; i++) {
    if (i >= 3 && !values['no-pause']) await new Promise((res) => setTimeout(res, Math.random() * 1000));
    const t0 = Date.now();
    const run = await api.submitRun({ package: 'noop', dataset: 'tiny' });
    const line = JSON.parse(await agent.waitFor(new RegExp(`"run":"${run.id}".*"msg":"train.py started"`), 120_000));
    if (i >= 3) spawns.push(Number(line.at) - t0); // the first runs build and warm the venv
    for (;;) {
      const r = await api.getRun(run.id);
      if (['Successful', 'Failed', 'Killed'].includes(r.status)) {
        if (r.status !== 'Successful') throw new Error(`run ${run.id} ${r.status}: ${r.failure_reason}`);
        break;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
    if (i < 3) continue;
    // train()'s own timestamp, from its log (read after the run, outside the measured interval).
    let entered = 0;
    for await (const l of streamOf(api.client.StreamLogs({ run_id: run.id, follow: false }))) {
      const m = /^ENTERED (\d+\.\d+)$/.exec(l.text);
      if (m) entered = Number(m[1]) * 1000;
    }
    if (!entered) throw new Error(`run ${run.id}: no ENTERED line in its log`);
    latencies.push(entered - t0);
  }
  api.close();
  const r1 = (x: number) => Math.round(x * 10) / 10;
  const summary = {
    runs: latencies.length, p50Ms: r1(median(latencies)), p95Ms: r1(percentile(latencies, 95)), p99Ms: r1(percentile(latencies, 99)), minMs: r1(Math.min(...latencies)), maxMs: r1(Math.max(...latencies)),
    spawnP50Ms: r1(median(spawns)), spawnP95Ms: r1(percentile(spawns, 95)),
  };
  console.log(values.json ? JSON.stringify(summary) : `submit → train() entered over ${summary.runs} sequential runs: p50 ${summary.p50Ms} ms, p95 ${summary.p95Ms} ms, p99 ${summary.p99Ms} ms (min ${summary.minMs}, max ${summary.maxMs}); submit → train.py spawned: p50 ${summary.spawnP50Ms} ms, p95 ${summary.spawnP95Ms} ms`);
} finally {
  await agent?.stop();
  await scheduler.stop();
  await bench.drop();
}
process.exit(0);
