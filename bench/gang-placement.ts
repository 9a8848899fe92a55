// Gang placement time at fleet scale (issue 24), against a real scheduler process, Postgres and NATS.
//
// Simulated agents (bench/lib.ts startSimulatedFleet: registered over gRPC like real ones, they never run
// anything) take their doorbells from NATS; runs are inserted as queued rows, so this measures the placer
// (its model's choice of N distinct agents and the one all-or-nothing place statement), not submission.
// Each repeat, on a new database and a new scheduler:
//
//   1. background: --background single runs (half with one GPU) are placed first, so the gangs are chosen
//      on a fleet already in use;
//   2. one at a time: --gangs gangs of 2, 4, 8 and 16 members in turn, each member asking for --member-gpus
//      GPUs; each is inserted, the placer's doorbell rung, and the clock stops when its N members' doorbells
//      have arrived (on N distinct agents): the time to place one gang, its median and p95;
//   3. a burst: --burst-gangs gangs of the same mixed sizes and --burst-singles single runs (30% with one
//      GPU) queued together, one doorbell, the clock stopped at the last dispatch: gangs placed per second
//      with single runs interleaved in the queue.
//
//   node dist/bench/gang-placement.js [--agents 1000] [--gpus 8] [--gangs 40] [--burst-gangs 200] [--burst-singles 1000]
//                                     [--background 2000] [--member-gpus 2] [--repeat 3] [--json]
//
// The figures are the medians over the repeats (each repeat's own median and p95 for the one-at-a-time gangs).
import { parseArgs } from 'node:util';
import pg from 'pg';
import { median, percentile, startSimulatedFleet } from './lib.js';

const { values } = parseArgs({ options: {
  agents: { type: 'string', default: '1000' }, gpus: { type: 'string', default: '8' }, gangs: { type: 'string', default: '40' },
  'burst-gangs': { type: 'string', default: '200' }, 'burst-singles': { type: 'string', default: '1000' }, background: { type: 'string', default: '2000' },
  'member-gpus': { type: 'string', default: '2' }, repeat: { type: 'string', default: '3' }, json: { type: 'boolean' },
} });
const agents = Number(values.agents);
const gpusPerAgent = Number(values.gpus);
const memberGpus = Number(values['member-gpus']);
const SIZES = [2, 4, 8, 16];
const log = (msg: string) => { if (!values.json) console.error(msg); };

// Nothing completes, so everything must fit at once, with room to spare: the placer packs agents, and a
// gang that cannot fit would wait forever (then the bench would measure nothing).
{
  const meanMembers = SIZES.reduce((a, b) => a + b, 0) / SIZES.length;
  const wanted = Number(values.background) * 0.5 + Number(values['burst-singles']) * 0.3
    + (Number(values.gangs) + Number(values['burst-gangs'])) * meanMembers * memberGpus;
  if (agents < Math.max(...SIZES) || memberGpus > gpusPerAgent || wanted > 0.7 * agents * gpusPerAgent) {
    throw new Error(`the runs ask for about ${Math.round(wanted)} of the fleet's ${agents * gpusPerAgent} GPUs (at most 70% fits with room), `
      + `gangs of up to ${Math.max(...SIZES)} agents x ${memberGpus} GPUs: give more --agents or fewer runs`);
  }
}

interface Result { medianMs: number; p95Ms: number; burstSeconds: number; gangsPerSecond: number; placementsPerSecond: number }

/** Doorbells heard, by run id: each gang's members' agents. */
class Dispatches {
  readonly byRun = new Map<string, Set<string>>();
  #total = 0;
  #waiters: { test: () => boolean; resolve: () => void }[] = [];

  heard(agent: string, run: string): void {
    let s = this.byRun.get(run);
    if (!s) this.byRun.set(run, (s = new Set()));
    s.add(agent);
    this.#total++;
    for (const w of [...this.#waiters]) if (w.test()) { this.#waiters.splice(this.#waiters.indexOf(w), 1); w.resolve(); }
  }

  get total(): number { return this.#total; }

  until(test: () => boolean, what: string, timeoutMs = 600_000): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.#waiters.push({ test, resolve: () => { clearTimeout(t); resolve(); } });
    });
  }
}

/** Queued rows: `singles` single runs (every `gpuEvery`-th of 10 with one GPU) and gangs of `sizes`, interleaved in one queue. */
async function enqueue(db: pg.Client, prefix: string, o: { singles: number; gpuTenths: number; sizes: number[] }): Promise<void> {
  await db.query(`
    INSERT INTO runs (id, project, package, package_major, package_minor, package_object_key, dataset, gpus, cpus, selector, env, max_attempts, agents, created_at)
    SELECT $1 || 's' || i, 'p' || (i % 7), 'pkg', 1, 0, 'packages/pkg/1.0/package.zip', 'data',
           CASE WHEN i % 10 < $3 THEN 1 ELSE 0 END, 1, '{}', '{}', 2, 1, now() + i * interval '1 microsecond'
    FROM generate_series(1, $2) AS i`, [prefix, o.singles, o.gpuTenths]);
  // Gangs spread through the singles' queue order.
  const step = Math.max(1, Math.floor(o.singles / Math.max(1, o.sizes.length)));
  await db.query(`
    INSERT INTO runs (id, project, package, package_major, package_minor, package_object_key, dataset, gpus, cpus, selector, env, max_attempts, agents, created_at)
    SELECT $1 || 'g' || k, 'p' || (k % 7), 'pkg', 1, 0, 'packages/pkg/1.0/package.zip', 'data', $3, 1, '{}', '{}', 2, n,
           now() + (k * $4 + 1) * interval '1 microsecond'
    FROM unnest($2::int[]) WITH ORDINALITY AS g(n, k)`, [prefix, o.sizes, memberGpus, step]);
}

async function once(): Promise<Result> {
  const seen = new Dispatches();
  const fleet = await startSimulatedFleet({ agents, gpusPerAgent, cpusPerAgent: 64, onDispatch: (agent, run) => seen.heard(agent, run) });
  const db = new pg.Client({ connectionString: fleet.bench.databaseUrl });
  await db.connect();
  try {
    const background = Number(values.background);
    await enqueue(db, 'bg', { singles: background, gpuTenths: 5, sizes: [] });
    await fleet.kick();
    await seen.until(() => seen.total >= background, 'the background runs');

    const times: number[] = [];
    for (let k = 0; k < Number(values.gangs); k++) {
      const n = SIZES[k % SIZES.length]!;
      const id = `one${k}`;
      await db.query(`INSERT INTO runs (id, project, package, package_major, package_minor, package_object_key, dataset, gpus, cpus, selector, env, max_attempts, agents)
        VALUES ($1, 'p0', 'pkg', 1, 0, 'packages/pkg/1.0/package.zip', 'data', $2, 1, '{}', '{}', 2, $3)`, [id, memberGpus, n]);
      const start = process.hrtime.bigint();
      await fleet.kick();
      await seen.until(() => (seen.byRun.get(id)?.size ?? 0) >= n, `gang ${id}'s ${n} members`);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }

    const burstGangs = Array.from({ length: Number(values['burst-gangs']) }, (_, k) => SIZES[k % SIZES.length]!);
    const singles = Number(values['burst-singles']);
    const members = burstGangs.reduce((a, b) => a + b, 0);
    await enqueue(db, 'burst', { singles, gpuTenths: 3, sizes: burstGangs });
    const before = seen.total;
    const start = process.hrtime.bigint();
    await fleet.kick();
    await seen.until(() => seen.total - before >= members + singles, 'the burst');
    const burstSeconds = Number(process.hrtime.bigint() - start) / 1e9;
    // Every gang of the burst on as many distinct agents as it has members.
    const split = burstGangs.filter((n, k) => (seen.byRun.get(`burstg${k + 1}`)?.size ?? 0) !== n);
    if (split.length) throw new Error(`${split.length} burst gangs not placed on their N distinct agents`);
    return { medianMs: median(times), p95Ms: percentile(times, 95), burstSeconds, gangsPerSecond: burstGangs.length / burstSeconds, placementsPerSecond: (burstGangs.length + singles) / burstSeconds };
  } finally {
    await db.end();
    await fleet.stop();
  }
}

const results: Result[] = [];
for (let i = 0; i < Number(values.repeat); i++) {
  const r = await once();
  results.push(r);
  log(`run ${i + 1}: one gang at a time median ${r.medianMs.toFixed(1)} ms, p95 ${r.p95Ms.toFixed(1)} ms; burst of ${values['burst-gangs']} gangs + ${values['burst-singles']} single runs in ${r.burstSeconds.toFixed(2)} s = ${r.gangsPerSecond.toFixed(0)} gangs/s (${r.placementsPerSecond.toFixed(0)} runs/s)`);
}
const row = {
  agents, gpusPerAgent, memberGpus, sizes: SIZES, background: Number(values.background), gangs: Number(values.gangs),
  burstGangs: Number(values['burst-gangs']), burstSingles: Number(values['burst-singles']), repeats: results.length,
  medianMs: Number(median(results.map((r) => r.medianMs)).toFixed(1)), p95Ms: Number(median(results.map((r) => r.p95Ms)).toFixed(1)),
  gangsPerSecond: Math.round(median(results.map((r) => r.gangsPerSecond))), runsPerSecond: Math.round(median(results.map((r) => r.placementsPerSecond))),
  all: results.map((r) => ({ medianMs: Number(r.medianMs.toFixed(1)), p95Ms: Number(r.p95Ms.toFixed(1)), gangsPerSecond: Math.round(r.gangsPerSecond) })),
};
if (values.json) console.log(JSON.stringify(row));
else {
  console.log(`${agents} agents x ${gpusPerAgent} GPUs, gangs of ${SIZES.join('/')} members x ${memberGpus} GPUs: one gang at a time median ${row.medianMs} ms, p95 ${row.p95Ms} ms `
    + `(runs: ${row.all.map((a) => `${a.medianMs}/${a.p95Ms}`).join(', ')}); burst of ${row.burstGangs} gangs + ${row.burstSingles} single runs: `
    + `median ${row.gangsPerSecond} gangs/s, ${row.runsPerSecond} runs/s (runs: ${row.all.map((a) => a.gangsPerSecond).join(', ')})`);
}
process.exit(0);
