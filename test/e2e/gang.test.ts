// Multi-agent (gang) runs (issue 24): agents on this machine on their own loopback addresses
// (--advertise-addr 127.0.0.2, 127.0.0.3) run examples/packages/gang-allreduce, whose ranks meet at
// MASTER_ADDR:MASTER_PORT with the standard library alone, all-reduce a number, and rank 0 saves the sum;
// a member killed with SIGKILL mid-run requeues the whole gang, which then succeeds; two gangs racing
// for too few agents never deadlock (one runs, the other holds nothing while it waits); every member is in
// run get, _results.json and _lineage.json; one silent rank stalls the whole gang (--stall-timeout), even
// while the other ranks of its own agent print.
import t from 'tap';
import path from 'node:path';
import { Stack, freePort, fakeGpus, tempDir, writeTree, root } from '../helpers/stack.js';
import { Gate, gatedTrainPy, until, waitForLog } from '../helpers/packages.js';
import { signedInPage } from '../helpers/console-project.js';

const example = path.join(root, 'examples', 'packages', 'gang-allreduce');

/** Agents a1.. on 127.0.0.2, 127.0.0.3, ...; each with one fake GPU of its own and its own rendezvous ports. */
async function gangStack(t: Tap.Test, n: number, schedulerEnv: Record<string, string> = {}) {
  const agents = [];
  for (let i = 0; i < n; i++) {
    const port = await freePort();
    agents.push({ name: `a${i + 1}`, cpus: 2, gpus: fakeGpus(2, `gang${i}`),
      env: { TRAINYARD_ADVERTISE_ADDR: `127.0.0.${i + 2}`, TRAINYARD_RENDEZVOUS_PORTS: `${port}-${port + 1}` } });
  }
  const s = await Stack.create(t, { agents, schedulerEnv });
  await s.cliJson(['package', 'push', example, '--name', 'gang']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  return s;
}

/** The pid of global rank `rank` of the run's current attempt, as the example prints it ("[rank R] pid N"). */
async function pidOfRank(s: Stack, runId: string, rank: number): Promise<number | null> {
  const rows = await s.query<{ text: string }>(`SELECT l.text FROM run_logs l JOIN runs r ON r.id = l.run_id AND r.attempt = l.attempt
    WHERE l.run_id = $1 AND l.text LIKE $2`, [runId, `[rank ${rank}] pid %`]);
  return rows.length ? Number(rows[0]!.text.split(' ').pop()) : null;
}

/** On failure, what the run said (its reason and log), for whoever reads the test's output. */
async function explain(t: Tap.Test, s: Stack, runId: string): Promise<void> {
  const [r] = await s.query('SELECT status, failure_reason FROM runs WHERE id = $1', [runId]);
  if (r?.status === 'Successful') return;
  const logs = await s.query<{ attempt: number; text: string }>('SELECT attempt, text FROM run_logs WHERE run_id = $1 ORDER BY attempt, seq', [runId]);
  const events = await s.query<{ detail: string }>('SELECT detail FROM run_events WHERE run_id = $1 ORDER BY id', [runId]);
  t.comment(`${runId} ${r?.status}: ${r?.failure_reason}\n${events.map((e) => e.detail).join('\n')}\n${logs.map((l) => `${l.attempt}: ${l.text}`).join('\n')}`);
}

t.test('2 agents x 2 processes: every rank gets torchrun\'s env, they all-reduce at MASTER_ADDR:MASTER_PORT, rank 0 saves the sum', async (t) => {
  const s = await gangStack(t, 2);
  // --prefer-same names a label neither agent has: the gang is placed mixed (README) rather than wait.
  const run = await s.cliJson(['run', 'train', '--package', 'gang', '--dataset', 'd', '--agents', '2', '--procs-per-agent', '2', '--gpu', '--prefer-same', 'rack']);
  t.equal(run.agents, 2, 'the run has 2 members');
  t.equal(run.prefer_same, 'rack', 'run get --json says which label its members prefer to share');
  t.equal(run.procs_per_agent, 2, 'of 2 processes each');
  t.equal(run.resources.gpus, 2, '--gpu with 2 processes: one GPU per process, 2 per member');
  const done = await s.waitForStatus(run.id, ['Successful', 'Failed', 'Killed']);
  await explain(t, s, run.id);
  t.equal(done.status, 'Successful', `the gang succeeded (${done.failure_reason ?? ''})`);
  const [row] = await s.query('SELECT last_agent AS agent, master_port, attempt FROM runs WHERE id = $1', [run.id]);
  const prefix = `runs/${run.id}/attempt-${row!.attempt}/`;
  const ranks = [];
  for (const key of [`${prefix}artifacts/rank-0.json`, `${prefix}artifacts/rank-1.json`, `${prefix}node-1/artifacts/rank-2.json`, `${prefix}node-1/artifacts/rank-3.json`]) {
    ranks.push(JSON.parse(await s.objectText(key)) as { rank: number; sum: number; env: Record<string, string> });
  }
  const uuids = new Set<string>();
  for (const [i, r] of ranks.entries()) {
    t.equal(r.rank, i, `rank ${i} wrote its own file`);
    t.equal(r.sum, 10, `rank ${i} got the all-reduced sum 1+2+3+4`);
    t.equal(r.env.WORLD_SIZE, '4');
    t.equal(r.env.NNODES, '2');
    t.equal(r.env.LOCAL_WORLD_SIZE, '2');
    t.equal(r.env.LOCAL_RANK, String(i % 2));
    t.equal(r.env.NODE_RANK, String(Math.floor(i / 2)));
    t.equal(r.env.GROUP_RANK, String(Math.floor(i / 2)));
    t.equal(r.env.MASTER_ADDR, row!.agent === 'a1' ? '127.0.0.2' : '127.0.0.3', 'MASTER_ADDR is rank 0\'s agent\'s --advertise-addr');
    t.equal(r.env.MASTER_PORT, String(row!.master_port), 'MASTER_PORT is the port rank 0\'s agent gave the attempt');
    t.equal(r.env.TORCHELASTIC_RUN_ID, `${run.id}-${row!.attempt}`);
    t.match(r.env.CUDA_VISIBLE_DEVICES, /^GPU-gang\d-\d$/, 'each process sees one GPU, by UUID');
    uuids.add(r.env.CUDA_VISIBLE_DEVICES);
  }
  t.equal(uuids.size, 4, 'no two ranks share a GPU');
  // A member's last lines may arrive just after rank 0's end report ended the run (README, "Multi-agent runs").
  for (let r = 0; r < 4; r++) {
    const line = `[rank ${r}] all-reduce sum 10.0`;
    t.equal(await waitForLog(s, run.id, line, 30_000).then(() => line, (err: unknown) => String(err)), line, `rank ${r}'s lines are in the run's log, whole, with its rank`);
  }
  const versions = await s.query('SELECT major, minor FROM package_versions WHERE package = $1 AND run_id = $2', ['gang', run.id]);
  t.equal(versions.length, 1, 'one version: only global rank 0 saved');
  const only = await s.cli(['run', 'logs', run.id, '--rank', '3']);
  t.equal(only.code, 0, only.stderr);
  t.match(only.stdout, /\[rank 3\] all-reduce sum 10\.0/, 'run logs --rank 3 shows rank 3\'s lines');
  t.notMatch(only.stdout, /\[rank [012]\]/, 'and no other rank\'s');
  t.equal((await s.query('SELECT 1 FROM gpu_leases WHERE run_id = $1', [run.id])).length, 0, 'every member\'s GPUs were given back');

  // Every member, in run get and in both of the scheduler's documents.
  // Member 1's own end report may come just after rank 0's ended the run.
  const got = await until('member 1\'s end', async () => {
    const r = await s.cliJson(['run', 'get', run.id]);
    return r.members?.[1]?.state === 'Successful' ? r : null;
  }, 30_000);
  const other = row!.agent === 'a1' ? 'a2' : 'a1';
  const gpuOf = (agent: string) => `GPU-gang${Number(agent.slice(1)) - 1}-`;
  t.match(got.members, [
    { node_rank: 0, agent: row!.agent, first_rank: 0, last_rank: 1, state: 'Successful' },
    { node_rank: 1, agent: other, first_rank: 2, last_rank: 3, state: 'Successful' },
  ], 'run get --json: both members, their ranks and their ends');
  for (const m of got.members as { agent: string; gpu_indices: number[]; gpu_uuids: string[] }[]) {
    t.equal(m.gpu_indices.length, 2, `${m.agent}: two GPUs`);
    t.ok(m.gpu_uuids.every((u) => u.startsWith(gpuOf(m.agent))), `${m.agent}: its own GPUs, by UUID (${m.gpu_uuids.join(',')})`);
  }
  const table = await s.cli(['run', 'get', run.id]);
  t.match(table.stdout, /gang\s+2 agents x 2 processes = 4 ranks, members prefer the same rack/, 'run get: the gang\'s shape and its preference');
  t.match(table.stdout, /members\n\s+node\s+agent\s+GPUs\s+ranks\s+state/, 'run get: a members table');
  t.match(table.stdout, new RegExp(`\\n\\s+1\\s+${other}\\s+${gpuOf(other)}\\d,${gpuOf(other)}\\d\\s+2-3\\s+Successful`), 'with member 1\'s agent, GPUs and ranks 2-3');
  const recorded = (await s.cliJson(['run', 'get', run.id])).members.map((m: { node_rank: number; agent: string; gpu_indices: number[]; gpu_uuids: string[]; first_rank: number; last_rank: number }) => ({
    node_rank: m.node_rank, agent: m.agent, gpus: m.gpu_indices.map((index, i) => ({ index, uuid: m.gpu_uuids[i] })), first_rank: m.first_rank, last_rank: m.last_rank,
  }));
  t.same(JSON.parse(await s.objectText(`${prefix}_results.json`)).members, recorded, '_results.json records every member');
  t.same(JSON.parse(await s.objectText(`${prefix}_lineage.json`)).members, recorded, '_lineage.json records every member');
  t.same(got.lineage.members, recorded, 'and so does the lineage run get returns');

  // The console's run page: a Members table, one row per member with its agent, GPUs and ranks.
  const pageErrors: string[] = [];
  const page = await signedInPage(t, `http://${s.httpAddress}`, s.adminToken, { width: 1360, height: 900 }, pageErrors);
  await page.goto(`http://${s.httpAddress}/#/runs/${run.id}`);
  await page.waitForSelector('[data-testid=member-1]');
  t.match(await page.textContent('[data-testid=member-0]'), new RegExp(`^0${row!.agent}${gpuOf(row!.agent)}\\d, ${gpuOf(row!.agent)}\\dranks 0-1Successful`), 'the console: member 0, its GPUs and ranks 0-1');
  t.match(await page.textContent('[data-testid=member-1]'), new RegExp(`^1${other}${gpuOf(other)}\\d, ${gpuOf(other)}\\dranks 2-3Successful`), 'member 1, its GPUs and ranks 2-3');
  t.same(pageErrors, [], 'no script error on the page');
});

/**
 * On attempt 1, global rank SILENT_RANK sleeps without a line or a progress mark while every other rank
 * prints twice a second (each rank's first line is its pid); on attempt 2 every rank prints for a second and ends. With PROGRESS=1 the silent
 * rank marks progress (trainyard_checkpoint.progress()) every second for 8 s instead, and the others print
 * for 8 s: nothing stalls.
 */
const silentRankTrainPy = `
import os, time
import trainyard_checkpoint as ckpt

class Main:
    def train(self, d):
        rank = os.environ["RANK"]
        first = os.environ["TORCHELASTIC_RUN_ID"].endswith("-1")
        marks = os.environ.get("PROGRESS") == "1"
        print("pid %d" % os.getpid(), flush=True)
        if first and rank == os.environ.get("SILENT_RANK"):
            for _ in range(8 if marks else 0):
                ckpt.progress()
                time.sleep(1)
            if not marks:
                time.sleep(600)
            return
        end = time.time() + ((8 if marks else 600) if first else 1)
        while time.time() < end:
            print("step", flush=True)
            time.sleep(0.5)

    def save(self):
        with open("done.txt", "w") as fh:
            fh.write("ok")
`;

t.test('--stall-timeout per gang: one silent rank stalls the whole gang, even while its own agent\'s other rank prints', async (t) => {
  const s = await gangStack(t, 2);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': silentRankTrainPy }), '--name', 'silent']);
  // Rank 1 shares member 0's agent and output with rank 0, which prints; rank 3 is on member 1.
  for (const silent of [1, 3]) {
    const run = await s.cliJson(['run', 'train', '--package', 'silent', '--dataset', 'd', '--agents', '2', '--procs-per-agent', '2',
      '--env', `SILENT_RANK=${silent}`, '--stall-timeout', '5', '--max-attempts', '2']);
    const done = await s.waitForStatus(run.id, ['Successful', 'Failed', 'Killed']);
    await explain(t, s, run.id);
    t.equal(done.status, 'Successful', `rank ${silent} silent: the requeued gang succeeded (${done.failure_reason ?? ''})`);
    const [row] = await s.query('SELECT attempt, lost_attempts FROM runs WHERE id = $1', [run.id]);
    t.same(row, { attempt: 2, lost_attempts: 1 }, `rank ${silent} silent: one attempt counted`);
    const events = await s.query<{ status: string; detail: string }>('SELECT status, detail FROM run_events WHERE run_id = $1 ORDER BY id', [run.id]);
    const requeues = events.filter((e) => e.status === 'Waiting for resources' && e.detail.startsWith('stalled'));
    t.equal(requeues.length, 1, `rank ${silent} silent: requeued once (${events.map((e) => e.detail).join(' | ')})`);
    t.match(requeues[0]?.detail, new RegExp(`^stalled: rank ${silent}: no log line, checkpoint or progress mark for 5 s \\(gang member ${silent >> 1} on a\\d\\)$`),
      'with reason "stalled", naming the silent rank and its member');
    const firstLines = await s.query<{ text: string }>('SELECT text FROM run_logs WHERE run_id = $1 AND attempt = 1', [run.id]);
    t.ok(firstLines.some((l) => l.text.startsWith(`[rank ${silent ^ 1}] step`)), `rank ${silent ^ 1}, beside it, printed meanwhile`);
    // The gang was stopped on every member: no process of attempt 1 is left, the silent one included.
    const pids = firstLines.flatMap((l) => /^\[rank \d\] pid (\d+)$/.exec(l.text)?.[1] ?? []).map(Number);
    t.equal(pids.length, 4, `rank ${silent} silent: every rank of attempt 1 said its pid`);
    const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
    await until(`attempt 1's processes to be gone (${pids.join(',')})`, async () => !pids.some(alive), 60_000).then(
      () => t.pass(`rank ${silent} silent: every process of attempt 1 is gone, on both members`), (err: unknown) => t.fail(String(err)));
  }
  // A rank's own progress marks keep it alive without a line.
  const quiet = await s.cliJson(['run', 'train', '--package', 'silent', '--dataset', 'd', '--agents', '2', '--procs-per-agent', '2',
    '--env', 'SILENT_RANK=1', '--env', 'PROGRESS=1', '--stall-timeout', '5', '--max-attempts', '1']);
  const q = await s.waitForStatus(quiet.id, ['Successful', 'Failed', 'Killed']);
  await explain(t, s, quiet.id);
  t.equal(q.status, 'Successful', `eight seconds of rank 1's progress marks and no line do not stall (${q.failure_reason ?? ''})`);
  t.equal(q.attempt, 1, 'in one attempt');
});

t.test('a member killed with SIGKILL mid-run stops the gang; it is requeued whole (one attempt counted) and succeeds', async (t) => {
  const s = await gangStack(t, 2);
  const hold = new Gate();
  const run = await s.cliJson(['run', 'train', '--package', 'gang', '--dataset', 'd', '--agents', '2', '--env', 'HOLD_SECONDS=600', '--env', `HOLD_FILE=${hold.file}`]);
  await waitForLog(s, run.id, '[rank 1] all-reduce sum 3.0');
  const pid = await until('rank 1\'s process', async () => pidOfRank(s, run.id, 1));
  const first0 = await until('rank 0\'s process', async () => pidOfRank(s, run.id, 0));
  process.kill(pid, 'SIGKILL');
  const again = await until('the second attempt', async () => (await s.query('SELECT attempt, lost_attempts, status FROM runs WHERE id = $1 AND attempt >= 2', [run.id]))[0]);
  t.equal(again.lost_attempts, 1, 'the first attempt counts once');
  // The first attempt's other member was told to stop: its rank 0 process goes away without the hold ending.
  await until('rank 0 of attempt 1 to be stopped', async () => { try { process.kill(first0, 0); return false; } catch { return true; } }, 60_000);
  hold.open();
  const done = await s.waitForStatus(run.id, ['Successful', 'Failed', 'Killed']);
  await explain(t, s, run.id);
  t.equal(done.status, 'Successful', `the requeued gang succeeded (${done.failure_reason ?? ''})`);
  const events = await s.query<{ detail: string }>('SELECT detail FROM run_events WHERE run_id = $1 ORDER BY id', [run.id]);
  t.ok(events.some((e) => /gang member/.test(e.detail)), `the requeue names the member (${events.map((e) => e.detail).join(' | ')})`);
});

t.test('two 2-agent gangs on 3 agents never deadlock: one runs, the other waits holding nothing (repeated)', async (t) => {
  const s = await gangStack(t, 3);
  let samples = 0;
  for (let round = 0; round < 3; round++) {
    const hold = new Gate();
    const submit = () => s.cliJson(['run', 'train', '--package', 'gang', '--dataset', 'd', '--agents', '2', '--gpus-per-agent', '2', '--cpus', '2',
      '--env', 'HOLD_SECONDS=600', '--env', `HOLD_FILE=${hold.file}`]);
    const ids = (await Promise.all([submit(), submit()])).map((r) => r.id as string);
    // Sampled until one gang runs: at every instant each gang holds all its members' GPUs or none.
    let running: string | null = null;
    while (!running) {
      const rows = await s.query<{ id: string; agent: string | null; status: string; leases: number; members: number }>(`
        SELECT r.id, r.agent, r.status,
          (SELECT count(*)::int FROM gpu_leases l WHERE l.run_id = r.id) AS leases,
          (SELECT count(*)::int FROM run_members m WHERE m.run_id = r.id AND m.lease = r.lease AND r.agent IS NOT NULL) AS members
        FROM runs r WHERE r.id = ANY($1::text[])`, [ids]);
      samples++;
      for (const r of rows) {
        if (r.agent === null) t.same([r.leases, r.members], [0, 0], `round ${round}: unplaced gang ${r.id} holds no GPU and no member`, { diagnostic: false });
        else t.same([r.leases, r.members], [4, 1], `round ${round}: placed gang ${r.id} holds both members' GPUs`, { diagnostic: false });
      }
      running = rows.find((r) => r.status === 'Running')?.id ?? null;
      if (!running) await new Promise((r) => setTimeout(r, 50));
    }
    const other = ids.find((id) => id !== running)!;
    const waiting = await s.waitForStatus(other, ['Waiting for resources'], 60_000);
    t.match(waiting.status_detail, /2 agents/, `round ${round}: the other gang waits, saying why (${waiting.status_detail})`);
    t.same(await s.query('SELECT 1 FROM gpu_leases WHERE run_id = $1', [other]), [], `round ${round}: and holds no GPU`);
    hold.open();
    for (const id of ids) await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']).then(() => explain(t, s, id));
    for (const id of ids) t.equal((await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'])).status, 'Successful', `round ${round}: ${id} succeeded`);
  }
  t.ok(samples > 0, `${samples} samples of the database`);
});

t.test('a gang is refused at submit when fewer agents than it asks for could ever take it', async (t) => {
  const s = await gangStack(t, 2);
  const r = await s.cli(['run', 'train', '--package', 'gang', '--dataset', 'd', '--agents', '3']);
  t.not(r.code, 0);
  t.match(r.stderr, /no 3 registered agents could ever satisfy this request \(3 agents, each with/, 'naming the reason');
  const bad = await s.cli(['run', 'train', '--package', 'gang', '--dataset', 'd', '--agents', '2', '--procs-per-agent', '2', '--gpus-per-agent', '3']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /--gpus-per-agent 3 is not a multiple of --procs-per-agent 2/);
  for (const [args, why] of [[['--agents', '2', '--prefer-same', ''], /--prefer-same needs an agent label key/], [['--agents', '2', '--prefer-same', 'rack=a'], /--prefer-same needs an agent label key/],
    [['--prefer-same', 'rack'], /--prefer-same is for multi-agent runs/]] as const) {
    const r = await s.cli(['run', 'train', '--package', 'gang', '--dataset', 'd', ...args]);
    t.not(r.code, 0, `refused: ${args.join(' ')}`);
    t.match(r.stderr, why);
  }
  t.equal((await s.query('SELECT 1 FROM runs')).length, 0, 'nothing was made');
});

/**
 * A stream of small runs that keeps every agent busy (each takes a whole agent: 2 GPUs, 2 CPUs), one always
 * queued: step() submits the next, then lets the oldest running one end, and waits until the placer has
 * dealt with the agent it freed (a small run took it, or the gang did, or the gang reserved it).
 */
class SmallStream {
  readonly #gates = new Map<string, Gate>();
  constructor(private readonly s: Stack, private readonly gang: () => string) {}

  static async start(s: Stack, gang: () => string): Promise<SmallStream> {
    await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': gatedTrainPy }), '--name', 'small']);
    return new SmallStream(s, gang);
  }

  async submit(): Promise<string> {
    const gate = new Gate();
    const run = await this.s.cliJson(['run', 'train', '--package', 'small', '--dataset', 'd', '--gpus', '2', '--cpus', '2', '--env', `GATE=${gate.file}`]);
    this.#gates.set(run.id as string, gate);
    return run.id as string;
  }

  async running(): Promise<{ id: string; agent: string }[]> {
    return this.s.query(`SELECT id, agent FROM runs WHERE package = 'small' AND status = 'Running' ORDER BY created_at, id`);
  }

  /** What became of the agent the oldest running small run freed: 'small' (backfilled), 'gang' (placed), 'reserved'. */
  async step(): Promise<'small' | 'gang' | 'reserved'> {
    await this.submit();
    const [oldest] = await this.running();
    if (!oldest) throw new Error('no small run is running');
    this.#gates.get(oldest.id)!.open();
    await this.s.waitForStatus(oldest.id, ['Successful', 'Failed', 'Killed']);
    return until(`the placer to use agent ${oldest.agent}`, async () => {
      // Placed is attempt 1, not an agent: the gang's ranks exit at once, and a run that ended has none.
      const [g] = await this.s.query<{ attempt: number; status_detail: string }>('SELECT attempt, status_detail FROM runs WHERE id = $1', [this.gang()]);
      if (g!.attempt > 0) return 'gang' as const;
      if ((await this.running()).some((r) => r.agent === oldest.agent)) return 'small' as const;
      return new RegExp(`reserving [^;]*\\b${oldest.agent}\\b`).test(g!.status_detail) ? 'reserved' as const : null;
    }, 120_000);
  }

  /** Lets every small run end (the test's cleanup). */
  openAll(): void { for (const g of this.#gates.values()) g.open(); }
}

/** 3 small runs keep the 3 agents busy (one more queued), then a 2-agent gang of a whole agent each is submitted. */
async function busyWithGang(t: Tap.Test, s: Stack): Promise<{ stream: SmallStream; gangId: string }> {
  let gangId = '';
  const stream = await SmallStream.start(s, () => gangId);
  t.teardown(() => stream.openAll());
  for (let i = 0; i < 3; i++) await stream.submit();
  await until('3 small runs running, one on each agent', async () => (await stream.running()).length === 3);
  const gang = await s.cliJson(['run', 'train', '--package', 'gang', '--dataset', 'd', '--agents', '2', '--gpus-per-agent', '2', '--cpus', '2']);
  gangId = gang.id as string;
  return { stream, gangId };
}

t.test('a gang waiting --gang-reserve-after gets agents reserved: small runs that keep arriving stop going there, and the gang runs', async (t) => {
  const s = await gangStack(t, 3, { TRAINYARD_GANG_RESERVE_AFTER_S: '1' });
  const { stream, gangId } = await busyWithGang(t, s);
  const seen: string[] = [];
  for (let i = 0; i < 12 && !seen.includes('gang'); i++) {
    seen.push(await stream.step());
    if (seen.at(-1) === 'reserved' && !seen.slice(0, -1).includes('reserved')) {
      // While it waits: what it waits for, in `projects` (text and --json).
      const [row] = await s.query('SELECT status_detail FROM runs WHERE id = $1', [gangId]);
      t.match(row!.status_detail, /^waiting for .*; reserving a\d, a\d since \d\d:\d\d:\d\dZ$/, `the gang says what it waits for (${row!.status_detail})`);
      const projects = await s.cliJson(['projects']);
      const mine = (projects as { waiting_gangs: { run_id: string; agents: number; waited_seconds: number; waiting_for: string }[] }[]).flatMap((p) => p.waiting_gangs);
      const g = mine.find((x) => x.run_id === gangId);
      t.ok(g && g.agents === 2 && g.waited_seconds >= 1 && /reserving/.test(g.waiting_for), `projects --json lists the waiting gang (${JSON.stringify(mine)})`);
      const text = await s.cli(['projects']);
      t.match(text.stdout, new RegExp(`Waiting multi-agent runs:[\\s\\S]*${gangId}\\s+2\\s+0\\s+[\\dhms ]+?\\s+waiting for`), 'and its text shows it too');
      t.same(await s.query('SELECT 1 FROM gpu_leases WHERE run_id = $1', [gangId]), [], 'a reserving gang holds no GPU');
    }
  }
  t.ok(seen.includes('reserved'), `an agent freed after the gang waited 1 s was reserved for it (${seen.join(', ')})`);
  t.equal(seen.at(-1), 'gang', `the gang was placed while small runs kept arriving (${seen.join(', ')})`);
  // Small runs submitted before the gang's placement and placed after it (or not yet), by the order of the
  // run events: the gang may have ended, and those runs started, before this reads them.
  const [{ queued }] = await s.query<{ queued: number }>(`
    WITH placed AS (SELECT min(id) AS id FROM run_events WHERE run_id = $1 AND attempt > 0)
    SELECT count(*)::int AS queued FROM runs r, placed p WHERE r.package = 'small'
      AND (SELECT min(e.id) FROM run_events e WHERE e.run_id = r.id) < p.id
      AND coalesce((SELECT min(e.id) FROM run_events e WHERE e.run_id = r.id AND e.attempt > 0), p.id + 1) > p.id`, [gangId]) as [{ queued: number }];
  t.ok(queued >= 1, `small runs were still queued when it was placed (${queued}): the reservation, not a lull, let it in`);
  const done = await s.waitForStatus(gangId, ['Successful', 'Failed', 'Killed']);
  await explain(t, s, gangId);
  t.equal(done.status, 'Successful', 'and it succeeded');
  // The reservation ends with the gang: the queued small runs go on to every agent again.
  await until('the small runs to use every agent again', async () => new Set((await stream.running()).map((r) => r.agent)).size === 3 || null);
  t.pass('small runs run on all 3 agents again');
});

t.test('before --gang-reserve-after, small runs backfill the agents a waiting gang wants', async (t) => {
  const s = await gangStack(t, 3, { TRAINYARD_GANG_RESERVE_AFTER_S: '3600' });
  const { stream, gangId } = await busyWithGang(t, s);
  const seen: string[] = [];
  for (let i = 0; i < 3; i++) seen.push(await stream.step());
  t.same(seen, ['small', 'small', 'small'], 'each freed agent went to the next small run');
  const [row] = await s.query('SELECT attempt, status_detail FROM runs WHERE id = $1', [gangId]);
  t.equal(row!.attempt, 0, 'the gang still waits, never placed');
  t.notMatch(row!.status_detail, /reserving/, `with nothing reserved (${row!.status_detail})`);
  t.same(await s.query('SELECT 1 FROM gpu_leases WHERE run_id = $1', [gangId]), [], 'and holds no GPU');
  await s.cliJson(['run', 'kill', gangId]);
});
