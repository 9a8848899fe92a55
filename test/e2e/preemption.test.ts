// Issue 22, preemption: a higher-priority run that nothing free can take stops lower-priority runs of a
// preemptible project on one agent (the fewest, losing the least work), holds the agent until they have
// left, and is placed there; each victim gets SIGTERM and its agent's kill grace, is requeued with
// "preempted by RUN" without spending an attempt, and later runs again. Never a non-preemptible project's
// run, never one within --min-runtime of its start, and only admins say which projects are preemptible.
import t, { type Test } from 'tap';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { Stack, fakeGpus, tempDir, writeTree } from '../helpers/stack.js';

// Attempt 1 trains until its gate opens; on SIGTERM it saves a checkpoint (a file in checkpoint_directory,
// which the agent uploads in the kill grace) and exits. A later attempt (the run resumed) says what it found
// there and finishes at once, as does a run started with FAST=1.
const trainer = `
import os, signal, sys, time
class Main:
    def train(self, d):
        attempt = os.environ["TRAINYARD_ATTEMPT"]
        ckpt = os.environ["checkpoint_directory"]
        def on_term(*a):
            with open(os.path.join(ckpt, "state.txt"), "w") as f:
                f.write(f"written by attempt {attempt}")
            print(f"SIGTERM in attempt {attempt}: checkpoint saved", flush=True)
            sys.exit(1)
        signal.signal(signal.SIGTERM, on_term)
        print(f"training, attempt {attempt}", flush=True)
        state = os.path.join(ckpt, "state.txt")
        if os.path.exists(state):
            print(f"resumed: {open(state).read()}", flush=True)
        if attempt != "1" or os.environ.get("FAST"):
            return
        gate = os.environ["GATE"]
        deadline = time.time() + 150
        while not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.1)
    def save(self):
        pass
`;

async function setUp(s: Stack): Promise<void> {
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': trainer }), '--name', 'trainer']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
}

const until = async (what: string, ok: () => Promise<boolean>, timeoutMs = 120_000) => {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** Submits a one-GPU run of `trainer` and returns its id. */
async function submit(s: Stack, o: { priority?: number; project?: string; gate?: string; fast?: boolean; maxAttempts?: number }): Promise<string> {
  const args = ['run', 'train', '--package', 'trainer', '--dataset', 'd', '--gpu', '--priority', String(o.priority ?? 0)];
  if (o.project) args.push('--project', o.project);
  if (o.gate) args.push('--env', `GATE=${o.gate}`);
  if (o.fast) args.push('--env', 'FAST=1');
  if (o.maxAttempts) args.push('--max-attempts', String(o.maxAttempts));
  return (await s.cliJson(args)).id as string;
}

const logLines = async (s: Stack, id: string, attempt: number) =>
  (await s.query<{ text: string }>('SELECT text FROM run_logs WHERE run_id = $1 AND attempt = $2 ORDER BY seq', [id, attempt])).map((r) => r.text);
const training = (s: Stack, id: string) => until(`${id} to train`, async () => (await logLines(s, id, 1)).includes('training, attempt 1'));
const kinds = async (s: Stack, id: string) =>
  (await s.query<{ kind: string; detail: string }>('SELECT kind, detail FROM events WHERE subject = $1 ORDER BY id', [id]));

/**
 * A low run trains on the agent's only GPU; a priority run is found waiting, then a second one, so a later
 * placement pass than the one that first found the first waiting has run (each pass makes its preemptions
 * before the next begins): whatever the placer would have preempted, it has. Then the low run may finish.
 */
async function expectNoPreemption(t: Test, s: Stack, why: string): Promise<void> {
  const gate = path.join(tempDir(), 'open');
  const low = await submit(s, { gate });
  await s.waitForStatus(low, ['Running']);
  await training(s, low);
  const high = await submit(s, { priority: 10, fast: true });
  await s.waitForStatus(high, ['Waiting for resources']);
  const probe = await submit(s, { priority: 10, fast: true });
  await s.waitForStatus(probe, ['Waiting for resources']);
  await until('another placement pass', async () => (await s.query('SELECT status_detail FROM runs WHERE id = $1', [high]))[0]?.status_detail.startsWith('waiting for a free agent'));
  t.equal((await s.query('SELECT preempted_by FROM runs WHERE id = $1', [low]))[0]?.preempted_by, null, why);
  t.equal((await s.query('SELECT count(*)::int AS n FROM run_preemptions'))[0]?.n, 0, 'no preemption recorded');
  t.equal((await s.query('SELECT count(*)::int AS n FROM events WHERE kind = $1', ['run.preempted']))[0]?.n, 0, 'no run.preempted event');
  writeFileSync(gate, '');
  for (const id of [low, high, probe]) t.equal((await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'])).status, 'Successful');
  t.equal((await s.query('SELECT attempt FROM runs WHERE id = $1', [low]))[0]?.attempt, 1, 'the low run finished its first attempt');
}

t.test('a priority run preempts the lower run that loses least; it checkpoints in its grace, is requeued without spending an attempt and succeeds', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'box', gpus: fakeGpus(2, 'pre'), killGraceMs: 10_000 }], schedulerEnv: { TRAINYARD_PREEMPT_MIN_RUNTIME_S: '0' } });
  await setUp(s);
  const p = await s.cliJson(['projects', 'set', 'default', '--preemptible', 'true']);
  t.equal(p.preemptible, true, 'an admin makes the project preemptible');
  t.equal((await s.cliJson<any[]>(['projects'])).find((x) => x.name === 'default')?.preemptible, true, 'projects lists it');

  const gate = path.join(tempDir(), 'open');
  // Two candidates on a full agent: the older one has more work to lose.
  const older = await submit(s, { gate, maxAttempts: 1 });
  await s.waitForStatus(older, ['Running']);
  await training(s, older);
  const newer = await submit(s, { gate, maxAttempts: 1 });
  await s.waitForStatus(newer, ['Running']);
  await training(s, newer);

  const urgent = await submit(s, { priority: 10, fast: true });
  const done = await s.waitForStatus(urgent, ['Successful', 'Failed', 'Killed']);
  t.equal(done.status, 'Successful', 'the priority run was placed and succeeded');
  t.same(done.gpu_indices.length, 1, 'it held one GPU');

  // The newer run (least work lost) was preempted, alone; the older one trains on, undisturbed.
  t.equal((await s.query('SELECT 1 FROM run_preemptions WHERE run_id = $1', [older])).length, 0, 'the run with more work to lose was not preempted');
  t.equal((await s.query('SELECT attempt FROM runs WHERE id = $1', [older]))[0]?.attempt, 1, 'it is still on its first attempt');
  // Waited for, not read once: the victim's GPU is freed when its process exits, so the priority run can be
  // placed and end before the victim's end report (which carries its last lines) is stored.
  const sigterm = await until('the victim\'s SIGTERM line', async () => (await logLines(s, newer, 1)).some((l) => l === 'SIGTERM in attempt 1: checkpoint saved'), 30_000).then(() => true, () => false);
  t.ok(sigterm, 'the victim\'s train.py got SIGTERM and used its grace period');

  writeFileSync(gate, '');
  const [a, b] = await Promise.all([s.waitForStatus(older, ['Successful', 'Failed', 'Killed']), s.waitForStatus(newer, ['Successful', 'Failed', 'Killed'])]);
  t.equal(a!.status, 'Successful');
  t.equal(b!.status, 'Successful', 'the preempted run ran again and succeeded, though it may lose only 1 attempt (--max-attempts 1)');
  t.equal(b!.attempt, 2, 'on its second attempt');
  t.equal(b!.lost_attempts, 0, 'the preemption did not count as a lost attempt');
  t.ok((await logLines(s, newer, 2)).includes('training, attempt 2'), 'attempt 2 trained');
  t.ok((await logLines(s, newer, 2)).includes('resumed: written by attempt 1'), 'from the checkpoint attempt 1 saved in its grace');
  t.match((await s.cliJson(['run', 'get', newer])).resumed_from, { run_id: newer, attempt: 1 }, 'run get says which checkpoint it resumed from');

  // Events, in order: the victim's preemption, its requeue with the reason, its placement again; the
  // priority run placed only once the victim had left (what it freed was held for it).
  const ev = await kinds(s, newer);
  const at = (kind: string, detail?: RegExp) => ev.findIndex((e) => e.kind === kind && (!detail || detail.test(e.detail)));
  const preempted = at('run.preempted', new RegExp(`preempted by ${urgent} on agent box`));
  const requeued = at('run.waiting', new RegExp(`^preempted by ${urgent}$`));
  t.ok(preempted > at('run.started'), 'run.preempted after it started');
  t.ok(requeued > preempted, 'then requeued: run.waiting "preempted by RUN"');
  t.ok(ev.findIndex((e, i) => i > requeued && e.kind === 'run.placed') > requeued, 'then placed again');
  t.equal(ev.at(-1)?.kind, 'run.succeeded', 'and succeeded');
  t.equal(ev.filter((e) => e.kind === 'run.killed' || e.kind === 'run.failed').length, 0, 'never killed nor failed');
  const order = await s.query<{ subject: string; kind: string; detail: string }>(
    "SELECT subject, kind, detail FROM events WHERE (subject = $1 AND kind IN ('run.preempted', 'run.waiting')) OR (subject = $2 AND kind = 'run.placed') ORDER BY id", [newer, urgent]);
  const urgentPlaced = order.findIndex((e) => e.subject === urgent);
  const victimLeft = order.findIndex((e) => e.subject === newer && e.kind === 'run.waiting' && e.detail.startsWith('preempted by'));
  t.ok(victimLeft >= 0 && urgentPlaced > victimLeft, 'the priority run was placed after the victim left its GPU');
  t.equal((await s.query('SELECT reserved_agent FROM runs WHERE id = $1', [urgent]))[0]?.reserved_agent, null, 'the hold on the agent went with the placement');

  // run get shows each preemption: by whom, when, which attempt on which agent.
  const got = await s.cliJson(['run', 'get', newer]);
  t.match(got.preemptions, [{ by_run: urgent, attempt: 1, agent: 'box', at: /^\d{4}-/ }]);
  const text = await s.cli(['run', 'get', newer]);
  t.match(text.stdout, new RegExp(`preempted .*attempt 1 on box, by ${urgent}`), 'the text form too');
  t.same(await s.query('SELECT * FROM gpu_leases'), [], 'every GPU lease is released at the end');
});

t.test('never a run of a project that is not preemptible; only admins say which are', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'solo', gpus: fakeGpus(1, 'np') }], schedulerEnv: { TRAINYARD_PREEMPT_MIN_RUNTIME_S: '0' } });
  await setUp(s);
  // Another project is preemptible (so the placer does look for victims); "default" keeps the default, false.
  await s.cliJson(['projects', 'set', 'other', '--preemptible', 'true']);
  t.equal((await s.cliJson<any[]>(['projects'])).find((x) => x.name === 'default')?.preemptible ?? false, false, 'not preemptible by default');

  const token = async (role: string) => (await s.cliJson(['tokens', 'create', '--project', 'default', '--role', role])).token as string;
  for (const role of ['member', 'reader']) {
    const r = await s.cli(['projects', 'set', 'default', '--preemptible', 'true', '--token', await token(role), '--json']);
    t.not(r.code, 0, `a ${role} cannot set --preemptible`);
    t.match(r.stderr, /PERMISSION_DENIED|permission/i, `a ${role} is refused as not allowed`);
  }
  t.equal((await s.query("SELECT count(*)::int AS n FROM project_limits WHERE project = 'default' AND preemptible"))[0]?.n, 0, 'and nothing changed');
  const bad = await s.cli(['projects', 'set', 'default', '--preemptible', 'yes']);
  t.match(bad.stderr, /--preemptible: expected true or false, got "yes"/, 'a bad value is refused clearly');

  await expectNoPreemption(t, s, 'the running run of a non-preemptible project is not preempted');
});

t.test('never within --min-runtime of a run\'s start', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'solo', gpus: fakeGpus(1, 'mr') }], schedulerEnv: { TRAINYARD_PREEMPT_MIN_RUNTIME_S: '3600' } });
  await setUp(s);
  await s.cliJson(['projects', 'set', 'default', '--preemptible', 'true']);
  await expectNoPreemption(t, s, 'a run that started less than --min-runtime ago is not preempted');
});
