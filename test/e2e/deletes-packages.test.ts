// Issue 21, storage that is cleaned up: `package delete NAME [VERSION]` and `dataset delete NAME` (runs and
// roles: deletes.test.ts).
// Each removes the rows and the objects (checked in Postgres and in a real MinIO listing), refuses what is
// still needed leaving everything as it was, is logged in the ML log, and follows the role table: members
// delete in their project, readers are refused, another project's things are answered as missing. Runs are
// submitted with no agent (they stay queued, so they are live) and killed to end them: no run executes.
import t, { type Test } from 'tap';
import type { ClientWritableStream } from '@grpc/grpc-js';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { as, snapshot, trainPy } from '../helpers/deletes.js';

// One stack shared by two tests (a stack costs seconds on a loaded machine); their names differ.
t.test('packages and datasets', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await t.test('package delete: a version, then the package; the shared zip goes with the last version that names it; refusals', (t) => packageDelete(t, s));
  await t.test('dataset delete: its row and every file under datasets/NAME/; refused while a live run reads it', (t) => datasetDelete(t, s));
});

async function packageDelete(t: Test, s: Stack): Promise<void> {
  const M = await as(s, 'alpha', 'member');
  const dir = writeTree(tempDir(), { 'train.py': trainPy });
  for (let i = 0; i < 2; i++) t.equal((await M(['package', 'push', dir, '--name', 'p'])).code, 0, `the same bytes pushed (${i + 1}.0)`);
  t.equal((await M(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy + '\n# v3\n' }), '--name', 'p'])).code, 0, 'other bytes (3.0)');
  t.equal((await M(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd'])).code, 0, 'dataset pushed');
  const [k1, , k3] = (await s.query("SELECT object_key FROM package_versions WHERE package = 'p' ORDER BY major")).map((r) => r.object_key as string);
  t.equal((await s.objects('packages/p/')).length, 2, '1.0 and 2.0 share one content-addressed zip');
  const run3 = (await M(['run', 'train', '--package', 'p', '--version', '3.0', '--dataset', 'd'])).out.id as string;
  t.equal((await M(['schedules', 'create', 'nightly', '--cron', '0 3 * * *', '--', 'run', 'train', '--package', 'p', '--version', '2.0', '--dataset', 'd'])).code, 0, 'a schedule names 2.0');

  let before = await snapshot(s);
  const byRun = await M(['package', 'delete', 'p', '3.0']);
  t.equal(byRun.err?.code, 'FAILED_PRECONDITION', 'a version a queued run uses is refused');
  t.match(byRun.err?.message, new RegExp(`package "p" 3.0 is still needed: run ${run3} \\((Scheduled|Waiting for resources)\\) uses version 3.0`), byRun.err?.message);
  const bySchedule = await M(['package', 'delete', 'p', '2.0']);
  t.match(bySchedule.err?.message, /package "p" 2.0 is still needed: schedule "nightly" \(active\) names 2.0/, 'a version a schedule names is refused');
  const all = await M(['package', 'delete', 'p']);
  t.equal(all.err?.code, 'FAILED_PRECONDITION', 'so is the whole package');
  t.same(await snapshot(s), before, 'the refusals changed nothing, in the database or the bucket');
  t.equal((await M(['package', 'delete', 'p', '7.0'])).err?.code, 'NOT_FOUND', 'a version that does not exist: NOT_FOUND');
  t.equal((await M(['package', 'delete', 'p', 'x.y'])).code, 2, 'a malformed version: a usage error');

  const one = await M(['package', 'delete', 'p', '1.0']);
  t.match(one.out, { versions: ['1.0'], objects_removed: 0 }, '1.0 is deleted; its zip stays, since 2.0 points at it');
  t.same(await s.objects('packages/p/'), [k1, k3].sort(), 'both zips are still in the bucket');
  t.same((await s.query("SELECT major FROM package_versions WHERE package = 'p' ORDER BY major")).map((r) => r.major), [2, 3], 'the 1.0 row is gone');
  t.same((await M(['package', 'versions', 'p'])).out.map((v: any) => v.version), ['2.0', '3.0'], 'package versions lists the others');

  t.equal((await M(['schedules', 'delete', 'nightly'])).code, 0, 'the schedule is deleted');
  t.equal((await M(['run', 'kill', run3])).code, 0, 'and the run killed');
  before = await snapshot(s);
  const rest = await M(['package', 'delete', 'p']);
  t.match(rest.out, { kind: 'package', subject: 'p', versions: ['2.0', '3.0'], objects_removed: 2 }, 'every version is deleted');
  t.same(await s.objects('packages/p/'), [], 'no zip is left in the bucket');
  t.same(await s.query("SELECT 1 FROM package_versions WHERE package = 'p' UNION ALL SELECT 1 FROM packages WHERE name = 'p'"), [], 'no row either, the package\'s included');
  t.same((await s.query("SELECT detail FROM events WHERE kind = 'package.deleted' ORDER BY id")).map((e) => e.detail.replace(/ by .*/, '')),
    ['version 1.0 deleted', 'version 2.0 deleted', 'version 3.0 deleted'], 'each version has its package.deleted event');
  t.equal((await M(['package', 'versions', 'p'])).err?.code, 'NOT_FOUND', 'the package is gone');
  t.same((await snapshot(s)).runs, before.runs, 'the ended run that used it is kept');
}

async function datasetDelete(t: Test, s: Stack): Promise<void> {
  const M = await as(s, 'alpha', 'member');
  t.equal((await M(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'p'])).code, 0, 'package pushed again');
  t.equal((await M(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n', 'sub/b.csv': '2\n' }), '--name', 'e'])).code, 0, 'dataset e pushed');
  t.equal((await M(['dataset', 'push', writeTree(tempDir(), { 'c.csv': '3\n' }), '--name', 'e2'])).code, 0, 'dataset e2 pushed (its prefix starts as e\'s does)');
  const live = (await M(['run', 'full', '--package', 'p', '--dataset', 'e2', '--eval-dataset', 'e/sub'])).out.id as string;

  const before = await snapshot(s);
  const refused = await M(['dataset', 'delete', 'e']);
  t.equal(refused.err?.code, 'FAILED_PRECONDITION', 'a dataset a live run reads (as its evaluation data) is refused');
  t.match(refused.err?.message, new RegExp(`dataset "e" is still needed: run ${live} \\((Scheduled|Waiting for resources)\\) reads it`), refused.err?.message);
  t.same(await snapshot(s), before, 'the refusal changed nothing');
  t.equal((await M(['dataset', 'delete', 'e/sub'])).code, 2, 'a subfolder: a usage error');

  t.equal((await M(['run', 'kill', live])).code, 0, 'the run is killed');
  const done = await M(['dataset', 'delete', 'e']);
  t.match(done.out, { kind: 'dataset', subject: 'e', objects_removed: 2 }, 'deleted: two files');
  t.same(await s.objects('datasets/e/'), [], 'none of its files is left');
  t.same(await s.objects('datasets/e2/'), ['datasets/e2/c.csv'], 'e2 is untouched');
  t.same(await s.query("SELECT name FROM datasets WHERE name IN ('e', 'e2') ORDER BY name"), [{ name: 'e2' }], 'its row is gone');
  t.match(await s.query("SELECT project, subject FROM events WHERE kind = 'dataset.deleted'"), [{ project: 'alpha', subject: 'e' }], 'dataset.deleted is in the ML log');
  t.same((await M(['dataset', 'list'])).out.map((d: any) => d.name).filter((n: string) => n.startsWith('e')), ['e2'], 'dataset list shows e2, not e');
  const submit = await M(['run', 'train', '--package', 'p', '--dataset', 'e']);
  t.equal(submit.err?.code, 'NOT_FOUND', 'a run naming it is refused: not found');

  // A push under way into a dataset keeps it: deleted beside it, the push's end would bring the name back.
  t.equal((await M(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n' }), '--name', 'f'])).code, 0, 'dataset f pushed');
  const client = s.api().client;
  const open = (name: string) => {
    let answer!: (err: Error | null) => void;
    const ended = new Promise<Error | null>((r) => { answer = r; });
    const call = client.PushDataset((err: Error | null) => answer(err)) as ClientWritableStream<unknown>;
    call.write({ header: { name, size_bytes: 2 } });
    call.write({ file: { path: 'b.csv', size_bytes: 2 } });
    return { call, ended };
  };
  const counted = async (name: string) => {
    for (const until = Date.now() + 10_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      if (Number((await s.query('SELECT pushes_open FROM datasets WHERE name = $1', [name]))[0]?.pushes_open) === 1) return true;
    }
    return false;
  };
  const push = open('f');
  t.ok(await counted('f'), 'a push into f is under way');
  const during = await M(['dataset', 'delete', 'f']);
  t.equal(during.err?.code, 'FAILED_PRECONDITION', 'deleting a dataset a push is storing into is refused');
  t.match(during.err?.message, /dataset "f" is still needed: a push into it is under way/, during.err?.message);
  push.call.write({ data: Buffer.from('2\n') });
  push.call.end();
  t.equal(await push.ended, null, 'the push ends');
  t.match(await s.query("SELECT file_count, deleting_at FROM datasets WHERE name = 'f'"), [{ file_count: 2, deleting_at: null }], 'with both files, the dataset not deleted');

  // A push taken for dead (nothing said it was alive for minutes) no longer keeps it: the delete goes on,
  // and the push's end is refused rather than make the dataset again over the emptied prefix.
  const late = open('f');
  t.ok(await counted('f'), 'another push into f is under way');
  await s.query("UPDATE datasets SET push_seen_at = now() - interval '10 minutes' WHERE name = 'f'");
  t.equal((await M(['dataset', 'delete', 'f'])).code, 0, 'f is deleted (its push taken for dead)');
  late.call.write({ data: Buffer.from('3\n') });
  late.call.end();
  t.match(String((await late.ended)?.message), /dataset "f" was deleted while this push ran; push it again/, 'the push\'s end is refused');
  t.same(await s.query("SELECT name FROM datasets WHERE name = 'f'"), [], 'and f stays deleted');
}

