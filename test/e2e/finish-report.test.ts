// The end report as a scripted agent sends it (FinishAttempt, scheduler/runs/complete.ts): it carries the
// attempt's last log lines, stored once each and before the end; the attempt number it names only lets the
// scheduler look for the zip early (the run's own row decides where); and the next minor version taken
// after one this scheduler registered stays right when another scheduler registered one meanwhile.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent, type FakeDispatch } from '../helpers/fake-agent.js';

const quick = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';
const zip = Buffer.from('0123456789');
// The zip's real digest: the scheduler checks it against the zip in the bucket.
const sha = createHash('sha256').update(zip).digest('hex');

async function setUp(t: Test) {
  const s = await Stack.create(t, { agents: [] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const agent = await FakeAgent.start(s, 'scripted');
  t.teardown(() => agent.close());
  const attempt = async (): Promise<FakeDispatch> => {
    await s.cliJson(['run', 'train', '--package', 'quick', '--version', '1.0', '--dataset', 'd']);
    const d = await agent.nextDispatch();
    for (const status of ['Packaging', 'Running']) await agent.call('ReportStatus', { run_id: d.run_id, lease: d.lease, status });
    return d;
  };
  const finish = (d: FakeDispatch, extra: Record<string, unknown> = {}) => agent.call<{ status: string; output_version: string }>('FinishAttempt', {
    run_id: d.run_id, lease: d.lease, outcome: 'succeeded', reason: '', start_at: 1, end_at: 2, package_sha256: sha, package_size_bytes: zip.length, ...extra,
  });
  const line = (seq: number, text: string) => ({ seq, stream: 'system', text, at: new Date().toISOString() });
  const logs = async (id: string) => (await s.query<{ seq: string; text: string }>('SELECT seq, text FROM run_logs WHERE run_id = $1 ORDER BY seq', [id]))
    .map((r) => `${r.seq} ${r.text}`);
  return { s, agent, attempt, finish, line, logs };
}

t.test('the last log lines come with the end report: stored once each, before the end', async (t) => {
  const { s, agent, attempt, finish, line, logs } = await setUp(t);
  const d = await attempt();
  await agent.call('AppendLogs', { run_id: d.run_id, lease: d.lease, lines: [line(1, 'first')] });
  await s.minio.putObject(s.bucket, `${d.output_prefix}package.zip`, zip);
  const r = await finish(d, { attempt: d.attempt, lines: [line(2, 'second'), line(3, 'last')] });
  t.same(r, { status: 'Successful', output_version: '1.1' });
  t.same(await logs(d.run_id), ['1 first', '2 second', '3 last'], 'the report\'s lines follow the earlier batch');
  // The reply was lost and the agent reports again, with the same lines and one more.
  const again = await finish(d, { attempt: d.attempt, lines: [line(2, 'second'), line(3, 'last'), line(4, 'after the end')] });
  t.same(again, r, 'the retry gets the same answer');
  t.same(await logs(d.run_id), ['1 first', '2 second', '3 last'], 'nothing twice, and nothing after the end: the log is final');

  // A failure's report carries its lines too.
  const f = await attempt();
  const failed = await finish(f, { outcome: 'failed', reason: 'boom', package_sha256: '', lines: [line(1, 'Traceback'), line(2, 'boom')] });
  t.equal(failed.status, 'Failed');
  t.same(await logs(f.run_id), ['1 Traceback', '2 boom']);
});

t.test('the attempt a report names only says where to look first: the run\'s row decides', async (t) => {
  const { s, attempt, finish } = await setUp(t);
  // The zip sits where the run's attempt puts it; the report names another attempt.
  const d = await attempt();
  await s.minio.putObject(s.bucket, `${d.output_prefix}package.zip`, zip);
  t.same(await finish(d, { attempt: d.attempt + 6 }), { status: 'Successful', output_version: '1.1' }, 'found under the run\'s own attempt');
  // The zip sits only under the attempt the report names, not the run's.
  const e = await attempt();
  const elsewhere = `runs/${e.run_id}/attempt-${e.attempt + 6}/package.zip`;
  await s.minio.putObject(s.bucket, elsewhere, zip);
  const r = await finish(e, { attempt: e.attempt + 6 });
  t.equal(r.status, 'Failed', 'a zip under another attempt\'s prefix is not this run\'s output');
  t.match((await s.waitForStatus(e.run_id, ['Failed'], 10_000)).failure_reason, /not in the bucket/);
});

t.test('the next minor version stays right when another scheduler registered one meanwhile', async (t) => {
  const { s, attempt, finish } = await setUp(t);
  const versions: string[] = [];
  const succeed = async () => {
    const d = await attempt();
    await s.minio.putObject(s.bucket, `${d.output_prefix}package.zip`, zip);
    versions.push((await finish(d, { attempt: d.attempt })).output_version);
  };
  await succeed();
  await succeed();
  // What another scheduler's success leaves (this one does not know of it).
  const [v] = await s.query<{ object_key: string }>("SELECT object_key FROM package_versions WHERE package = 'quick' AND major = 1 AND minor = 2");
  await s.query(`INSERT INTO package_versions (package, major, minor, source, object_key, size_bytes, sha256, trained_major, trained_minor)
                 VALUES ('quick', 1, 3, 'run', $1, 10, $2, 1, 0)`, [v!.object_key, sha]);
  await succeed();
  t.same(versions, ['1.1', '1.2', '1.4'], 'after 1.3, which it did not register, it takes 1.4');
  const rows = await s.query<{ minor: number }>("SELECT minor FROM package_versions WHERE package = 'quick' AND major = 1 ORDER BY minor");
  t.same(rows.map((r) => Number(r.minor)), [0, 1, 2, 3, 4], 'each minor once');
});

// Issue 20 #4: two copies of one success report at once (the first's reply later than the agent's
// deadline, during a MinIO restart or a scheduler failover). The second used to read Running, queue
// behind the first, take version N+1 and overwrite _results.json and _lineage.json with it before its
// guard refused: the documents named 1.2 while the database had registered 1.1.
t.test('two copies of a success report at once: one version, and the documents name it', async (t) => {
  const { s, attempt, finish } = await setUp(t);
  for (let round = 0; round < 5; round++) {
    const d = await attempt();
    await s.minio.putObject(s.bucket, `${d.output_prefix}package.zip`, zip);
    const [a, b, c] = await Promise.all([finish(d, { attempt: d.attempt }), finish(d, { attempt: d.attempt }), finish(d, { attempt: d.attempt })]);
    t.same([b, c], [a, a], `round ${round}: every copy gets the same answer`);
    const versions = await s.query<{ minor: number }>('SELECT minor FROM package_versions WHERE run_id = $1', [d.run_id]);
    t.same(versions.map((v) => v.minor), [Number(a.output_version.split('.')[1])], `round ${round}: one version, the one answered`);
    const read = async (name: string) => {
      const chunks: Buffer[] = [];
      for await (const ch of await s.minio.getObject(s.bucket, `${d.output_prefix}${name}`)) chunks.push(ch as Buffer);
      return JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
    };
    t.match(JSON.stringify(await read('_results.json')), `"version":"${a.output_version}"`, `round ${round}: _results.json names it`);
    t.match(JSON.stringify(await read('_lineage.json')), `"version":"${a.output_version}"`, `round ${round}: and _lineage.json`);
  }
});

// A second copy of a success report that read the run Running while the first was committing (its log
// lines wait on the run's row), then checked the project's quota after that commit: it counted the run's
// own outputs twice, took itself for over the quota, and removed the outputs of a run that had just ended
// Successful (its end, refused by the guard, changed nothing).
t.test('a second copy of a success report near the storage quota leaves the Successful run\'s outputs', async (t) => {
  const { s, attempt, finish, line } = await setUp(t);
  const d = await attempt();
  const big = Buffer.alloc(50_000, 1);
  await s.minio.putObject(s.bucket, `${d.output_prefix}package.zip`, zip);
  await s.minio.putObject(s.bucket, `${d.output_prefix}artifacts/model.bin`, big);
  const used = Number((await s.cliJson<any[]>(['projects'])).find((p) => p.name === 'default')?.storage_bytes ?? 0);
  // Room for this run's outputs once (with its two documents), not twice.
  await s.query(`INSERT INTO project_limits (project, max_storage_bytes) VALUES ('default', $1)
                 ON CONFLICT (project) DO UPDATE SET max_storage_bytes = excluded.max_storage_bytes`, [used + big.length + 20_000]);
  // The first copy's version insert waits on a row this test holds uncommitted, holding the run's row.
  const holder = new pg.Client({ connectionString: s.databaseUrl });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query(`INSERT INTO package_versions (package, major, minor, source, object_key, size_bytes, sha256) VALUES ('quick', 1, 1, 'upload', 'held', 1, $1)`, [sha]);
  const lines = [line(1, 'done')];
  const first = finish(d, { attempt: d.attempt, lines });
  const waiting = async () => (await s.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%package_versions%' AND pid <> $1", [holder.processID])).length > 0;
  for (const until = Date.now() + 10_000; !(await waiting()) && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
  t.ok(await waiting(), 'the first copy waits, holding the run');
  const second = finish(d, { attempt: d.attempt, lines });
  await new Promise((r) => setTimeout(r, 500)); // the second has read the run and waits on its row
  await holder.query('ROLLBACK');
  const [a, b] = await Promise.all([first, second]);
  t.equal(a.status, 'Successful', 'the first copy succeeds');
  t.same(b, a, 'the second gets the same answer');
  const left = await s.objects(d.output_prefix);
  t.ok(left.includes(`${d.output_prefix}artifacts/model.bin`) && left.includes(`${d.output_prefix}_results.json`), `the run's outputs are all still there (${left.length})`);
});

// ReportStatus answers "stop" from the row its transition changed (its RETURNING), without reading the run
// again; a report that changes nothing (sent again, or stale) still reads it.
t.test('a status report says stop when a kill or a preemption was asked, from the changed row or a read', async (t) => {
  const { s, agent } = await setUp(t);
  await s.cliJson(['run', 'train', '--package', 'quick', '--version', '1.0', '--dataset', 'd']);
  const d = await agent.nextDispatch();
  const report = async (status: string, lease = d.lease) => (await agent.call<{ stop: boolean }>('ReportStatus', { run_id: d.run_id, lease, status })).stop;
  t.equal(await report('Packaging'), false, 'an ordinary report: go on');
  // A kill accepted meanwhile (as `run kill` marks it; the agent hears of it at its next heartbeat).
  await s.query('UPDATE runs SET kill_requested = true WHERE id = $1', [d.run_id]);
  t.equal(await report('Running'), true, 'the next report, which still changes the run, says stop');
  t.equal((await s.query('SELECT status FROM runs WHERE id = $1', [d.run_id]))[0]!.status, 'Running', 'the transition was made (the answer came from its row)');
  t.equal(await report('released'), true, 'and so does the release');
  t.equal(await report('Running'), true, 'a report sent again changes nothing and reads the run: stop');
  await s.query('UPDATE runs SET kill_requested = false, preempted_by = $2 WHERE id = $1', [d.run_id, d.run_id]);
  t.equal(await report('Running'), true, 'a preemption asked: stop');
  await s.query('UPDATE runs SET preempted_by = NULL WHERE id = $1', [d.run_id]);
  t.equal(await report('Running'), false, 'neither: go on');
  t.equal(await report('Running', d.lease + 1), true, 'a stale lease: stop');
});
