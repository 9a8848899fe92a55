// NATS and MinIO going away under a run. These tests run their own nats-server and MinIO, so killing
// them disturbs no other test file.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { Gate, pushGated, submitGated, waitForAttempt, waitForLog } from '../helpers/packages.js';

t.test('nats-server killed and restarted during a run, and a dispatch sent while it is down', async (t) => {
  const s = await Stack.create(t, { privateNats: true, schedulerEnv: { TRAINYARD_DISPATCH_ACK_TIMEOUT_MS: '4000' } });
  await pushGated(s);
  const gate = new Gate();
  const running = await submitGated(s, gate);
  await waitForAttempt(s, running, 1);
  await s.nats!.kill9();
  const queued = await submitGated(s, gate); // its dispatch has no NATS to travel on
  gate.open();
  await new Promise((r) => setTimeout(r, 1500));
  await s.startNats();
  const a = await s.waitForStatus(running, ['Successful', 'Failed']);
  const b = await s.waitForStatus(queued, ['Successful', 'Failed']);
  t.equal(a.status, 'Successful', 'the running run is not lost');
  t.equal(b.status, 'Successful', 'the run submitted during the outage is placed once NATS is back');
  t.equal((await s.query('SELECT * FROM package_versions WHERE run_id = ANY($1)', [[running, queued]])).length, 2);
});

t.test('MinIO killed during the uploads and back within the retries: Successful, outputs whole', async (t) => {
  const s = await Stack.create(t, { privateMinio: true });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--env', 'LINES=1']);
  await waitForLog(s, id, 'line 1'); // the data is local and train() runs
  await s.minioDaemon!.kill9();
  gate.open(); // train() ends; the uploads meet a dead MinIO and retry with backoff
  await new Promise((r) => setTimeout(r, 2500));
  await s.startMinio();
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', run.failure_reason ?? '');
  const objects = await s.objects(`runs/${id}/`);
  t.same(objects, [
    `runs/${id}/attempt-1/_lineage.json`, `runs/${id}/attempt-1/_results.json`, `runs/${id}/attempt-1/artifacts/attempt.txt`, `runs/${id}/attempt-1/package.zip`,
  ], 'every output is in the bucket');
  const logs = await s.query("SELECT text FROM run_logs WHERE run_id = $1 AND stream = 'system' ORDER BY seq", [id]);
  t.ok(logs.some((l) => /storage error, retry 1/.test(l.text)), 'the retries show in the run log');
});

t.test('MinIO down past the retries: Failed, naming the storage error, and no version', async (t) => {
  const s = await Stack.create(t, { privateMinio: true, agents: [{ name: 'a', env: { TRAINYARD_TRANSFER_RETRIES: '2' } }] });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--env', 'LINES=1']);
  await waitForLog(s, id, 'line 1'); // the data is local and train() runs
  await s.minioDaemon!.kill9();
  gate.open();
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Failed');
  t.match(run.failure_reason, /^storage error on upload runs\/.+ after 3 tries: /);
  t.same(await s.query('SELECT * FROM package_versions WHERE run_id = $1', [id]), [], 'no version');
});

t.test('MinIO down when the run starts: the claim retries, and the run succeeds once it is back', async (t) => {
  const s = await Stack.create(t, { privateMinio: true });
  await pushGated(s);
  const gate = new Gate();
  gate.open();
  await s.minioDaemon!.kill9();
  const id = await submitGated(s, gate);
  // The agent's claim meets a dead MinIO (no storage credentials can be issued): the claim is not
  // acknowledged, and the agent retries it.
  await new Promise((r) => setTimeout(r, 2500));
  await s.startMinio();
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful', run.failure_reason ?? '');
  t.equal(run.attempt, 1, 'the same attempt, retried, not a new one');
  const logs = await s.query("SELECT text FROM run_logs WHERE run_id = $1 AND stream = 'system' ORDER BY seq", [id]);
  t.ok(logs.length > 0, 'the run has its log');
  t.match(s.logOf('scheduler1'), /could not issue storage credentials for the attempt/, 'the claims MinIO refused show in the scheduler\'s log');
});
