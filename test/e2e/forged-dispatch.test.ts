// NATS carries no authority: a dispatch message is a doorbell, and an agent acts only on what it claims
// from the scheduler over gRPC, after checking every field (agent/claim.ts). Forged messages published
// straight to an agent's subject, by someone holding NATS publish rights, are refused and logged, and
// change nothing on the agent's disk or in the bucket; real runs still go through.
import t from 'tap';
import path from 'node:path';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'nats';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { Gate, pushGated, submitGated, waitForAttempt } from '../helpers/packages.js';

const trainPy = 'class Main:\n    def train(self, d):\n        print("trained")\n    def save(self):\n        open("model.txt", "w").write("m")\n';

t.test('forged dispatches are refused; a canary beside the work dir and a victim package survive', async (t) => {
  const s = await Stack.create(t);
  const agent = s.daemons.find((d) => d.name === 'agent1')!;
  const workDir = path.join(s.dir, 'work-agent1');
  // What a `../../..` run id would have reached from the work dir.
  const canaries = [path.join(s.dir, 'canary'), path.join(path.dirname(s.dir), `canary-${path.basename(s.dir)}`)];
  for (const c of canaries) { mkdirSync(c, { recursive: true }); writeFileSync(path.join(c, 'keep'), 'alive'); }
  t.teardown(() => rmSync(canaries[1]!, { recursive: true, force: true })); // outside the stack's dir

  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'victim']);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n' }), '--name', 'd']);
  const [victim] = await s.query<{ object_key: string }>("SELECT object_key FROM package_versions WHERE package = 'victim'");
  t.ok(victim, 'the victim package is stored');
  const victimKey = victim!.object_key;
  const before = await s.minio.statObject(s.bucket, victimKey);
  const objectsBefore = (await s.objects()).sort();

  // Someone with NATS publish rights (the scheduler's user: the worst case) forges messages.
  const nc = await connect(s.natsOptions('scheduler'));
  t.teardown(() => nc.close());
  const subject = `${s.prefix}.agent.agent1.dispatch`;
  const forged = (runId: string) => ({
    run_id: runId, lease: 1, attempt: 1, package: 'victim', version: '1.0', package_object_key: victimKey,
    dataset: 'd', dataset_prefix: 'datasets/d/', env: {}, gpu_indices: [], timeout_seconds: 0,
    output_prefix: victimKey.replace(/package\.zip$/, ''), bucket: s.bucket,
  });
  nc.publish(subject, JSON.stringify(forged('../../..')));
  nc.publish(subject, JSON.stringify(forged('run_aaaaaaaaaaaaaa'))); // well-formed, but placed nowhere
  await nc.flush();

  const traversal = await agent.waitFor((l) => l.msg === 'dispatch refused' && /run_id "\.\.\/\.\.\/\.\."/.test(String(l.reason)), 20_000);
  t.match(String(traversal.reason), /not a run id/, `the ../ run id is refused and logged (${String(traversal.reason)})`);
  const unplaced = await agent.waitFor((l) => l.msg === 'dispatch refused' && l.run === 'run_aaaaaaaaaaaaaa', 20_000);
  t.match(String(unplaced.reason), /claim refused: .*not waiting to start on agent agent1/, `the unplaced run is refused by the claim (${String(unplaced.reason)})`);

  // A real run still goes through, and a forged doorbell for it after it ended is refused too.
  const run = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd']);
  const done = await s.waitForStatus(run.id, ['Successful', 'Failed', 'Killed']);
  t.equal(done.status, 'Successful', `a normal run still works (${done.failure_reason ?? ''})`);
  // Attempt 2: a doorbell for attempt 1 while the agent still holds it would be a duplicate delivery, ignored.
  nc.publish(subject, JSON.stringify({ ...forged(run.id), attempt: 2, output_prefix: victimKey.replace(/package\.zip$/, '') }));
  await nc.flush();
  const ended = await agent.waitFor((l) => l.msg === 'dispatch refused' && l.run === run.id, 20_000);
  t.match(String(ended.reason), /claim refused/, 'a doorbell for an ended run is refused by the claim');

  for (const c of canaries) t.equal(readFileSync(path.join(c, 'keep'), 'utf8'), 'alive', `canary ${c} survives`);
  t.notOk(readdirSync(workDir).some((f) => f.includes('..') || f.startsWith('run_aaaa')), 'no folder was made for a refused dispatch');
  t.notOk(existsSync(path.join(workDir, '..-a1')), 'nothing named after the forged id');
  const after = await s.minio.statObject(s.bucket, victimKey);
  t.equal(after.etag, before.etag, 'the victim object is unchanged');
  t.equal(after.lastModified.getTime(), before.lastModified.getTime(), 'and was not rewritten');
  const added = (await s.objects()).filter((k) => !objectsBefore.includes(k));
  // The real run's outputs, and the copy of its new version the scheduler registers (a key no attempt writes).
  const [registered] = await s.query<{ object_key: string }>('SELECT object_key FROM package_versions WHERE run_id = $1', [run.id]);
  t.ok(added.length > 0 && added.every((k) => k.startsWith(`runs/${run.id}/attempt-1/`) || k === registered?.object_key), `only the real run wrote objects (${added.join(', ')})`);
  const [row] = await s.query<{ n: string }>("SELECT count(*) AS n FROM package_versions WHERE package = 'victim'");
  t.equal(Number(row!.n), 1, 'no version was added to the victim');
});

t.test('a claim that holds the package ready starts the run Running; a digest that is not the run\'s changes nothing', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n' }), '--name', 'd']);
  const wrong = 'f'.repeat(64);
  let claimAs = (hint: string) => hint;
  const box = await FakeAgent.start(s, 'box', { cpus: 4, readyDigest: (hint) => claimAs(hint) });
  t.teardown(() => box.close());
  const [pkg] = await s.query<{ sha256: string }>("SELECT sha256 FROM package_versions WHERE package = 'quick'");
  const statusOf = async (id: string) => (await s.query<{ status: string; packaging: boolean; running: boolean }>(
    'SELECT status, packaging_at IS NOT NULL AS packaging, running_at IS NOT NULL AS running FROM runs WHERE id = $1', [id]))[0]!;

  const ready = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd']);
  const d1 = await box.nextDispatch();
  t.equal(d1.run_id, ready.id);
  t.equal(box.bells.at(-1)?.package_sha256, pkg!.sha256, 'the doorbell hints the package digest');
  t.equal(d1.running, true, 'the claim answers that the run is Running');
  t.same(await statusOf(ready.id), { status: 'Running', packaging: true, running: true }, 'Running at once, with both moments');

  claimAs = () => wrong;
  const other = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd']);
  const d2 = await box.nextDispatch();
  t.equal(d2.run_id, other.id);
  t.notOk(d2.running, 'a digest that is not the run\'s: not Running');
  t.same(await statusOf(other.id), { status: 'Packaging', packaging: true, running: false }, 'the run is Packaging, as for any claim');
});

t.test('an agent cannot claim an attempt placed on another agent', async (t) => {
  const s = await Stack.create(t);
  // A second, scripted agent with no CPUs: nothing is placed on it, but it holds a real credential.
  const intruder = await FakeAgent.start(s, 'intruder', { cpus: 0 });
  t.teardown(() => intruder.close());
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n' }), '--name', 'd']);
  const run = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--cpus', '1']); // only agent1 fits it
  const [placed] = await s.query<{ agent: string | null }>('SELECT agent FROM runs WHERE id = $1', [run.id]);
  await t.rejects(intruder.call('ClaimAttempt', { agent: 'intruder', run_id: run.id, attempt: 1 }), { code: 5 }, 'as itself: NOT_FOUND (not placed on it)');
  await t.rejects(intruder.call('ClaimAttempt', { agent: 'agent1', run_id: run.id, attempt: 1 }), { code: 7 }, 'naming the other agent: PERMISSION_DENIED');
  await t.rejects(intruder.call('ClaimAttempt', { agent: 'intruder', run_id: '../../..', attempt: 1 }), { code: 3 }, 'a bad run id: INVALID_ARGUMENT');
  const done = await s.waitForStatus(run.id, ['Successful', 'Failed', 'Killed']);
  t.equal(done.status, 'Successful', `the run went to agent1 (${placed?.agent ?? 'not yet placed'}) and succeeded`);
  t.same(intruder.dispatches, [], 'the intruder was never dispatched anything');
});

t.test('a forged kill or drain on NATS stops nothing: the agent asks the scheduler, which says no; a real kill still works', async (t) => {
  const s = await Stack.create(t);
  const agent = s.daemons.find((d) => d.name === 'agent1')!;
  await pushGated(s);
  const gate = new Gate();
  const runId = await submitGated(s, gate);
  const row = await waitForAttempt(s, runId, 1);
  const nc = await connect(s.natsOptions('scheduler'));
  t.teardown(() => nc.close());
  const control = `${s.prefix}.agent.agent1.control`;
  // The worst case: the right run and lease, from a holder of the scheduler's own NATS user.
  nc.publish(control, JSON.stringify({ type: 'kill', runId, lease: Number(row.lease) }));
  nc.publish(control, JSON.stringify({ type: 'drain' }));
  await nc.flush();
  // The agent beats at once for a control message; a few of its intervals later nothing has changed.
  // The agent beats at once for a control message; what it then acts on is the scheduler's answer. Two
  // heartbeat intervals later (the stack's is 500 ms) nothing has changed.
  await new Promise((r) => setTimeout(r, 1500));
  const [still] = await s.query<{ status: string; kill_requested: boolean }>('SELECT status, kill_requested FROM runs WHERE id = $1', [runId]);
  t.same(still, { status: 'Running', kill_requested: false }, 'the run is still running: a forged kill is not a kill');
  const [a] = await s.query<{ status: string }>("SELECT status FROM agents WHERE name = 'agent1'");
  t.equal(a!.status, 'online', 'the agent is still online: a forged drain is not a drain');
  t.notOk(agent.lines.some((l) => l.includes('"msg":"draining"')), 'the agent never started draining');

  // The real kill (the scheduler marks it, then rings the same doorbell) stops it.
  await s.cli(['run', 'kill', runId]);
  const end = await s.waitForStatus(runId, ['Successful', 'Failed', 'Killed']);
  t.equal(end.status, 'Killed', 'a kill through the API ends the run Killed');
  gate.open();
});
