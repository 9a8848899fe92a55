// Submit → train() entered, with a real scheduler, a real agent and a warm venv: N sequential runs of a
// package with no requirements whose train() prints time.time() as its first statement; the clock starts
// just before SubmitRun and stops at that timestamp (same machine, same clock). The agent's "train.py
// started" record (the process spawn) is reported too, to show where the time goes. Each run finishes
// before the next is submitted, after a random 0-1 s pause (issue 11's protocol).
//
//   node dist/bench/latency.js [--runs 50] [--run-uids] [--json]
//
// By default the runs share the agent's uid, as the README's earlier figures were measured; --run-uids
// runs the agent as a root agent runs by default (a uid leased per run, its folders chowned to it).
import { parseArgs } from 'node:util';
import { enteredAt, median, percentile, startNoopTrainyard, waitEnded } from './lib.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '50' }, json: { type: 'boolean' }, 'no-pause': { type: 'boolean' }, 'run-uids': { type: 'boolean' } } });
const n = Number(values.runs);

const s = await startNoopTrainyard({ agent: {}, runUids: values['run-uids'] === true });
try {
  const { api, agent } = s;
  const latencies: number[] = [];
  const spawns: number[] = [];
  /** Per run, when each of the agent's steps began, in ms after submit (its "attempt finished" record). */
  const steps: Record<string, number>[] = [];
  for (let i = 0; i < n + 3; i++) {
    if (i >= 3 && !values['no-pause']) await new Promise((res) => setTimeout(res, Math.random() * 1000));
    const t0 = Date.now();
    const run = await api.submitRun({ package: 'noop', dataset: 'tiny' });
    const line = JSON.parse(await agent!.waitFor(new RegExp(`"run":"${run.id}".*"msg":"train.py started"`), 120_000));
    const end = await waitEnded(api, run.id);
    if (end.status !== 'Successful') throw new Error(`run ${run.id} ${end.status}: ${end.failure_reason}`);
    if (i < 3) continue; // the first runs build and warm the venv
    spawns.push(Number(line.at) - t0);
    const fin = JSON.parse(await agent!.waitFor(new RegExp(`"run":"${run.id}".*"msg":"attempt finished"`), 30_000)) as { steps: Record<string, number> };
    const entered = await enteredAt(api, run.id);
    steps.push(Object.fromEntries([...Object.entries(fin.steps).map(([k, v]) => [k, v - t0]), ['train_entered', entered - t0]]));
    // train()'s own timestamp, from its log (read after the run, outside the measured interval).
    latencies.push(steps.at(-1)!.train_entered!);
  }
  const r1 = (x: number) => Math.round(x * 10) / 10;
  const summary = {
    runs: latencies.length, p50Ms: r1(median(latencies)), p95Ms: r1(percentile(latencies, 95)), p99Ms: r1(percentile(latencies, 99)), minMs: r1(Math.min(...latencies)), maxMs: r1(Math.max(...latencies)),
    spawnP50Ms: r1(median(spawns)), spawnP95Ms: r1(percentile(spawns, 95)),
  };
  // The breakdown: each step's median start after submit, in the order they happen.
  const names = Object.keys(steps[0] ?? {}).sort((a, b) => median(steps.map((x) => x[a]!)) - median(steps.map((x) => x[b]!)));
  const breakdown = names.map((k) => ({ step: k, atMs: r1(median(steps.map((x) => x[k]!))) }));
  if (!values.json) {
    console.log('where the time goes (median ms after submit when each step began):');
    let prev = 0;
    for (const b of breakdown) { console.log(`  ${b.step.padEnd(20)} ${String(b.atMs).padStart(7)}  (+${r1(b.atMs - prev)})`); prev = b.atMs; }
  }
  console.log(values.json ? JSON.stringify({ ...summary, breakdown }) : `submit → train() entered over ${summary.runs} sequential runs: p50 ${summary.p50Ms} ms, p95 ${summary.p95Ms} ms, p99 ${summary.p99Ms} ms (min ${summary.minMs}, max ${summary.maxMs}); submit → train.py spawned: p50 ${summary.spawnP50Ms} ms, p95 ${summary.spawnP95Ms} ms`);
} catch (err) {
  // What the agent said last is what a hang or a failure needs to be understood.
  console.error(s.agent?.lines.slice(-30).join('\n'));
  throw err;
} finally {
  await s.stop();
}
process.exit(0);
