// Placement throughput at fleet scale, against a real scheduler process, Postgres and NATS.
//
// Simulated agents register over gRPC like real ones and take their dispatches from NATS (one
// subscription on the agents' dispatch subjects counts them); they never run anything. Runs are
// inserted as queued rows in one go (this measures placement, not submission), then one doorbell
// starts the clock, which stops when the last dispatch arrives.
//
//   node dist/bench/placement.js [--agents 1000] [--runs 20000] [--repeat 3] [--json] [--cpu-prof DIR]
//
// --agents takes a list (10,100,1000,10000): one row per fleet size, the same queue for each, so the
// rows show what a placement costs as the fleet grows. Each row is the median of --repeat runs, each on a
// new database and a new scheduler. RSS is the scheduler's at the end; peak is its high-water mark
// (VmHWM), registration and placement included.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { median, rssMiB, startSimulatedFleet } from './lib.js';

const { values } = parseArgs({ options: {
  agents: { type: 'string', default: '1000' }, runs: { type: 'string', default: '20000' },
  repeat: { type: 'string', default: '3' }, json: { type: 'boolean' }, 'cpu-prof': { type: 'string' },
} });
const fleets = values.agents.split(',').map(Number);
const runs = Number(values.runs);

interface Result { seconds: number; perSecond: number; rssMiB: number; peakMiB: number }

function peakMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

async function once(agents: number): Promise<Result> {
  // Every run must fit at once (nothing completes), so a small fleet gets bigger agents: the measure is
  // the per-placement cost against the number of agents to choose from.
  const gpusPerAgent = Math.max(8, Math.ceil((0.3 * runs * 2) / agents));
  const cpusPerAgent = Math.max(32, Math.ceil((runs * 2) / agents));
  let received = 0;
  let done: () => void = () => {};
  const all = new Promise<void>((r) => { done = r; });
  const fleet = await startSimulatedFleet({ agents, gpusPerAgent, cpusPerAgent,
    nodeArgs: values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [],
    onDispatch: () => { if (++received === runs) done(); } });
  try {
    // The queue: 30% ask for one GPU, the rest for one CPU; a quarter carry a selector.
    const db = new pg.Client({ connectionString: fleet.bench.databaseUrl });
    await db.connect();
    await db.query(`
      INSERT INTO runs (id, project, package, package_major, package_minor, package_object_key, dataset, gpus, cpus, selector, env, max_attempts, created_at)
      SELECT 'bench' || i, 'p' || (i % 7), 'pkg', 1, 0, 'packages/pkg/1.0/package.zip', 'data',
             CASE WHEN i % 10 < 3 THEN 1 ELSE 0 END, 1,
             CASE WHEN i % 4 = 0 THEN '{"zone":"a"}'::jsonb ELSE '{}'::jsonb END, '{}', 2, now() + i * interval '1 microsecond'
      FROM generate_series(1, $1) AS i`, [runs]);
    await db.end();
    const start = process.hrtime.bigint();
    await fleet.kick();
    await all;
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const pid = fleet.scheduler.child.pid!;
    return { seconds, perSecond: runs / seconds, rssMiB: rssMiB(pid), peakMiB: peakMiB(pid) };
  } finally {
    await fleet.stop();
  }
}

const rows = [];
for (const agents of fleets) {
  const results: Result[] = [];
  for (let i = 0; i < Number(values.repeat); i++) {
    const r = await once(agents);
    results.push(r);
    if (!values.json) console.error(`run ${i + 1}: ${runs} placements over ${agents} agents in ${r.seconds.toFixed(2)} s = ${Math.round(r.perSecond)}/s, scheduler RSS ${r.rssMiB} MiB (peak ${r.peakMiB} MiB)`);
  }
  const perSecond = median(results.map((r) => r.perSecond));
  const row = {
    agents, runs,
    placementsPerSecond: Math.round(perSecond),
    microsecondsPerPlacement: Math.round(1e6 / perSecond),
    schedulerRssMiB: median(results.map((r) => r.rssMiB)),
    schedulerPeakRssMiB: median(results.map((r) => r.peakMiB)),
    repeats: results.length,
    all: results.map((r) => Math.round(r.perSecond)),
  };
  rows.push(row);
  if (values.json) console.log(JSON.stringify(row));
  else console.log(`${agents} agents, ${runs} runs: median ${row.placementsPerSecond} placements/s (${row.microsecondsPerPlacement} µs each; runs: ${row.all.join(', ')}), scheduler RSS ${row.schedulerRssMiB} MiB, peak ${row.schedulerPeakRssMiB} MiB`);
}
if (!values.json && rows.length > 1) {
  console.log('\n| agents | queued runs | placements/s | µs per placement | scheduler RSS (peak) |\n| --- | --- | --- | --- | --- |');
  for (const r of rows) console.log(`| ${r.agents.toLocaleString('en')} | ${r.runs.toLocaleString('en')} | ${r.placementsPerSecond.toLocaleString('en')} | ${r.microsecondsPerPlacement} | ${r.schedulerRssMiB} MiB (${r.schedulerPeakRssMiB} MiB) |`);
}
process.exit(0);
