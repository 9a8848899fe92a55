// SubmitRun alone (issue 11's third column), repeated for a median: `submits` SubmitRuns from one client with
// `in-flight` calls outstanding, against a scheduler with no agent (the runs stay queued); runs/s per round.
// One scheduler serves every round (a warm-up round first, not counted), so the rounds differ only in how
// many runs are already queued. Every returned run is checked (Scheduled, asked-for package, distinct id).
//
//   node dist/bench/submit.js [--submits 2000] [--in-flight 16] [--rounds 3] [--json]
import { parseArgs } from 'node:util';
import { median, startNoopTrainyard } from './lib.js';

const { values } = parseArgs({ options: {
  submits: { type: 'string', default: '2000' }, 'in-flight': { type: 'string', default: '16' }, rounds: { type: 'string', default: '3' }, json: { type: 'boolean' },
} });
const n = Number(values.submits);
const width = Number(values['in-flight']);
const rounds = Number(values.rounds);
const r1 = (x: number) => Math.round(x * 10) / 10;

const s = await startNoopTrainyard({ agent: null });
try {
  const ids = new Set<string>();
  const round = async (count: number): Promise<number> => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: width }, async () => {
      while (next < count) {
        next++;
        const run = await s.api.submitRun({ package: 'noop', dataset: 'tiny' });
        if (!['Scheduled', 'Waiting for resources'].includes(run.status) || run.package !== 'noop' || ids.has(run.id)) throw new Error(`unexpected run ${JSON.stringify(run)}`);
        ids.add(run.id);
      }
    }));
    return count / ((performance.now() - t0) / 1000);
  };
  await round(Math.min(n, 200));
  const perS: number[] = [];
  for (let i = 0; i < rounds; i++) {
    perS.push(await round(n));
    if (!values.json) console.error(`[submit] round ${i + 1}: ${r1(perS.at(-1)!)} runs/s`);
  }
  const out = { submits: n, inFlight: width, rounds: perS.map(r1), medianRunsPerS: r1(median(perS)) };
  console.log(values.json ? JSON.stringify(out) : `SubmitRun, ${width} in flight: median ${out.medianRunsPerS} runs/s over ${rounds} rounds of ${n} (${out.rounds.join(', ')})`);
} finally {
  await s.stop();
}
process.exit(0);
