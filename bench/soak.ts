// The soak test: many runs, CPU and GPU, across several agents while components are killed and restarted
// at random and a client kills runs at random moments, some of them right as their agent is killed -9
// (so the kill races the requeue), and high-priority runs preempt lower ones on a full fleet (issue 22).
// Not part of `npm test` (it runs for minutes):
//
//   npm run soak -- --seconds 300 [--agents 6] [--fault-every 6] [--kill-every 3] [--preempt-every 8] [--gang-every 4] [--seed N] [--json]
//
// Preemption: the project is preemptible (--min-runtime 1 s); every --preempt-every seconds a wave of long
// low-priority GPU runs fills the GPUs, then high-priority GPU runs arrive and must preempt some of them.
//
// Agent-daemon restarts (issue 22): besides the agent kills above (whose runs race client kills), an agent
// is killed -9 and started again at once; the runs it had training are counted, and whether each ended on
// that same attempt (taken over by the restarted agent) or was requeued ("agent restarts" in the summary).
//
// Agents reach the schedulers through a proxy that loses a tenth of the claim and finish replies after the
// scheduler committed them (the agent retries, or forgets the attempt and the scheduler takes it back).
//
// Gangs (issue 24): every --gang-every seconds a multi-agent run of examples/packages/gang-allreduce (2, 3
// or 4 agents, 1 or 2 processes on each, some with a GPU per process), whose ranks meet at rank 0's
// MASTER_ADDR:MASTER_PORT (each agent advertises its own loopback address, 127.0.0.2 and up) and all-reduce
// RANK+1. They take the client kills and faults as the other runs do. Throughout, the soak samples the
// database twice a second for a partial gang (scheduler/invariants.ts partialGangs: a gang run holding GPUs
// on some of its members but not all, or while it waits), which must never be seen.
//
// At the end it waits (bounded, --settle-seconds) for every run to end, then checks:
//   lost          runs the clients submitted that are missing, or still not terminal (must be 0)
//   duplicates    a second run for one idempotency key, or a run with other than one version (must be 0)
//   kills         every run the soak killed ends Killed, unless the kill came too late: the KillRun reply
//                 already showed the run Successful or Failed (it had ended before the kill landed). A
//                 kill the scheduler accepted (reply not terminal, or Killed) that ends otherwise is
//                 "not honoured" (must be 0)
//   invariants    the scheduler's own check (`trainyard doctor`, the Doctor rpc): nothing found now and
//                 nothing ever recorded by the invariant sweep (must be 0; "doctor unavailable" fails)
//   non-terminal  runs of any kind not in a terminal state at the end (must be 0)
//   gpus          a run whose CUDA_VISIBLE_DEVICES did not hold exactly the GPUs it asked for fails with
//                 "asked for N GPUs" (must be 0)
//   gangs         every gang ended like any run (counted in lost, duplicates, kills above); each Successful
//                 one's rank 0 summed 1+2+...+WORLD_SIZE (its rank-0.json), so every rank ran; no sampled
//                 instant showed a partial gang (must be 0)
//   shutdown      every daemon still running stops cleanly at the end (no SIGKILL, exit 0)
// and exits non-zero unless all of them hold.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Test } from 'tap';
import { Stack, fakeGpus, freePort, root, tempDir, writeTree, type AgentOptions } from '../test/helpers/stack.js';
import { Api } from '../cli/client.js';
import { isTerminal, terminalStatuses } from '../shared/run-states.js';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';
import { doctorCheck, type DoctorResult } from './lib.js';
import { startReplyDropper } from '../test/helpers/reply-dropper.js';
import { createDb } from '../scheduler/db/database.js';
import { partialGangs } from '../scheduler/invariants.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '180' }, agents: { type: 'string', default: '6' }, 'fault-every': { type: 'string', default: '6' },
  'kill-every': { type: 'string', default: '3' }, 'preempt-every': { type: 'string', default: '8' }, 'gang-every': { type: 'string', default: '4' }, 'settle-seconds': { type: 'string', default: '300' },
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

// The scheduler's loss deadline: longer than an agent daemon's restart takes on a busy 2-core box with six
// agents (4-8 s from kill -9 to registered: Node's start under load), so a restart is a restart (its runs
// taken over) and not a loss; an "agent" fault stays down longer than it, so it is a real loss.
const LOST_MS = 10_000;
const schedulerEnv = { TRAINYARD_AGENT_LOST_AFTER_MS: String(LOST_MS), TRAINYARD_DISPATCH_ACK_TIMEOUT_MS: '4000', TRAINYARD_MAX_ATTEMPTS: '5', TRAINYARD_LOG_LEVEL: 'info',
  TRAINYARD_PREEMPT_MIN_RUNTIME_S: '1' };
const s = await Stack.create(fakeTest, { agents: [], privateNats: true, privateMinio: true, schedulerEnv });
const first = s.schedulerAddress;
const secondDaemon = await s.startScheduler(schedulerEnv);
const second = String((await secondDaemon.waitFor((l) => l.msg === 'listening')).address);
const addresses = [first, second];
const addressOf = new Map([[s.daemons.find((d) => d.name === 'scheduler1')!, first], [secondDaemon, second]]);
s.schedulerAddress = addresses.join(',');

// A mixed fleet: two of every three agents have two (fake) H100s, the third is CPU only. An agent keeps
// its GPUs across restarts (the same options every time it is started). Each advertises its own loopback
// address (a gang's MASTER_ADDR when it is rank 0) and its own rendezvous ports, as agents on their own
// hosts would.
const agentNames = Array.from({ length: Number(values.agents) }, (_, i) => `soak${i + 1}`);
// Agents reach the schedulers through a proxy that loses one in ten claim and finish replies after the
// scheduler committed them (test/helpers/reply-dropper.ts): the claim and the end report must be idempotent.
const dropper = await startReplyDropper(addresses.join(','), (m) => (m === 'ClaimAttempt' || m === 'FinishAttempt') && random() < 0.1);
cleanups.push(() => dropper.close());
const rendezvous = await Promise.all(agentNames.map(() => freePort()));
const agentOptions = new Map<string, AgentOptions>(agentNames.map((name, i) => [name, {
  cpus: 3, gpus: i % 3 === 2 ? [] : fakeGpus(2, name), env: { TRAINYARD_LOG_LEVEL: 'info', TRAINYARD_SCHEDULER: dropper.address,
    TRAINYARD_ADVERTISE_ADDR: `127.0.0.${i + 2}`, TRAINYARD_RENDEZVOUS_PORTS: `${rendezvous[i]}-${rendezvous[i]! + 7}` },
}]));
const gpuAgents = agentNames.filter((n) => (agentOptions.get(n)!.gpus ?? []).length > 0).length;
for (const name of agentNames) await s.startAgent(name, agentOptions.get(name));

// train() checks that it got exactly the GPUs it asked for (a run given someone else's GPU, or none,
// fails with that reason), then works in steps so that kills and faults land mid-run.
const train = `
import os, time
class Main:
    def train(self, d):
        want = int(os.environ.get("GPUS", "0"))
        got = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
        if len(got) != want:
            raise ValueError("asked for %d GPUs, CUDA_VISIBLE_DEVICES=%r" % (want, os.environ.get("CUDA_VISIBLE_DEVICES")))
        for i in range(int(os.environ.get("STEPS", "5"))):
            print("step", i, flush=True)
            time.sleep(float(os.environ.get("STEP_S", "0.2")))
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        open(os.path.join(os.environ["artifacts_directory"], "done.txt"), "w").write(",".join(got) or "cpu")
    def save(self):
        open("model.txt", "w").write("ok")
`;
const pushed = await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': train }), '--name', 'soak']);
const data = await s.cli(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n', 'b/c.csv': '2\n' }), '--name', 'soakdata']);
const gangPushed = await s.cli(['package', 'push', path.join(root, 'examples', 'packages', 'gang-allreduce'), '--name', 'soakgang']);
if (pushed.code !== 0 || data.code !== 0 || gangPushed.code !== 0) throw new Error(pushed.stderr + data.stderr + gangPushed.stderr);
// Every soak run is the admin token's project's ("default"): its runs may be preempted.
const preemptible = await s.cli(['projects', 'set', 'default', '--preemptible', 'true']);
if (preemptible.code !== 0) throw new Error(preemptible.stderr);

const api = s.api();
const submitted = new Set<string>();
const gpuRuns = new Set<string>();
/** Gang runs by id: members (N) and processes on each (P). */
const gangs = new Map<string, { agents: number; procs: number; gpus: number }>();
let faults = 0;
const faultLog: string[] = [];
const end = Date.now() + seconds * 1000;

/** Retries a call while no scheduler answers (one may be down on purpose), for up to a minute. */
async function whileUnavailable<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof TrainyardError) || err.code !== ErrorCodes.Unavailable || Date.now() > deadline) throw err;
      await sleep(300);
    }
  }
}

async function submitLoop(): Promise<void> {
  let n = 0;
  while (Date.now() < end) {
    const key = `soak-${n++}`;
    // Most runs are CPU only; some want one GPU, a few two (only the GPU agents can take those).
    const r = random();
    const gpus = gpuAgents === 0 ? 0 : r < 0.6 ? 0 : r < 0.9 ? 1 : 2;
    // A client retries with the same idempotency key until the scheduler answers: never a second run.
    const run = await whileUnavailable(() => api.submitRun({
      package: 'soak', dataset: pick(['soakdata', 'soakdata/b']), idempotency_key: key, resources: { cpus: 1, gpus },
      env: { STEPS: String(2 + Math.floor(random() * 6)), STEP_S: '0.2', GPUS: String(gpus) },
    }));
    submitted.add(run.id);
    if (gpus) gpuRuns.add(run.id);
    await sleep(150 + random() * 350);
  }
}

// Kills by the client. `reply` is the run's status in KillRun's answer: Successful or Failed there means
// the run had ended before the kill landed, so it keeps that status; anything else means the scheduler
// accepted the kill and the run must end Killed.
interface Kill { reply: string; killRequested: boolean; racing: boolean; error?: string }
const kills = new Map<string, Kill>();
const pendingKills: Promise<void>[] = [];

async function killRun(id: string, racing: boolean): Promise<void> {
  if (kills.has(id)) return;
  kills.set(id, { reply: '', killRequested: false, racing });
  try {
    const run = await whileUnavailable(() => api.killRun(id));
    kills.set(id, { reply: run.status, killRequested: run.kill_requested, racing });
  } catch (err) {
    kills.set(id, { reply: '', killRequested: false, racing, error: err instanceof Error ? err.message : String(err) });
  }
}

async function killLoop(): Promise<void> {
  const every = Number(values['kill-every']) * 1000;
  if (!(every > 0)) return;
  while (Date.now() + every < end) {
    await sleep(every * (0.5 + random()));
    // A run that has not ended (queued, packaging or running, whichever it is now); the run may still end
    // before the kill lands, which is the race this is for.
    const live = (await s.query('SELECT id FROM runs WHERE NOT (status::text = ANY($1))', [[...terminalStatuses]]).catch(() => []))
      .map((r) => r.id as string).filter((id) => submitted.has(id) && !kills.has(id));
    if (live.length) await killRun(pick(live), false);
  }
}

// Preemption waves: long low-priority GPU runs to fill every GPU, then, once they run, high-priority ones
// that nothing free can take. Submitted like the others (idempotency keys, retried while unavailable).
const urgentRuns = new Set<string>();
async function preemptLoop(): Promise<void> {
  const every = Number(values['preempt-every']) * 1000;
  if (!(every > 0) || gpuAgents === 0) return;
  let wave = 0;
  while (Date.now() + every < end) {
    await sleep(every * (0.5 + random()));
    const w = wave++;
    const submit = async (key: string, priority: number, steps: number) => {
      const run = await whileUnavailable(() => api.submitRun({
        package: 'soak', dataset: 'soakdata', idempotency_key: key, priority, resources: { cpus: 1, gpus: 1 },
        env: { STEPS: String(steps), STEP_S: '0.2', GPUS: '1' },
      }));
      submitted.add(run.id);
      gpuRuns.add(run.id);
      return run.id;
    };
    for (let i = 0; i < gpuAgents * 2; i++) await submit(`soak-fill-${w}-${i}`, 0, 40);
    await sleep(2500);
    for (let i = 0; i < 2; i++) urgentRuns.add(await submit(`soak-urgent-${w}-${i}`, 10, 3));
    log(`preemption wave ${w + 1}: ${gpuAgents * 2} long runs, then 2 high-priority ones`);
  }
}

// Gangs: 2, 3 or 4 members (4 only CPU: 4 of the 6 agents have GPUs), 1 or 2 processes on each, half
// with a GPU per process; each rank holds a moment after the all-reduce, so that faults and kills land
// while the gang runs.
async function gangLoop(): Promise<void> {
  const every = Number(values['gang-every']) * 1000;
  if (!(every > 0)) return;
  let n = 0;
  while (Date.now() < end) {
    await sleep(every * (0.5 + random()));
    if (Date.now() >= end) break;
    const gpu = gpuAgents >= 3 && random() < 0.5;
    const agents = gpu ? pick([2, 2, 3]) : pick([2, 3, 4].filter((k) => k <= agentNames.length));
    const procs = pick([1, 2]);
    const gpus = gpu ? procs : 0;
    const key = `soak-gang-${n++}`;
    const run = await whileUnavailable(() => api.submitRun({
      package: 'soakgang', dataset: 'soakdata', idempotency_key: key, resources: { cpus: 1, gpus }, agents, procs_per_agent: procs,
      env: { HOLD_SECONDS: (0.5 + random() * 2).toFixed(1) },
    }));
    submitted.add(run.id);
    gangs.set(run.id, { agents, procs, gpus });
    if (gpus) gpuRuns.add(run.id);
  }
}

// The partial-gang sampler: one read of the database (one instant) every half second, from the first
// submission until every run has ended. `placed` counts the samples that saw a gang holding GPUs, so that
// 0 violations means something.
const gangSampling = { samples: 0, withGangHoldingGpus: 0, errors: 0, violations: new Map<string, string>() };
const sampleDb = createDb(s.databaseUrl, 2);
let sampling = true;
async function sampleLoop(): Promise<void> {
  while (sampling) {
    try {
      for (const g of await partialGangs(sampleDb.db)) gangSampling.violations.set(`${g.id}: ${g.detail}`, new Date().toISOString());
      const [row] = await s.query('SELECT count(DISTINCT l.run_id)::int AS n FROM gpu_leases l JOIN runs r ON r.id = l.run_id AND r.agents > 1');
      gangSampling.samples++;
      if (row!.n > 0) gangSampling.withGangHoldingGpus++;
    } catch { gangSampling.errors++; }
    await sleep(500);
  }
}

async function faultLoop(): Promise<void> {
  const every = Number(values['fault-every']) * 1000;
  while (Date.now() + every < end) {
    await sleep(every * (0.5 + random()));
    const kind = pick(['agent', 'agent', 'restart', 'restart', 'scheduler', 'nats', 'minio']);
    faults++;
    if (kind === 'agent') {
      // Preferably an agent holding runs nobody has killed yet, so that the kills below race a requeue.
      const holding = (await s.query('SELECT id, agent FROM runs WHERE agent IS NOT NULL'))
        .filter((r) => !kills.has(r.id as string) && agentNames.includes(r.agent as string));
      const name = holding.length && random() < 0.8 ? (pick(holding).agent as string) : pick(agentNames);
      const d = s.daemons.filter((x) => x.name === name && x.alive).pop();
      // The runs it holds: most of them the client kills at a random moment in the next LOST_MS + 2 s,
      // while the scheduler notices the loss (after LOST_MS) and requeues them, so each kill races a requeue.
      const held = holding.filter((r) => r.agent === name).map((r) => r.id as string);
      if (d) await d.kill9();
      const doomed = held.filter(() => random() < 0.7);
      log(`kill -9 ${name}, which holds ${held.length} run(s); killing ${doomed.length} of them as it is lost`);
      for (const id of doomed) {
        const delay = random() * (LOST_MS + 2000);
        pendingKills.push(sleep(delay).then(() => killRun(id, true)));
      }
      // Down past the loss deadline: the scheduler requeues its runs (a restart in time is the "restart" fault).
      await sleep(LOST_MS + 500 + random() * 3000);
      await s.startAgent(name, agentOptions.get(name)).catch((e: unknown) => log(`restart ${name}: ${String(e)}`));
    } else if (kind === 'restart') {
      await restartAgent();
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

// Agent-daemon restarts (issue 22): kill -9 of an agent and the same agent (name, work dir) started again
// at once, no client kills. Its runs that had started training (their attempt written down in the work dir,
// agent/reattach.ts) must be taken over by the restarted agent: they end on the same attempt, not requeued.
const restarts: { agent: string; startMs: number; runs: { id: string; attempt: number }[] }[] = [];
async function restartAgent(): Promise<void> {
  const holding = (await s.query('SELECT id, agent, attempt FROM runs WHERE agent IS NOT NULL AND status = \'Running\''))
    .filter((r) => agentNames.includes(r.agent as string));
  const name = holding.length ? (pick(holding).agent as string) : pick(agentNames);
  const work = path.join(s.dir, `work-${name}`);
  const runs = holding.filter((r) => r.agent === name && existsSync(path.join(work, `${r.id}-a${r.attempt}.reattach.json`)))
    .map((r) => ({ id: r.id as string, attempt: r.attempt as number }));
  const d = s.daemons.filter((x) => x.name === name && x.alive).pop();
  if (d) await d.kill9();
  await sleep(200 + random() * 800);
  const t0 = Date.now();
  await s.startAgent(name, agentOptions.get(name)).catch((e: unknown) => log(`restart ${name}: ${String(e)}`));
  restarts.push({ agent: name, startMs: Date.now() - t0, runs });
  log(`restarted ${name} (kill -9, started again in ${Date.now() - t0} ms) with ${runs.length} run(s) training`);
}

log(`soaking for ${seconds} s with ${agentNames.length} agents (${gpuAgents} with GPUs) and 2 schedulers (seed ${values.seed})`);
const sampler = sampleLoop();
await Promise.all([submitLoop(), faultLoop(), killLoop(), preemptLoop(), gangLoop()]);
await Promise.all(pendingKills);
log(`submitted ${submitted.size} runs, killed ${kills.size}; waiting for every run to end`);
const settleEnd = Date.now() + Number(values['settle-seconds']) * 1000;
let open: string[] = [...submitted];
while (open.length && Date.now() < settleEnd) {
  const rows = await s.query('SELECT id, status FROM runs WHERE id = ANY($1)', [open]);
  open = open.filter((id) => { const r = rows.find((x) => x.id === id); return !r || !isTerminal(r.status); });
  if (open.length) await sleep(1000);
}
sampling = false;
await sampler;
await sampleDb.db.destroy();
const rows = await s.query('SELECT id, status, failure_reason, attempt FROM runs');
const versions = await s.query('SELECT run_id, count(*)::int AS n FROM package_versions WHERE run_id IS NOT NULL GROUP BY run_id');
const byStatus: Record<string, number> = {};
for (const r of rows) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
const missing = [...submitted].filter((id) => !rows.some((r) => r.id === id)).length;
const lost = open.length + missing;
const nonTerminal = rows.filter((r) => !isTerminal(r.status)).map((r) => `${r.id} (${r.status})`);
const successful = rows.filter((r) => r.status === 'Successful').map((r) => r.id as string);
const versionCount = new Map(versions.map((v) => [v.run_id as string, v.n as number]));
const duplicates = versions.filter((v) => v.n > 1).length
  + rows.filter((r) => r.status !== 'Successful' && versionCount.has(r.id)).length
  + successful.filter((id) => versionCount.get(id) !== 1).length
  + (rows.length - submitted.size); // a run the clients did not submit (a duplicated submission)
const reasons: Record<string, number> = {};
for (const r of rows.filter((x) => x.status === 'Failed')) reasons[r.failure_reason] = (reasons[r.failure_reason] ?? 0) + 1;
// train() fails with this reason when CUDA_VISIBLE_DEVICES does not hold exactly the GPUs it asked for.
const gpuMismatches = rows.filter((r) => r.status === 'Failed' && String(r.failure_reason).includes('asked for ')).map((r) => `${r.id}: ${r.failure_reason}`);

// The kills' outcomes (see the top of the file).
const statusOf = new Map(rows.map((r) => [r.id as string, r.status as string]));
const killOutcome = { killed: 0, endedFirst: 0, notHonoured: [] as string[], unanswered: [] as string[], racing: 0 };
for (const [id, k] of kills) {
  if (k.racing) killOutcome.racing++;
  const final = statusOf.get(id) ?? 'missing';
  if (k.error) killOutcome.unanswered.push(`${id}: ${k.error}`);
  else if (final === 'Killed') killOutcome.killed++;
  else if ((k.reply === 'Successful' || k.reply === 'Failed') && final === k.reply) killOutcome.endedFirst++;
  else killOutcome.notHonoured.push(`${id}: kill reply ${k.reply}${k.killRequested ? ' (kill_requested)' : ''}, ended ${final}${k.racing ? ' (racing a requeue)' : ''}`);
}

// Preemptions: how many, and how the preempted runs ended (each must end like any run: none lost).
const preemptions = await s.query<{ run_id: string; by_run: string }>('SELECT run_id, by_run FROM run_preemptions');
const preemptedIds = new Set(preemptions.map((p) => p.run_id));
const preemptedEnds: Record<string, number> = {};
for (const id of new Set(preemptions.map((p) => p.run_id))) preemptedEnds[statusOf.get(id) ?? 'missing'] = (preemptedEnds[statusOf.get(id) ?? 'missing'] ?? 0) + 1;

// Restarts: each run that was training when its agent was killed and started again ended on that attempt
// (taken over), unless the restart outlasted the scheduler's loss deadline (then it is lost and requeued,
// as any agent loss is: said with the restart's time).
const attemptOf = new Map(rows.map((r) => [r.id as string, r.attempt as number]));
const restartRuns = restarts.flatMap((r) => r.runs.map((x) => ({ ...x, agent: r.agent, startMs: r.startMs })));
const requeuedAfterRestart = restartRuns.filter((x) => attemptOf.get(x.id) !== x.attempt && !preemptedIds.has(x.id))
  .map((x) => `${x.id}: attempt ${x.attempt} on ${x.agent} (restarted in ${x.startMs} ms) ended as attempt ${attemptOf.get(x.id)}`);

// Gangs: each ended like any run; each Successful one's rank 0 got every rank's RANK+1 (its rank-0.json,
// uploaded before the success was committed), which it could only have if every rank ran and met it.
const gangIds = [...gangs.keys()];
// One version for a Successful gang (rank 0's save() alone), none otherwise.
const gangDuplicates = gangIds.filter((id) => (versionCount.get(id) ?? 0) !== (statusOf.get(id) === 'Successful' ? 1 : 0));
const gangLost = gangIds.filter((id) => open.includes(id) || !statusOf.has(id));
const gangEnds: Record<string, number> = {};
for (const id of gangIds) gangEnds[statusOf.get(id) ?? 'missing'] = (gangEnds[statusOf.get(id) ?? 'missing'] ?? 0) + 1;
const gangRanksMissing: string[] = [];
for (const id of gangIds.filter((x) => statusOf.get(x) === 'Successful')) {
  const g = gangs.get(id)!;
  const world = g.agents * g.procs;
  try {
    const r0 = JSON.parse(await s.objectText(`runs/${id}/attempt-${attemptOf.get(id)}/artifacts/rank-0.json`)) as { sum: number; env: Record<string, string> };
    if (r0.sum !== (world * (world + 1)) / 2 || r0.env.WORLD_SIZE !== String(world)) gangRanksMissing.push(`${id}: rank 0 summed ${r0.sum} over WORLD_SIZE ${r0.env.WORLD_SIZE}, want ${(world * (world + 1)) / 2} over ${world}`);
  } catch (err) {
    gangRanksMissing.push(`${id}: rank-0.json of attempt ${attemptOf.get(id)} unreadable (${err instanceof Error ? err.message : String(err)})`);
  }
}
const partialGangViolations = [...gangSampling.violations.keys()];

const doctor: DoctorResult = await doctorCheck(s, api);
const violations = doctor.available ? doctor.current.length + doctor.recordedTotal : 1;

api.close();
let shutdownProblems = '';
for (const c of cleanups.reverse()) {
  try { await c(); } catch (err) { shutdownProblems = err instanceof Error ? err.message : String(err); }
}

const summary = {
  seconds, seed: values.seed, agents: agentNames.length, gpuAgents, schedulers: 2, runsSubmitted: submitted.size, gpuRuns: gpuRuns.size,
  faultsInjected: faults, urgentRuns: urgentRuns.size, preemptions: preemptions.length, preemptedRunsEnded: preemptedEnds,
  agentRestarts: { restarts: restarts.length, runsTraining: restartRuns.length, takenOver: restartRuns.length - requeuedAfterRestart.length, requeued: requeuedAfterRestart },
  faults: Object.fromEntries(['agent', 'restart', 'scheduler', 'nats', 'minio'].map((k) => [k, faultLog.filter((f) => f === k).length])),
  repliesDropped: { ...dropper.dropped },
  statuses: byStatus, failureReasons: reasons, retriedRuns: rows.filter((r) => r.attempt > 1).length, runsLost: lost, duplicates,
  kills: { requested: kills.size, racingRequeue: killOutcome.racing, endedKilled: killOutcome.killed, endedBeforeKill: killOutcome.endedFirst,
    notHonoured: killOutcome.notHonoured, unanswered: killOutcome.unanswered },
  gangs: { submitted: gangs.size, bySize: Object.fromEntries([2, 3, 4].map((k) => [k, [...gangs.values()].filter((g) => g.agents === k).length])),
    withGpus: [...gangs.values()].filter((g) => g.gpus > 0).length, ended: gangEnds, succeeded: gangEnds.Successful ?? 0,
    retried: gangIds.filter((id) => (attemptOf.get(id) ?? 0) > 1).length, lost: gangLost.length, duplicates: gangDuplicates.length,
    ranksMissing: gangRanksMissing, partialGangViolations: partialGangViolations.length, samples: gangSampling.samples,
    samplesWithGangHoldingGpus: gangSampling.withGangHoldingGpus, sampleErrors: gangSampling.errors },
  gpuMismatches, invariantViolations: violations, doctor, nonTerminalAtEnd: nonTerminal.length, nonTerminal: nonTerminal.slice(0, 20),
  shutdownProblems,
};
const ok = lost === 0 && duplicates === 0 && violations === 0 && nonTerminal.length === 0
  && killOutcome.notHonoured.length === 0 && killOutcome.unanswered.length === 0 && gpuMismatches.length === 0 && !shutdownProblems
  && gangLost.length === 0 && gangDuplicates.length === 0 && gangRanksMissing.length === 0 && partialGangViolations.length === 0;
const doctorLine = !doctor.available ? `doctor unavailable (${doctor.error})`
  : `${violations} (via ${doctor.via}: now ${doctor.current.length}, recorded ${doctor.recordedTotal}${doctor.recordedTotal ? ` ${JSON.stringify(doctor.recordedByKind)}` : ''})`;
console.log(values.json ? JSON.stringify(summary) : [
  `runs submitted:  ${summary.runsSubmitted} (${gpuRuns.size} with GPUs; ${summary.runsSubmitted - gangs.size} single runs, ${gangs.size} gangs)`,
  `faults injected: ${summary.faultsInjected} ${JSON.stringify(summary.faults)}`,
  `preemptions:     ${preemptions.length} by ${urgentRuns.size} high-priority runs; the preempted runs ended ${JSON.stringify(preemptedEnds)}`,
  `agent restarts:  ${restarts.length} (kill -9, started again): ${restartRuns.length} run(s) training then, ${restartRuns.length - requeuedAfterRestart.length} ended on the same attempt (taken over), ${requeuedAfterRestart.length} requeued`,
  ...requeuedAfterRestart.slice(0, 10).map((l) => `  ${l}`),
  `replies dropped: ${JSON.stringify(summary.repliesDropped)} (after the scheduler committed)`,
  `client kills:    ${kills.size} (${killOutcome.racing} racing a requeue): ${killOutcome.killed} Killed, ${killOutcome.endedFirst} ended before the kill, `
    + `${killOutcome.notHonoured.length} not honoured, ${killOutcome.unanswered.length} unanswered`,
  ...[...killOutcome.notHonoured, ...killOutcome.unanswered].slice(0, 10).map((l) => `  ${l}`),
  `gangs:           ${gangs.size} submitted (${summary.gangs.withGpus} with GPUs; by members ${JSON.stringify(summary.gangs.bySize)}), `
    + `${summary.gangs.succeeded} succeeded with every rank in the all-reduce, ${summary.gangs.retried} retried, ended ${JSON.stringify(gangEnds)}; `
    + `${gangLost.length} lost, ${gangDuplicates.length} duplicates, ${gangRanksMissing.length} missing a rank, `
    + `${partialGangViolations.length} partial-gang violations in ${gangSampling.samples} samples (${gangSampling.withGangHoldingGpus} with a gang holding GPUs${gangSampling.errors ? `, ${gangSampling.errors} unread` : ''})`,
  ...[...gangRanksMissing, ...partialGangViolations].slice(0, 10).map((l) => `  ${l}`),
  `final statuses:  ${JSON.stringify(byStatus)}${Object.keys(reasons).length ? ` failures: ${JSON.stringify(reasons)}` : ''}`,
  `gpu mismatches:  ${gpuMismatches.length}${gpuMismatches.length ? ` ${gpuMismatches.slice(0, 5).join('; ')}` : ''}`,
  `runs retried:    ${summary.retriedRuns}`,
  `runs lost:       ${lost}`,
  `duplicates:      ${duplicates}`,
  `invariant violations: ${doctorLine}`,
  ...(doctor.available ? doctor.current.concat(doctor.recent).slice(0, 10).map((v) => `  ${v}`) : []),
  `non-terminal at end: ${nonTerminal.length}${nonTerminal.length ? ` ${nonTerminal.slice(0, 10).join(', ')}` : ''}`,
  `shutdown:        ${shutdownProblems || 'clean'}`,
  `daemon logs:     ${s.dir}`,
  `result:          ${ok ? 'PASS' : 'FAIL'}`,
].join('\n'));
process.exit(ok ? 0 : 1);
