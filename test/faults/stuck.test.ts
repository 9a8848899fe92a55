// No run ever stuck (issue 7): the states a crash or a race used to leave behind, made on purpose against
// a real scheduler, and what must follow — placement goes on, the impossible state is found, recorded and
// repaired, and a refusal that no retry can change ends the run Failed instead of leaving it Running.
import t from 'tap';
import { createHash } from 'node:crypto';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { until } from '../helpers/packages.js';

const quick = `
class Main:
    def train(self, d):
        pass
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;
const gpus = ['0, GPU-11111111, NVIDIA H100 80GB HBM3, 81559'];

async function pushQuick(s: Stack): Promise<void> {
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
}

t.test('a GPU lease left by a crash does not stop placement; the sweep finds and removes it', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'gpubox', gpus }] });
  await pushQuick(s);
  const first = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--gpu', '--wait']);
  t.equal(first.status, 'Successful', 'a first GPU run succeeds');

  // The package version's digest is the sha256 of the zip's bytes (not of MinIO's etag).
  const [v] = await s.query("SELECT object_key, sha256 FROM package_versions WHERE run_id = $1", [first.id]);
  const chunks: Buffer[] = [];
  for await (const c of await s.minio.getObject(s.bucket, v!.object_key)) chunks.push(c as Buffer);
  t.equal(v!.sha256, createHash('sha256').update(Buffer.concat(chunks)).digest('hex'), 'sha256 is the digest of the zip in the bucket');

  // What a scheduler killed between "run ended" and "lease deleted" left on the old code: GPU 0 leased
  // to a run that no longer holds it.
  await s.query('INSERT INTO gpu_leases (agent, gpu_index, run_id, lease) VALUES ($1, 0, $2, 999999)', ['gpubox', first.id]);
  const gpuRun = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--gpu']);
  const cpuRun = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd']);
  t.equal((await s.waitForStatus(cpuRun.id, ['Successful', 'Failed'], 60_000)).status, 'Successful', 'a CPU run submitted after it is placed and succeeds');
  t.equal((await s.waitForStatus(gpuRun.id, ['Successful', 'Failed'], 60_000)).status, 'Successful', 'a GPU run gets the GPU and succeeds');
  t.same(await s.query('SELECT * FROM gpu_leases WHERE run_id = $1', [first.id]), [], 'the leftover lease is gone');
  const found = await until('the orphan_gpu_lease record', async () => {
    const rows = await s.query("SELECT kind, run_id, repaired FROM invariant_violations WHERE kind = 'orphan_gpu_lease' AND run_id = $1", [first.id]);
    return rows.length > 0 ? rows : undefined;
  }, 30_000);
  t.ok(found.some((f) => f.repaired), 'the sweep recorded the orphan lease as repaired');
  const doctor = await s.cliJson(['doctor']).catch((err: Error) => ({ error: err.message }));
  t.ok(!('error' in doctor), `trainyard doctor answers (${'error' in doctor ? doctor.error : 'ok'})`);
});

t.test('a queued run with a kill requested is ended Killed by the sweep', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'gpubox', gpus }] });
  await pushQuick(s);
  // A project capped at zero runs: its run waits, unplaced, for as long as the cap stands.
  await s.cliJson(['projects', 'set', 'capped', '--max-runs', '0']);
  const waiting = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--project', 'capped']);
  await s.waitForStatus(waiting.id, ['Waiting for resources'], 30_000);
  // The state the old two-step kill left when a requeue fell between its statements.
  await s.query('UPDATE runs SET kill_requested = true WHERE id = $1', [waiting.id]);
  const run = await s.waitForStatus(waiting.id, ['Killed', 'Failed', 'Successful'], 30_000);
  t.equal(run.status, 'Killed', 'ended Killed');
  // The sweep records what it found after the repair commits, so the Killed status can be seen first.
  const [v] = await until('the killed_but_queued record', async () => {
    const rows = await s.query("SELECT repaired FROM invariant_violations WHERE kind = 'killed_but_queued' AND run_id = $1", [waiting.id]);
    return rows.length > 0 ? rows : undefined;
  }, 30_000);
  t.equal(v?.repaired, true, 'recorded as a repaired violation');
});

t.test('a success report that storage refuses for good ends the run Failed with the reason', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await pushQuick(s);
  const agent = await FakeAgent.start(s, 'scripted');
  t.teardown(() => agent.close());
  const sha = 'a'.repeat(64);

  const attempt = async () => {
    const run = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd']);
    const d = await agent.nextDispatch();
    t.equal(d.run_id, run.id, 'dispatched to the scripted agent');
    for (const status of ['Packaging', 'Running']) await agent.call('ReportStatus', { run_id: d.run_id, lease: d.lease, status });
    return d;
  };
  const finish = (d: { run_id: string; lease: number }, extra: Record<string, unknown>) => agent.call<{ status: string }>('FinishAttempt', {
    run_id: d.run_id, lease: d.lease, outcome: 'succeeded', reason: '', start_at: 1, end_at: 2, saved_training_data: false, package_sha256: sha, ...extra,
  });

  // The zip was never uploaded (NoSuchKey): on the old code this was UNAVAILABLE, retried forever.
  const missing = await attempt();
  const r1 = await finish(missing, { package_size_bytes: 10 });
  t.equal(r1.status, 'Failed', 'the report is answered: Failed');
  const row1 = await s.waitForStatus(missing.run_id, ['Failed', 'Successful'], 10_000);
  t.match(row1.failure_reason, /not in the bucket/, `reason says the zip is missing (${row1.failure_reason})`);

  // The zip is there but not the size the agent uploaded.
  const short = await attempt();
  await s.minio.putObject(s.bucket, `${short.output_prefix}package.zip`, Buffer.from('12345'));
  const r2 = await finish(short, { package_size_bytes: 10 });
  t.equal(r2.status, 'Failed', 'a size mismatch is answered: Failed');
  t.match((await s.waitForStatus(short.run_id, ['Failed'], 10_000)).failure_reason, /5 bytes.*uploaded 10/, 'reason names both sizes');

  // No digest: refused, not invented from the etag.
  const nodigest = await attempt();
  await s.minio.putObject(s.bucket, `${nodigest.output_prefix}package.zip`, Buffer.from('1234567890'));
  const r3 = await finish(nodigest, { package_size_bytes: 10, package_sha256: '' });
  t.equal(r3.status, 'Failed', 'a report without a sha256 is answered: Failed');
  t.match((await s.waitForStatus(nodigest.run_id, ['Failed'], 10_000)).failure_reason, /sha256/, 'reason names the missing digest');

  // A kill accepted while the run was Running wins over a success report that arrives after it.
  const late = await attempt();
  await s.minio.putObject(s.bucket, `${late.output_prefix}package.zip`, Buffer.from('1234567890'));
  const kill = await s.cliJson(['run', 'kill', late.run_id]);
  t.equal(kill.kill_requested, true, 'the kill was accepted');
  const r4 = await finish(late, { package_size_bytes: 10 });
  t.equal(r4.status, 'Killed', 'the success that came after the kill is answered: Killed');
  t.equal((await s.waitForStatus(late.run_id, ['Killed', 'Successful'], 10_000)).status, 'Killed', 'the run is Killed');

  t.same(await s.query('SELECT run_id FROM package_versions WHERE run_id IS NOT NULL'), [], 'no version was registered');
  t.same(await s.query('SELECT * FROM gpu_leases'), [], 'nothing is left leased');
});
