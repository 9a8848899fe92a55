// Issue 21: retention per project (`projects set P --keep-runs AGE --keep-versions N`), applied by the
// placing scheduler in small batches, and the same scheduler finishing deletes left half done. Checked in
// Postgres and in a real MinIO listing. Never a live run, never the newest version, never one a schedule
// or a live run names, never another project's. Runs are queued with no agent and killed to end them; an
// old run is one whose ended_at the test moves back (the age is what retention reads).
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { until } from '../helpers/packages.js';
import { fakeCheckpoint } from '../helpers/deletes.js';

const trainPy = (tag: string) => `
class Main:
    def train(self, d):
        pass
    def save(self):
        pass
# ${tag}
`;

t.test('retention deletes old runs and old versions, and keeps what is still needed', async (t) => {
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_STORAGE_JANITOR_INTERVAL_S: '1' } });
  for (const v of ['1', '2', '3', '4']) t.equal((await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy(v) }), '--name', 'p'])).code, 0, `p ${v}.0 pushed`);
  t.equal((await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy('b') }), '--name', 'q'])).code, 0, 'q 1.0 pushed');
  t.equal((await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy('b2') }), '--name', 'q'])).code, 0, 'q 2.0 pushed');
  await s.query("UPDATE packages SET project = 'alpha' WHERE name = 'p'");
  await s.query("UPDATE packages SET project = 'beta' WHERE name = 'q'");
  t.equal((await s.cli(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd'])).code, 0, 'dataset pushed');
  await s.query("UPDATE datasets SET project = 'alpha' WHERE name = 'd'");
  const submit = async (project: string, pkg: string, version: string) =>
    (await s.cliJson(['run', 'train', '--package', pkg, '--version', version, '--dataset', 'd', '--project', project])).id as string;
  const old = await submit('alpha', 'p', '4.0');
  const recent = await submit('alpha', 'p', '4.0');
  const live = await submit('alpha', 'p', '2.0');
  const otherOld = await submit('beta', 'q', '1.0');
  const resumed = await submit('alpha', 'p', '4.0');
  for (const id of [old, recent, otherOld, resumed]) t.equal((await s.cli(['run', 'kill', id])).code, 0, `${id} ended`);
  await s.query("UPDATE runs SET ended_at = now() - interval '3 days' WHERE id = ANY($1)", [[old, otherOld, resumed]]);
  // An old run whose checkpoint a queued run resumes from: kept while that run lives.
  await fakeCheckpoint(s, resumed);
  const resumer = (await s.cliJson(['run', 'train', '--package', 'p', '--version', '4.0', '--dataset', 'd', '--project', 'alpha', '--resume-from', resumed])).id as string;
  for (const id of [old, recent, otherOld]) await s.minio.putObject(s.bucket, `runs/${id}/attempt-1/artifacts/a.txt`, Buffer.from('x'));
  t.equal((await s.cli(['schedules', 'create', 'weekly', '--cron', '0 3 * * 1', '--', 'run', 'train', '--package', 'p', '--version', '1.00', '--dataset', 'd', '--project', 'alpha'])).code, 0, 'a schedule names p 1.0 (written 1.00)');
  const zip = async (version: string) => (await s.query("SELECT object_key FROM package_versions WHERE package = 'p' AND major || '.' || minor = $1", [version]))[0]?.object_key as string;
  const zip3 = await zip('3.0');

  t.equal((await s.cli(['projects', 'set', 'alpha', '--keep-runs', '12x'])).code, 2, 'an age that is not one is a usage error');
  t.equal((await s.cli(['projects', 'set', 'alpha', '--keep-versions', '0'])).code, 2, 'keeping 0 versions is a usage error (the newest is always kept)');
  const far = await s.cli(['projects', 'set', 'alpha', '--keep-runs', '40000d']);
  t.equal(far.code, 2, 'an age over 100 years is a usage error');
  t.match(far.stderr, /--keep-runs: at most 36500d \(100 years\)/, far.stderr);
  const farApi = await s.api().setProjectLimits({ project: 'alpha', max_runs: -1, max_gpus: -1, set_keep_runs: true, keep_runs_seconds: 4e9 } as never).catch((e: Error) => e);
  t.match(String(farApi), /keep_runs_seconds must be at most 3153600000 \(100 years\)/, 'and refused by the scheduler too: an age Postgres cannot subtract would stop every project\'s retention');
  const set = await s.cliJson(['projects', 'set', 'alpha', '--keep-runs', '1d', '--keep-versions', '1']);
  t.match(set, { keep_runs_seconds: 86_400, keep_versions: 1 }, 'the retention is stored');

  await until('the old run is deleted', async () => (await s.query('SELECT 1 FROM runs WHERE id = $1', [old])).length === 0, 60_000);
  await until('p 3.0 is deleted', async () => !(await zip('3.0')), 60_000);
  t.same(await s.objects(`runs/${old}/`), [], 'the old run\'s objects are gone');
  t.same(await s.query('SELECT 1 FROM run_events WHERE run_id = $1', [old]), [], 'and its events');
  t.same((await s.query('SELECT id FROM runs WHERE id = ANY($1) ORDER BY id', [[recent, live, otherOld, resumed, resumer]])).map((r) => r.id), [recent, live, otherOld, resumed, resumer].sort(),
    'a recent ended run, a live run, another project\'s old run and an old run a live run resumes from are kept');
  t.equal((await s.objects(`runs/${resumed}/checkpoints/`)).length, 2, 'that one with its checkpoint');
  t.same(await s.objects(`runs/${otherOld}/`), [`runs/${otherOld}/attempt-1/artifacts/a.txt`], 'with their objects');
  t.same((await s.query("SELECT major || '.' || minor AS v FROM package_versions WHERE package = 'p' ORDER BY major")).map((r) => r.v), ['1.0', '2.0', '4.0'],
    'p keeps 4.0 (the newest), 2.0 (a live run\'s) and 1.0 (a schedule\'s); 3.0 is deleted');
  t.notOk((await s.objects('packages/p/')).includes(zip3), '3.0\'s zip is gone from the bucket');
  t.equal((await s.objects('packages/p/')).length, 3, 'the others\' are there');
  t.equal((await s.query("SELECT 1 FROM package_versions WHERE package = 'q'")).length, 2, 'another project\'s versions are kept');
  const events = await s.query("SELECT kind, subject, detail FROM events WHERE kind IN ('run.deleted', 'package.deleted') ORDER BY id");
  t.match(events, [{ kind: /run.deleted|package.deleted/, detail: /retention of project "alpha"/ }, { kind: /run.deleted|package.deleted/, detail: /retention of project "alpha"/ }], 'each is logged, as retention\'s');
  t.equal(events.length, 2, 'and nothing else was deleted');
  const shown = (await s.cliJson<any[]>(['projects'])).find((p) => p.name === 'alpha');
  t.match(shown, { keep_runs_seconds: 86_400, keep_versions: 1 }, 'projects shows the retention');
  t.match((await s.cli(['projects'])).stdout, /KEEP RUNS.*KEEP VERSIONS[\s\S]*alpha.* 1d +1\b/, 'in its table too');
  t.match(await s.cliJson(['projects', 'set', 'alpha', '--keep-runs', 'none', '--keep-versions', 'none']), { keep_runs_seconds: -1, keep_versions: -1 }, '"none" keeps everything again');
});

t.test('a delete left half done is finished by the placing scheduler', async (t) => {
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_STORAGE_JANITOR_INTERVAL_S: '1' } });
  t.equal((await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy('1') }), '--name', 'p'])).code, 0, 'package pushed');
  t.equal((await s.cli(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n', 'b.csv': '2\n' }), '--name', 'd'])).code, 0, 'dataset pushed');
  const run = (await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'd'])).id as string;
  t.equal((await s.cli(['run', 'kill', run])).code, 0, 'the run ended');
  await s.minio.putObject(s.bucket, `runs/${run}/attempt-1/artifacts/a.txt`, Buffer.from('x'));
  // As a scheduler that died after marking them, and after removing one of the dataset's files.
  await s.query("UPDATE runs SET deleting_at = now() - interval '1 hour', deleted_by = 'test' WHERE id = $1", [run]);
  await s.query("UPDATE datasets SET deleting_at = now() - interval '1 hour', deleted_by = 'test' WHERE name = 'd'");
  await s.minio.removeObject(s.bucket, 'datasets/d/a.csv');
  t.same((await s.cliJson<any[]>(['dataset', 'list'])), [], 'a dataset being deleted is listed no more');
  t.equal((await s.cli(['run', 'train', '--package', 'p', '--dataset', 'd'])).code, 1, 'nor can a run name it');

  await until('both deletes are finished', async () => (await s.query("SELECT 1 FROM runs WHERE id = $1 UNION ALL SELECT 1 FROM datasets WHERE name = 'd'", [run])).length === 0, 60_000);
  t.same(await s.objects(`runs/${run}/`), [], 'the run\'s objects are gone');
  t.same(await s.objects('datasets/d/'), [], 'the dataset\'s too');
  t.same((await s.query("SELECT kind FROM events WHERE kind IN ('run.deleted', 'dataset.deleted') ORDER BY kind")).map((e) => e.kind), ['dataset.deleted', 'run.deleted'], 'each is logged once');
});
