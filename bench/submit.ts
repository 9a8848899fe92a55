// SubmitRun alone (issue 11's third column, as bench/compare.ts measures it), repeated for a median: each
// round starts its own scheduler with no agent on a new database, then makes `submits` SubmitRuns from one
// client with `in-flight` calls outstanding; runs/s = submits / time. A fresh scheduler per round, because
// what is already queued changes what the placer does beside the submits (it marks each new run Waiting
// for resources). Every answer is checked: queued, the package asked for, a distinct id.
// Beside runs/s it reports the CPU each run cost the scheduler and its Postgres backends (from /proc), a
// figure that other load on the machine changes much less than it changes runs/s.
//
//   node dist/bench/submit.js [--submits 2000] [--in-flight 16] [--rounds 3] [--json]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { median, startNoopTrainyard } from './lib.js';

const { values } = parseArgs({ options: {
  submits: { type: 'string', default: '2000' }, 'in-flight': { type: 'string', default: '16' }, rounds: { type: 'string', default: '3' }, json: { type: 'boolean' },
} });
const n = Number(values.submits);
const width = Number(values['in-flight']);
const rounds = Number(values.rounds);
const r1 = (x: number) => Math.round(x * 10) / 10;

/** CPU time a process has used, ms (utime + stime, in clock ticks of 10 ms); 0 once it is gone. */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch { return 0; }
}

interface Round { perS: number; schedulerCpuMs: number; postgresCpuMs: number }

async function round(): Promise<Round> {
  const s = await startNoopTrainyard({ agent: null });
  const admin = new pg.Client({ connectionString: s.bench.databaseUrl });
  await admin.connect();
  // The scheduler's backends (and any it opens during the round: they count from zero).
  const backends = async () => (await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')).rows.map((r) => r.pid);
  try {
    const ids = new Set<string>();
    let next = 0;
    const pgBefore = new Map((await backends()).map((pid) => [pid, cpuMs(pid)]));
    const schedulerBefore = cpuMs(s.scheduler.child.pid!);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: width }, async () => {
      while (next < n) {
        next++;
        const run = await s.api.submitRun({ package: 'noop', dataset: 'tiny' });
        if (!['Scheduled', 'Waiting for resources'].includes(run.status) || run.package !== 'noop' || ids.has(run.id)) throw new Error(`unexpected run ${JSON.stringify(run)}`);
        ids.add(run.id);
      }
    }));
    const perS = n / ((performance.now() - t0) / 1000);
    const schedulerCpuMs = cpuMs(s.scheduler.child.pid!) - schedulerBefore;
    let postgresCpuMs = 0;
    for (const pid of await backends()) postgresCpuMs += cpuMs(pid) - (pgBefore.get(pid) ?? 0);
    return { perS, schedulerCpuMs, postgresCpuMs };
  } finally {
    await admin.end();
    await s.stop();
  }
}

const results: Round[] = [];
for (let i = 0; i < rounds; i++) {
  const r = await round();
  results.push(r);
  if (!values.json) console.error(`[submit] round ${i + 1}: ${r1(r.perS)} runs/s; CPU per run: scheduler ${r1(1000 * r.schedulerCpuMs / n)} µs, Postgres ${r1(1000 * r.postgresCpuMs / n)} µs`);
}
const out = {
  submits: n, inFlight: width, rounds: results.map((r) => r1(r.perS)), medianRunsPerS: r1(median(results.map((r) => r.perS))),
  schedulerCpuUsPerRun: r1(median(results.map((r) => 1000 * r.schedulerCpuMs / n))), postgresCpuUsPerRun: r1(median(results.map((r) => 1000 * r.postgresCpuMs / n))),
};
console.log(values.json ? JSON.stringify(out) : `SubmitRun, ${width} in flight: median ${out.medianRunsPerS} runs/s over ${rounds} rounds of ${n}, a fresh scheduler each (${out.rounds.join(', ')}); CPU per run (median): scheduler ${out.schedulerCpuUsPerRun} µs, Postgres ${out.postgresCpuUsPerRun} µs`);
process.exit(0);
