// Run metrics (issue 23), with a real scheduler, a real agent and a warm venv.
//
// 1. Ingest: a run whose train.py logs --points points (two names, explicit steps) as fast as it can; the
//    clock runs from the first point stored to the last (polled in Postgres every 20 ms), so the figure is
//    what one scheduler stored per second as one agent fed it, Python and agent included: a lower bound of
//    the scheduler's own rate.
// 2. Overhead: the same train() (a fixed amount of arithmetic, about --seconds long) with and without
//    logging --log-points points spread evenly through it, alternated, --rounds times each; the figure is
//    train()'s own duration (the harness's phase times), median per variant.
//
//   node dist/bench/metrics.js [--points 1000000] [--seconds 60] [--log-points 100000] [--rounds 3] [--pin-run CPU] [--json]
//
// --pin-run CPU: the overhead runs' train() pins itself to that CPU, as a run on a training box has cores
// of its own; pin everything else to the others to measure the run's own cost apart from its neighbours'
// (README: `taskset -c 0 node dist/bench/metrics.js --pin-run 1 …` with the services moved to CPU 0).
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { median, startNoopTrainyard, waitEnded } from './lib.js';
import { projectRoot } from '../shared/proto.js';

const { values } = parseArgs({
  options: {
    points: { type: 'string', default: '1000000' }, seconds: { type: 'string', default: '60' }, 'log-points': { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '3' }, 'pin-run': { type: 'string' }, json: { type: 'boolean' },
  },
});
const points = Number(values.points);
const seconds = Number(values.seconds);
const logPoints = Number(values['log-points']);
const rounds = Number(values.rounds);

const trainPy = `
import os, time
import trainyard
class Main:
    def train(self, d):
        if os.environ.get("PIN_CPU"):
            os.sched_setaffinity(0, {int(os.environ["PIN_CPU"])})
        mode = os.environ["MODE"]
        if mode == "flood":
            n = int(os.environ["POINTS"]) // 2
            for i in range(n):
                trainyard.log(step=i, loss=1.0 / (i + 1), acc=i / n)
            return
        # A fixed amount of work, the same with and without logging: ITERS inner iterations in BLOCKS blocks.
        blocks, iters = int(os.environ["BLOCKS"]), int(os.environ["ITERS"])
        log = mode == "log"
        x = 0.0
        for b in range(blocks):
            for j in range(iters):
                x = x * 0.999999 + j
            if log:
                trainyard.log(step=b, loss=x % 1.0)
    def save(self):
        pass
`;

/** Inner iterations per second of the loop above, measured here with the same Python the venv uses. */
function calibrate(): number {
  // Inside a function, as in train(): locals are faster than a module's globals (timed at module level,
  // --seconds 60 gave a train() of about 29 s).
  const r = spawnSync('python3', ['-c', 'import time\ndef f():\n    t=time.time();x=0.0\n    for j in range(5000000): x = x * 0.999999 + j\n    return 5000000 / (time.time() - t)\nprint(f())'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

const s = await startNoopTrainyard({ agent: {} });
const db = new pg.Client({ connectionString: s.bench.databaseUrl });
await db.connect();
try {
  const work = mkdtempSync(path.join(os.tmpdir(), 'tybench-metrics-'));
  mkdirSync(path.join(work, 'pkg'));
  writeFileSync(path.join(work, 'pkg', 'train.py'), trainPy);
  const push = spawnSync(process.execPath, [path.join(projectRoot(), 'bin', 'trainyard.js'), 'package', 'push', path.join(work, 'pkg'), '--name', 'metrics', '--scheduler', s.address], { env: s.bench.env, encoding: 'utf8' });
  if (push.status !== 0) throw new Error(push.stderr);
  const run = async (env: Record<string, string>) => {
    const r = await s.api.submitRun({ package: 'metrics', dataset: 'tiny', env });
    return r.id;
  };
  const trainSeconds = async (id: string) => {
    const end = await waitEnded(s.api, id, 200);
    if (end.status !== 'Successful') throw new Error(`run ${id} ${end.status}: ${end.failure_reason}`);
    const p = end.phases.find((x) => x.name === 'train')!;
    return p.ended_at - p.started_at;
  };
  // A first run builds and warms the venv.
  await trainSeconds(await run({ MODE: 'log', BLOCKS: '10', ITERS: '10' }));

  // 1. Ingest.
  const id = await run({ MODE: 'flood', POINTS: String(points) });
  let first = 0; let firstCount = 0; let last = 0; let count = 0;
  while (count < points) {
    const { rows } = await db.query<{ n: string }>('SELECT coalesce(sum(points), 0) AS n FROM run_metric_series WHERE run_id = $1', [id]);
    count = Number(rows[0]!.n);
    if (count > 0 && !first) { first = Date.now(); firstCount = count; }
    last = Date.now();
    if (count < points) await new Promise((r) => setTimeout(r, 20));
  }
  await waitEnded(s.api, id, 200);
  const ingestPerSecond = Math.round((count - firstCount) / ((last - first) / 1000));

  // 2. Overhead, alternated so that the machine's load falls on both alike.
  const perSecond = calibrate();
  const blocks = logPoints;
  const iters = Math.max(1, Math.round((perSecond * seconds) / blocks));
  const withLog: number[] = []; const without: number[] = [];
  const pin: Record<string, string> = values['pin-run'] !== undefined ? { PIN_CPU: values['pin-run'] } : {};
  for (let i = 0; i < rounds; i++) {
    without.push(await trainSeconds(await run({ MODE: 'plain', BLOCKS: String(blocks), ITERS: String(iters), ...pin })));
    withLog.push(await trainSeconds(await run({ MODE: 'log', BLOCKS: String(blocks), ITERS: String(iters), ...pin })));
  }
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const out = {
    ingest: { points, ingestPerSecond, spanMs: last - first },
    overhead: { logPoints, rounds, withLogS: r2(median(withLog)), withoutS: r2(median(without)), ratio: r2(median(withLog) / median(without)), allWith: withLog.map(r2), allWithout: without.map(r2) },
  };
  if (values.json) console.log(JSON.stringify(out));
  else {
    console.log(`ingest: ${points} points stored in ${out.ingest.spanMs} ms after the first: ${ingestPerSecond} points/s (one scheduler, one agent)`);
    console.log(`overhead: train() with ${logPoints} points logged: median ${out.overhead.withLogS} s; without: ${out.overhead.withoutS} s (ratio ${out.overhead.ratio}; ${rounds} rounds each, alternated: with ${out.overhead.allWith.join(', ')}; without ${out.overhead.allWithout.join(', ')})`);
  }
} finally {
  await db.end();
  await s.stop();
}
process.exit(0);
