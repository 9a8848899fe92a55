// The soak test: many runs across several agents while components are killed and restarted at random.
// Not part of `npm test` (it runs for minutes): `npm run build && node dist/bench/soak.js --seconds 300`.
// It prints runs submitted, faults injected, runs lost (must be 0) and duplicates (must be 0), and exits
// non-zero if either is not 0.
import { parseArgs } from 'node:util';
import type { Test } from 'tap';
import { Stack, tempDir, writeTree } from '../test/helpers/stack.js';
import { Api } from '../cli/client.js';
import { isTerminal } from '../shared/run-states.js';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '180' }, agents: { type: 'string', default: '3' }, 'fault-every': { type: 'string', default: '6' },
  seed: { type: 'string', default: String(Date.now()) }, json: { type: 'boolean' },
} });
const seconds = Number(values.seconds);
let seed = Number(values.seed);
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => { if (!values.json) console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}`); };

const cleanups: (() => Promise<void> | void)[] = [];
const fakeTest = { teardown: (fn: () => Promise<void> | void) => cleanups.push(fn) } as unknown as Test;

const schedulerEnv = { TRAINYARD_AGENT_LOST_AFTER_MS: '4000', TRAINYARD_DISPATCH_ACK_TIMEOUT_MS: '4000', TRAINYARD_MAX_ATTEMPTS: '5', TRAINYARD_LOG_LEVEL: 'info' };
const s = await Stack.create(fakeTest, { agents: [], privateNats: true, privateMinio: true, schedulerEnv });
const first = s.schedulerAddress;
const secondDaemon = await s.startScheduler(schedulerEnv);
const second = String((await secondDaemon.waitFor((l) => l.msg === 'listening')).address);
const addresses = [first, second];
const addressOf = new Map([[s.daemons.find((d) => d.name === 'scheduler1')!, first], [secondDaemon, second]]);
s.schedulerAddress = addresses.join(',');
const agentNames = Array.from({ length: Number(values.agents) }, (_, i) => `soak${i + 1}`);
for (const name of agentNames) await s.startAgent(name, { cpus: 3, env: { TRAINYARD_LOG_LEVEL: 'info' } });

const train = `
import os, time, random
class Main:
    def train(self, d):
        for i in range(int(os.environ.get("STEPS", "5"))):
            print("step", i, flush=True)
            time.sleep(float(os.environ.get("STEP_S", "0.2")))
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        open(os.path.join(os.environ["artifacts_directory"], "done.txt"), "w").write("ok")
    def save(self):
        open("model.txt", "w").write("ok")
`;
const pushed = await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': train }), '--name', 'soak']);
const data = await s.cli(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n', 'b/c.csv': '2\n' }), '--name', 'soakdata']);
if (pushed.code !== 0 || data.code !== 0) throw new Error(pushed.stderr + data.stderr);

const api = new Api(s.schedulerAddress);
const submitted = new Set<string>();
let faults = 0;
const faultLog: string[] = [];
const end = Date.now() + seconds * 1000;

async function submitLoop(): Promise<void> {
  let n = 0;
  while (Date.now() < end) {
    const key = `soak-${n++}`;
    // A client retries with the same idempotency key until the scheduler answers: never a second run.
    for (;;) {
      try {
        const run = await api.submitRun({ package: 'soak', dataset: pick(['soakdata', 'soakdata/b']), idempotency_key: key, resources: { cpus: 1 },
          env: { STEPS: String(2 + Math.floor(random() * 6)), STEP_S: '0.2' } });
        submitted.add(run.id);
        break;
      } catch (err) {
        if (!(err instanceof TrainyardError) || err.code !== ErrorCodes.Unavailable) throw err;
        await sleep(300);
      }
    }
    await sleep(150 + random() * 350);
  }
}

async function faultLoop(): Promise<void> {
  const every = Number(values['fault-every']) * 1000;
  while (Date.now() + every < end) {
    await sleep(every * (0.5 + random()));
    const kind = pick(['agent', 'agent', 'scheduler', 'nats', 'minio']);
    faults++;
    if (kind === 'agent') {
      const name = pick(agentNames);
      const d = s.daemons.filter((x) => x.name === name && x.alive).pop();
      if (d) await d.kill9();
      await sleep(500 + random() * 3000);
      await s.startAgent(name, { cpus: 3, env: { TRAINYARD_LOG_LEVEL: 'info' } }).catch((e: unknown) => log(`restart ${name}: ${String(e)}`));
    } else if (kind === 'scheduler') {
      const live = s.daemons.filter((x) => x.name.startsWith('scheduler') && x.alive);
      const victim = pick(live);
      const address = addressOf.get(victim)!;
      await victim.kill9();
      await sleep(500 + random() * 2000);
      addressOf.set(await s.startScheduler(schedulerEnv, address), address);
    } else if (kind === 'nats') {
      await s.nats!.kill9();
      await sleep(500 + random() * 2000);
      await s.startNats();
    } else {
      await s.minioDaemon!.kill9();
      await sleep(500 + random() * 2000);
      await s.startMinio();
    }
    faultLog.push(kind);
    log(`fault ${faults}: ${kind}`);
  }
}

log(`soaking for ${seconds} s with ${agentNames.length} agents and 2 schedulers (seed ${values.seed})`);
await Promise.all([submitLoop(), faultLoop()]);
log(`submitted ${submitted.size} runs; waiting for every run to end`);
const settleEnd = Date.now() + 300_000;
let open: string[] = [...submitted];
while (open.length && Date.now() < settleEnd) {
  const rows = await s.query('SELECT id, status FROM runs WHERE id = ANY($1)', [open]);
  open = open.filter((id) => { const r = rows.find((x) => x.id === id); return !r || !isTerminal(r.status); });
  if (open.length) await sleep(1000);
}
const rows = await s.query('SELECT id, status, failure_reason, attempt FROM runs');
const versions = await s.query('SELECT run_id, count(*)::int AS n FROM package_versions WHERE run_id IS NOT NULL GROUP BY run_id');
const byStatus: Record<string, number> = {};
for (const r of rows) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
const missing = [...submitted].filter((id) => !rows.some((r) => r.id === id)).length;
const lost = open.length + missing;
const successful = rows.filter((r) => r.status === 'Successful').map((r) => r.id as string);
const versionCount = new Map(versions.map((v) => [v.run_id as string, v.n as number]));
const duplicates = versions.filter((v) => v.n > 1).length
  + rows.filter((r) => r.status !== 'Successful' && versionCount.has(r.id)).length
  + successful.filter((id) => versionCount.get(id) !== 1).length
  + (rows.length - submitted.size); // a run the clients did not submit (a duplicated submission)
const reasons: Record<string, number> = {};
for (const r of rows.filter((x) => x.status === 'Failed')) reasons[r.failure_reason] = (reasons[r.failure_reason] ?? 0) + 1;
const summary = {
  seconds, agents: agentNames.length, schedulers: 2, runsSubmitted: submitted.size, faultsInjected: faults,
  faults: Object.fromEntries(['agent', 'scheduler', 'nats', 'minio'].map((k) => [k, faultLog.filter((f) => f === k).length])),
  statuses: byStatus, failureReasons: reasons, retriedRuns: rows.filter((r) => r.attempt > 1).length, runsLost: lost, duplicates,
};
console.log(values.json ? JSON.stringify(summary) : [
  `runs submitted:  ${summary.runsSubmitted}`,
  `faults injected: ${summary.faultsInjected} ${JSON.stringify(summary.faults)}`,
  `final statuses:  ${JSON.stringify(byStatus)}${Object.keys(reasons).length ? ` failures: ${JSON.stringify(reasons)}` : ''}`,
  `runs retried:    ${summary.retriedRuns}`,
  `runs lost:       ${lost}`,
  `duplicates:      ${duplicates}`,
].join('\n'));
api.close();
for (const c of cleanups.reverse()) await c();
process.exit(lost === 0 && duplicates === 0 ? 0 : 1);
