// Issue 21, a warm run without its dataset's listing (scheduler/datasets/generation.ts): every dataset push
// gives the dataset a new generation, a run's claim carries it, and an agent that listed that generation
// shortly before (--listing-trust-seconds) uses that listing instead of listing again. Checked here with a
// real scheduler, agent and MinIO: a file written into the bucket behind Trainyard's back is not seen by a
// run of the same generation (that is the trade, documented), a push is seen by the very next run, and
// while pushes are under way (or after one failed part way) no listing is trusted; a dead push's name
// claim is taken with its files removed, and a push whose claim was taken fails without touching them.
import t from 'tap';
import type { ClientWritableStream } from '@grpc/grpc-js';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy } from '../helpers/packages.js';

t.test('a push is a new generation: the next run sees it; a run of the same generation uses the listing of a moment ago', async (t) => {
  const s = await Stack.create(t, { agents: ['one'] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', 'p']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n' }), '--name', 'g']);
  const generation = async () => Number((await s.query<{ generation: string }>('SELECT generation FROM datasets WHERE name = $1', ['g']))[0]!.generation);
  const g1 = await generation();
  t.ok(g1 > 0, `a pushed dataset has a generation (${g1})`);

  const run = async () => {
    const r = await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'g']);
    const done = await s.waitForStatus(String(r.id), ['Successful', 'Failed']);
    t.equal(done.status, 'Successful', `run ${r.id} succeeded (${done.failure_reason ?? ''})`);
    const lineage = JSON.parse(await s.objectText(`runs/${r.id}/attempt-1/_lineage.json`)) as { data: { manifest: { path: string }[] } };
    return { logs: (await s.cli(['run', 'logs', String(r.id)])).stdout, files: lineage.data.manifest.map((f) => f.path).sort() };
  };
  const trusted = /listed this generation of it shortly before/;
  const first = await run();
  t.notMatch(first.logs, trusted, 'the first run lists the dataset');
  t.same(first.files, ['a.csv']);

  // Behind Trainyard's back: not a new generation, so not seen within the agent's trust (60 s by default).
  await s.minio.putObject(s.bucket, 'datasets/g/behind.csv', Buffer.from('2\n'));
  const second = await run();
  t.match(second.logs, trusted, 'the second run uses the listing the first one made');
  t.same(second.files, ['a.csv'], 'so the file written behind Trainyard\'s back is not in it, and its lineage says what it had');

  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'b.csv': '3\n' }), '--name', 'g']);
  const g2 = await generation();
  t.ok(g2 > 0 && g2 !== g1, `the push gave a new generation (${g1} -> ${g2})`);
  const third = await run();
  t.notMatch(third.logs, trusted, 'the run after the push lists the dataset');
  t.same(third.files, ['a.csv', 'b.csv', 'behind.csv'], 'and sees the push, and what was written behind its back');

  // Two pushes under way at once: from the first's header on, claims hand out 0 ("list it"), and still
  // do once the first has ended while the second stores files.
  const client = s.api().client;
  /** A push of `name` over gRPC, left open after its header and the start of a 2-byte `file`; `ended`: its answer. */
  const open = (file: string, name = 'g', sizeBytes = 2) => {
    let answer!: (err: Error | null) => void;
    const ended = new Promise<Error | null>((r) => { answer = r; });
    const call = client.PushDataset((err: Error | null) => answer(err)) as ClientWritableStream<unknown>;
    call.write({ header: { name, size_bytes: sizeBytes } });
    call.write({ file: { path: file, size_bytes: 2 } });
    return { call, ended };
  };
  /** Whether `cond` came true within 10 s (polled). */
  const within10s = async (cond: () => Promise<boolean>) => {
    for (const until = Date.now() + 10_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      if (await cond()) return true;
    }
    return false;
  };
  const opened = (n: number) => within10s(async () => Number((await s.query('SELECT pushes_open FROM datasets WHERE name = $1', ['g']))[0]!.pushes_open) === n);
  const claimOf = (name: string) => within10s(async () => (await s.query('SELECT 1 FROM dataset_claims WHERE name = $1', [name])).length > 0);
  const pushA = open('c.csv');
  t.ok(await opened(1), 'a push under way is counted');
  const pushB = open('c2.csv');
  t.ok(await opened(2), 'and a second one beside it');
  await s.minio.putObject(s.bucket, 'datasets/g/during.csv', Buffer.from('4\n'));
  const during = await run();
  t.notMatch(during.logs, trusted, 'a run claimed while pushes run lists the dataset');
  t.ok(during.files.includes('during.csv'), 'and so sees what is in the bucket now');
  pushA.call.write({ data: Buffer.from('5\n') });
  pushA.call.end();
  t.equal(await pushA.ended, null, 'the first push ends');
  t.ok(await opened(1), 'one push is still under way');
  // Two runs: were the first one's listing kept for a generation, the second would use it.
  t.notMatch((await run()).logs, trusted, 'a run claimed while the second push still runs lists the dataset');
  await s.minio.putObject(s.bucket, 'datasets/g/during2.csv', Buffer.from('6\n'));
  const between = await run();
  t.notMatch(between.logs, trusted, 'and so does the run after it');
  t.ok(between.files.includes('during2.csv'), 'which sees what is in the bucket now');
  pushB.call.write({ data: Buffer.from('7\n') });
  pushB.call.end();
  t.equal(await pushB.ended, null, 'the second push ends');
  const g3 = await generation();
  t.ok(g3 > 0 && g3 !== g2, `and the dataset has a new generation (${g3})`);
  t.equal(Number((await s.query('SELECT pushes_open FROM datasets WHERE name = $1', ['g']))[0]!.pushes_open), 0, 'no push is counted as under way');

  // Two first pushes of one new name at once, even by one project: the second is refused at its header
  // (each would take the other's files for its own, and a failed one remove them).
  const newA = client.PushDataset(() => {}) as ClientWritableStream<unknown>;
  newA.write({ header: { name: 'fresh', size_bytes: 0 } });
  t.ok(await claimOf('fresh'), 'the first push of "fresh" holds its claim');
  const again = await s.cli(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'fresh']);
  t.not(again.code, 0, 'a second first push of the name is refused');
  t.match(again.stderr, /being created by another push/, 'saying why');
  newA.cancel();

  // A push that fails part way changed what it stored: a new generation too.
  const bad = open('d.csv', 'g', 0);
  bad.call.write({ data: Buffer.from('6\n') });
  bad.call.write({ file: { path: 'd.csv', size_bytes: 2 } }); // the same path twice: refused
  bad.call.end();
  t.match(String((await bad.ended)?.message), /sent twice/, 'the bad push is refused');
  const g4 = await generation();
  t.ok(g4 > 0 && g4 !== g3, `a failed push of an existing dataset leaves a new generation (${g3} -> ${g4})`);
  t.equal(Number((await s.query('SELECT pushes_open FROM datasets WHERE name = $1', ['g']))[0]!.pushes_open), 0, 'and is no longer counted as under way');

  // A dead push's claim (not refreshed for 3 minutes) is taken, and what it stored goes first.
  await s.query("INSERT INTO dataset_claims (name, project, claimed_at, push_id) VALUES ('stale', 'default', now() - interval '10 minutes', 'dead')");
  await s.minio.putObject(s.bucket, 'datasets/stale/leftover.csv', Buffer.from('dead push\n'));
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'stale']);
  t.same(await s.objects('datasets/stale/'), ['datasets/stale/x.csv'], 'a dead push\'s claim is taken, and its files removed first');

  // A push whose claim another took meanwhile (it was taken for dead) fails, and leaves the folder alone.
  const lost = open('mine.csv', 'taken');
  t.ok(await claimOf('taken'), 'the first push of "taken" holds its claim');
  await s.query("UPDATE dataset_claims SET push_id = 'another' WHERE name = 'taken'");
  lost.call.write({ data: Buffer.from('8\n') });
  lost.call.end();
  t.match(String((await lost.ended)?.message), /another push took the name/, 'the push whose claim was taken fails, saying why');
  t.same(await s.query("SELECT name FROM datasets WHERE name = 'taken'"), [], 'no dataset row is written for it');
  t.same(await s.objects('datasets/taken/'), ['datasets/taken/mine.csv'], 'and the folder, the other push\'s now, is left as it is');

  // The same, the push failing for a reason of its own (too many bytes) before it noticed: the folder,
  // the other push's, is not removed as a failed first push's would be.
  const badFirst = open('mine.csv', 'taken2', 0);
  t.ok(await claimOf('taken2'), 'the first push of "taken2" holds its claim');
  await s.query("UPDATE dataset_claims SET push_id = 'another' WHERE name = 'taken2'");
  await s.minio.putObject(s.bucket, 'datasets/taken2/theirs.csv', Buffer.from('the other push\n'));
  badFirst.call.write({ data: Buffer.from('too many') });
  badFirst.call.end();
  t.match(String((await badFirst.ended)?.message), /more bytes than the 2 announced/, 'the push fails for its own reason');
  t.same(await s.objects('datasets/taken2/'), ['datasets/taken2/theirs.csv'], 'and the other push\'s file stays');
  t.same(await s.query("SELECT push_id FROM dataset_claims WHERE name = 'taken2'"), [{ push_id: 'another' }], 'as does its claim');
});
