// Submit → train.py process start, with a real scheduler, a real agent and a warm venv: N sequential runs
// of a package with no requirements; the clock starts before SubmitRun and stops at the agent's
// "train.py started" record (same machine, same clock). Each run finishes before the next is submitted.
//
//   node dist/bench/latency.js [--runs 200] [--json]
import { parseArgs } from 'node:util';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchAdminToken, benchEnv, benchNats, median, percentile, startTrainyard } from './lib.js';
import { Api } from '../cli/client.js';
import { spawnSync } from 'node:child_process';
import { projectRoot } from '../shared/proto.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '200' }, json: { type: 'boolean' } } });
const n = Number(values.runs);

const bench = await benchEnv({ TRAINYARD_SCHEDULER_LISTEN: '127.0.0.1:0' });
const scheduler = startTrainyard(['scheduler'], { ...bench.env, ...benchNats('scheduler'), TRAINYARD_LOG_LEVEL: 'info' });
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
  for (const [dir, file, text] of [[pkg, 'train.py', 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n'], [data, 'x.csv', '1\n']] as const) {
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
  for (let i = 0; i < n + 3; i++) {
    const t0 = Date.now();
    const run = await api.submitRun({ package: 'noop', dataset: 'tiny' });
    const line = JSON.parse(await agent.waitFor(new RegExp(`"run":"${run.id}".*"msg":"train.py started"`), 120_000));
    if (i >= 3) latencies.push(Number(line.at) - t0); // the first runs build and warm the venv
    for (;;) {
      const r = await api.getRun(run.id);
      if (['Successful', 'Failed', 'Killed'].includes(r.status)) {
        if (r.status !== 'Successful') throw new Error(`run ${run.id} ${r.status}: ${r.failure_reason}`);
        break;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
  }
  api.close();
  const summary = { runs: latencies.length, p50Ms: median(latencies), p99Ms: percentile(latencies, 99), minMs: Math.min(...latencies), maxMs: Math.max(...latencies) };
  console.log(values.json ? JSON.stringify(summary) : `submit → train.py start over ${summary.runs} sequential runs: p50 ${summary.p50Ms} ms, p99 ${summary.p99Ms} ms (min ${summary.minMs}, max ${summary.maxMs})`);
} finally {
  await agent?.stop();
  await scheduler.stop();
  await bench.drop();
}
process.exit(0);
