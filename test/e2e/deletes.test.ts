// Issue 21, storage that is cleaned up: `run delete`, `package delete NAME [VERSION]`, `dataset delete NAME`.
// Each removes the rows and the objects (checked in Postgres and in a real MinIO listing), refuses what is
// still needed leaving everything as it was, is logged in the ML log, and follows the role table: members
// delete in their project, readers are refused, another project's things are answered as missing. Runs are
// submitted with no agent (they stay queued, so they are live) and killed to end them: no run executes.
import t, { type Test } from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const trainPy = `
class Main:
    def train(self, d):
        pass
    def evaluate(self, d):
        return 1.0
    def save(self):
        pass
`;

type Cli = (args: string[]) => Promise<{ code: number; out: any; err: any }>;

async function as(s: Stack, project: string, role: string): Promise<Cli> {
  const token = (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  return async (args) => {
    const r = await s.cli([...args, '--json', '--token', token]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null };
  };
}

/** Puts an object straight into the bucket, as an attempt (or a checkpointer) would have. */
const put = (s: Stack, key: string, body = 'x') => s.minio.putObject(s.bucket, key, Buffer.from(body));

/** The rows and objects a check compares before and after a refusal. */
async function snapshot(s: Stack) {
  return {
    runs: await s.query('SELECT id, status, deleting_at FROM runs ORDER BY id'),
    versions: await s.query('SELECT package, major, minor, deleting_at FROM package_versions ORDER BY 1, 2, 3'),
    datasets: await s.query('SELECT name, deleting_at FROM datasets ORDER BY name'),
    objects: await s.objects(),
  };
}

// Two stacks, each shared by two tests (a stack costs seconds on a loaded machine); names differ between them.
t.test('runs, and who may delete', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await t.test('run delete: an ended run\'s rows and everything under runs/RUN/; a live run is refused', (t) => runDelete(t, s));
  await t.test('who may delete: members of the project; readers are refused; other projects see nothing', (t) => whoMay(t, s));
});

t.test('packages and datasets', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await t.test('package delete: a version, then the package; the shared zip goes with the last version that names it; refusals', (t) => packageDelete(t, s));
  await t.test('dataset delete: its row and every file under datasets/NAME/; refused while a live run reads it', (t) => datasetDelete(t, s));
});

async function runDelete(t: Test, s: Stack): Promise<void> {
  const M = await as(s, 'alpha', 'member');
  t.equal((await M(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'p'])).code, 0, 'package pushed');
  t.equal((await M(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd'])).code, 0, 'dataset pushed');
  const live = (await M(['run', 'train', '--package', 'p', '--dataset', 'd'])).out.id as string;
  const ended = (await M(['run', 'train', '--package', 'p', '--dataset', 'd'])).out.id as string;
  t.equal((await M(['run', 'kill', ended])).out.status, 'Killed', 'one run ended (killed while queued)');
  // What attempts leave, and what another part of Trainyard may add under the run's own prefix.
  for (const key of [`runs/${ended}/attempt-1/artifacts/model.bin`, `runs/${ended}/attempt-1/_results.json`, `runs/${ended}/attempt-2/package.zip`, `runs/${ended}/checkpoints/step-10.pt`, `runs/${live}/attempt-1/artifacts/a.txt`, `runs/${ended}x/other.txt`]) await put(s, key);

  const before = await snapshot(s);
  const refused = await M(['run', 'delete', live]);
  t.equal(refused.code, 1, 'a live run cannot be deleted');
  t.equal(refused.err?.code, 'FAILED_PRECONDITION', 'FAILED_PRECONDITION');
  t.match(refused.err?.message, new RegExp(`run ${live} is (Scheduled|Waiting for resources): only an ended run can be deleted \\(stop it first: trainyard run kill ${live}\\)`), refused.err?.message);
  t.same(await snapshot(s), before, 'the refusal changed nothing, in the database or the bucket');

  const done = await M(['run', 'delete', ended]);
  t.equal(done.code, 0, 'an ended run is deleted');
  t.match(done.out, { kind: 'run', subject: ended, objects_removed: 4 }, 'it says what it removed');
  t.same(await s.objects(`runs/${ended}/`), [], 'nothing is left under runs/RUN/, checkpoints included');
  t.same(await s.objects(`runs/${ended}x/`), [`runs/${ended}x/other.txt`], 'a run whose id starts the same is untouched');
  t.same(await s.objects(`runs/${live}/`), [`runs/${live}/attempt-1/artifacts/a.txt`], 'the other run\'s objects are untouched');
  for (const table of ['runs WHERE id', 'run_events WHERE run_id', 'run_logs WHERE run_id', 'run_secrets WHERE run_id']) {
    t.same(await s.query(`SELECT 1 FROM ${table} = $1`, [ended]), [], `no row of it is left (${table.split(' ')[0]})`);
  }
  const [ev] = await s.query("SELECT project, detail, data FROM events WHERE kind = 'run.deleted' AND subject = $1", [ended]);
  t.match(ev, { project: 'alpha', detail: /^deleted by token \w+ \(member of project "alpha"\)$/, data: { objects_removed: 4 } }, 'the ML log has run.deleted, saying by whom');
  t.equal((await M(['run', 'get', ended])).err?.code, 'NOT_FOUND', 'run get: not found');
  t.equal((await M(['run', 'delete', ended])).err?.code, 'NOT_FOUND', 'deleting it again: not found');
  t.equal((await M(['run', 'delete', '--yes'])).code, 2, 'no run id: a usage error');
}

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
}

async function whoMay(t: Test, s: Stack): Promise<void> {
  const A = await as(s, 'alpha', 'member');
  const R = await as(s, 'alpha', 'reader');
  const B = await as(s, 'beta', 'member');
  t.equal((await A(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'wp'])).code, 0, 'alpha\'s package');
  t.equal((await A(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'wd'])).code, 0, 'alpha\'s dataset');
  const run = (await A(['run', 'train', '--package', 'wp', '--dataset', 'wd'])).out.id as string;
  t.equal((await A(['run', 'kill', run])).code, 0, 'alpha\'s ended run');
  await put(s, `runs/${run}/attempt-1/artifacts/a.txt`);

  const before = await snapshot(s);
  for (const args of [['run', 'delete', run], ['package', 'delete', 'wp', '1.0'], ['package', 'delete', 'wp'], ['dataset', 'delete', 'wd']]) {
    const r = await R(args);
    t.equal(r.err?.code, 'PERMISSION_DENIED', `a reader: ${args.join(' ')} is PERMISSION_DENIED`);
    t.match(r.err?.message, /a reader token only reads/, 'saying it only reads');
    const b = await B(args);
    t.equal(b.err?.code, 'NOT_FOUND', `another project's member: ${args.join(' ')} is NOT_FOUND`);
    const missing = await B([args[0]!, args[1]!, `${args[2]}-missing`, ...args.slice(3)]);
    t.equal(b.err?.message, missing.err?.message.replace(`${args[2]}-missing`, args[2]!), 'with the very message a missing one gets');
  }
  t.same(await snapshot(s), before, 'none of that changed anything');
  t.equal((await A(['run', 'delete', run])).code, 0, 'alpha\'s member deletes the run');
  t.same(await s.objects(`runs/${run}/`), [], 'its objects are gone');
  t.equal((await s.cli(['dataset', 'delete', 'wd', '--yes', '--json'])).code, 0, 'an admin deletes any project\'s dataset');
}
