// Issue 8, projects own things: a member of project A works with A's packages, datasets and runs only;
// lists show A's only; a reader only reads; priority is capped per project. Issue 19: B's things are, to
// A, things that do not exist: NOT_FOUND with the very message a missing id or name gets, never naming B
// (on main: PERMISSION_DENIED naming project "beta"); a push to B's package or dataset name is refused as a
// name taken, without saying by whom. Real scheduler and agent.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy as quick } from '../helpers/packages.js';
import { connectClient } from '../../cli/client.js';


t.test('project A\'s token on B\'s runs, packages and datasets', async (t) => {
  const s = await Stack.create(t);
  const token = async (project: string, role: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const a = await token('alpha', 'member');
  const ar = await token('alpha', 'reader');
  const b = await token('beta', 'member');
  const as = (tok: string) => (args: string[]) => s.cli([...args, '--token', tok]);
  const asJson = (tok: string) => async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', tok]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null, stderr: r.stderr };
  };
  const A = asJson(a);
  const B = asJson(b);
  const R = asJson(ar);

  // Each project pushes its own package and dataset: they belong to it.
  for (const [who, p] of [[A, 'alpha'], [B, 'beta']] as const) {
    t.equal((await who(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', `pkg-${p}`])).code, 0, `${p} pushes its package`);
    t.equal((await who(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', `data-${p}`])).code, 0, `${p} pushes its dataset`);
  }
  t.same(await s.query('SELECT name, project FROM packages ORDER BY name'), [{ name: 'pkg-alpha', project: 'alpha' }, { name: 'pkg-beta', project: 'beta' }], 'packages belong to the project that pushed them');
  t.same(await s.query('SELECT name, project FROM datasets ORDER BY name'), [{ name: 'data-alpha', project: 'alpha' }, { name: 'data-beta', project: 'beta' }], 'and datasets');

  const runA = await A(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha', '--wait']);
  t.match(runA.out, { status: 'Successful', project: 'alpha' }, 'a member runs with its own package and dataset; the run is its project\'s by default');
  const runB = await B(['run', 'train', '--package', 'pkg-beta', '--dataset', 'data-beta', '--wait']);
  t.match(runB.out, { status: 'Successful', project: 'beta' }, 'so does B');
  const idB = String(runB.out.id);
  const beforeB = (await s.query('SELECT status, kill_requested FROM runs WHERE id = $1', [idB]))[0];

  // A's token on B's run: get, logs, outputs, kill, follow. Each answers as for a run that does not exist.
  const noSuchRun = 'run_nosuchrun0000000';
  /** The refusal `args` gets, and the one it gets with `real` replaced by a name nothing has, made alike. */
  const asIfMissing = async (who: typeof A, args: string[], real: string, none: string) => {
    const [r, missing] = [await who(args), await who(args.map((a) => (a === real ? none : a)))];
    return { r, missing: { ...missing.err, message: String(missing.err?.message).replaceAll(none, real) } };
  };
  for (const args of [['run', 'get', idB], ['run', 'logs', idB], ['run', 'logs', idB, '--follow'], ['run', 'outputs', idB, '--to', tempDir()], ['run', 'kill', idB]]) {
    const { r, missing } = await asIfMissing(A, args, idB, noSuchRun);
    t.equal(r.code, 1, `A: ${args.slice(0, 2).join(' ')} on B's run exits 1`);
    t.equal(r.err?.code, 'NOT_FOUND', `A: ${args.slice(0, 2).join(' ')} is NOT_FOUND`);
    t.same(r.err, missing, `A: ${args.slice(0, 2).join(' ')}: the same answer as for a run that does not exist (${String(r.err?.message)})`);
    t.notMatch(r.err?.message, /beta/, 'not naming project beta');
  }
  t.same((await s.query('SELECT status, kill_requested FROM runs WHERE id = $1', [idB]))[0], beforeB, 'B\'s run is unchanged');

  // A's token on B's package and dataset, and with --project beta.
  const pushB = await A(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'pkg-beta']);
  t.equal(pushB.err?.code, 'ALREADY_EXISTS', 'A cannot push to B\'s package: the name is taken');
  t.match(pushB.err?.message, /package name "pkg-beta" is taken by another project/);
  t.notMatch(pushB.err?.message, /project "beta"/, 'not saying whose');
  t.same((await s.query("SELECT major, minor FROM package_versions WHERE package = 'pkg-beta' AND source = 'upload'")), [{ major: 1, minor: 0 }], 'B\'s package has no new version');
  const dsB = await A(['dataset', 'push', writeTree(tempDir(), { 'evil.csv': '1\n' }), '--name', 'data-beta']);
  t.equal(dsB.err?.code, 'ALREADY_EXISTS', 'A cannot push to B\'s dataset: the name is taken');
  t.match(dsB.err?.message, /dataset name "data-beta" is taken by another project/);
  t.notOk((await s.objects('datasets/data-beta/')).includes('datasets/data-beta/evil.csv'), 'nothing was written into it');
  const withB = await asIfMissing(A, ['run', 'train', '--package', 'pkg-beta', '--dataset', 'data-alpha'], 'pkg-beta', 'pkg-nonesuch');
  t.equal(withB.r.err?.code, 'NOT_FOUND', 'A cannot run with B\'s package');
  t.same(withB.r.err, withB.missing, `as if it did not exist (${String(withB.r.err?.message)})`);
  const withBData = await asIfMissing(A, ['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-beta'], 'data-beta', 'data-nonesuch');
  t.equal(withBData.r.err?.code, 'NOT_FOUND', 'nor with B\'s dataset');
  t.same(withBData.r.err, withBData.missing, `as if it did not exist (${String(withBData.r.err?.message)})`);
  // A project A names itself is refused naming it: that tells A nothing it did not say.
  const asB = await A(['run', 'train', '--package', 'pkg-beta', '--dataset', 'data-beta', '--project', 'beta']);
  t.equal(asB.err?.code, 'PERMISSION_DENIED', 'A cannot submit with --project beta');
  t.match(asB.err?.message, /project "beta"/, 'naming beta');
  for (const args of [['package', 'versions', 'pkg-beta'], ['package', 'lineage', 'pkg-beta', '1.0']]) {
    const { r, missing } = await asIfMissing(A, args, 'pkg-beta', 'pkg-nonesuch');
    t.equal(r.err?.code, 'NOT_FOUND', `A: ${args.join(' ')} of B's package is NOT_FOUND`);
    t.same(r.err, missing, `as if it did not exist (${String(r.err?.message)})`);
  }
  t.equal((await s.query('SELECT count(*)::int AS n FROM runs'))[0]!.n, 2, 'no run was created by a refused request');

  // Lists show A's own.
  t.same((await A(['run', 'list'])).out.map((r: { id: string }) => r.id), [runA.out.id], 'run list shows only A\'s runs');
  t.same((await A(['dataset', 'list'])).out.map((d: { name: string }) => d.name), ['data-alpha'], 'dataset list shows only A\'s datasets');
  t.same((await A(['projects'])).out.map((p: { name: string }) => p.name), ['alpha'], 'projects shows only A');
  t.same((await asJson(s.adminToken)(['run', 'list'])).out.length, 2, 'an admin sees every run');

  // A's own: outputs download, logs read.
  t.equal((await A(['run', 'outputs', String(runA.out.id), '--to', tempDir()])).code, 0, 'A downloads its own run\'s outputs');
  t.match((await as(a)(['run', 'logs', String(runA.out.id)])).stdout, /trained/, 'and reads its logs');

  // A reader reads its project's, and nothing more.
  t.equal((await R(['run', 'get', String(runA.out.id)])).code, 0, 'a reader reads its project\'s run');
  t.equal((await R(['package', 'versions', 'pkg-alpha'])).code, 0, 'and its package versions');
  const readerSubmit = await R(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha']);
  t.equal(readerSubmit.err?.code, 'PERMISSION_DENIED', 'a reader cannot submit');
  t.match(readerSubmit.err?.message, /reader token only reads/);
  t.equal((await R(['run', 'kill', String(runA.out.id)])).err?.code, 'PERMISSION_DENIED', 'nor kill');
  t.equal((await R(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'pkg-alpha'])).err?.code, 'PERMISSION_DENIED', 'nor push');
  const readerB = await asIfMissing(R, ['run', 'get', idB], idB, noSuchRun);
  t.same([readerB.r.err?.code, readerB.r.err], ['NOT_FOUND', readerB.missing], 'nor read another project\'s run: it is not found');

  // Priority capped per project (an admin sets it; above it is refused, naming the cap).
  t.equal((await A(['projects', 'set', 'alpha', '--max-priority', '100'])).err?.code, 'PERMISSION_DENIED', 'a member cannot raise its cap');
  const set = await asJson(s.adminToken)(['projects', 'set', 'alpha', '--max-priority', '5']);
  t.match(set.out, { name: 'alpha', max_priority: 5, max_runs: -1 }, 'an admin sets the cap, with the other caps');
  const high = await A(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha', '--priority', '9']);
  t.equal(high.err?.code, 'PERMISSION_DENIED', 'a priority above the cap is refused');
  t.match(high.err?.message, /cap of 5/, 'naming the cap');
  const ok = await A(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha', '--priority', '5', '--wait']);
  t.match(ok.out, { status: 'Successful', priority: 5 }, 'at the cap is fine');
  const kept = await asJson(s.adminToken)(['projects', 'set', 'alpha', '--max-runs', '3']);
  t.match(kept.out, { max_priority: 5, max_runs: 3 }, 'setting another cap keeps the priority cap');
  t.equal((await B(['run', 'train', '--package', 'pkg-beta', '--dataset', 'data-beta', '--priority', '9', '--wait'])).out?.status, 'Successful', 'B has no cap');
});

t.test('a new dataset name is claimed at the header: another project pushing the same name meanwhile is refused before writing', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const token = async (project: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', 'member'])).token as string;
  const a = await token('alpha');
  const b = await token('beta');
  // Alpha's first push of "shared" is under way: its header and a first file are sent, and it waits.
  const client = await connectClient(s.schedulerAddress, a);
  t.teardown(() => client.close());
  const pending: (() => void)[] = [];
  const answer = new Promise<unknown>((resolve, reject) => {
    const call = client.PushDataset((err, res) => (err ? reject(err) : resolve(res)));
    call.write({ header: { name: 'shared' } });
    call.write({ file: { path: 'a.csv', size_bytes: 2 } });
    call.write({ data: Buffer.from('1\n') });
    pending.push(() => call.end());
  });
  const deadline = Date.now() + 30_000;
  while ((await s.query("SELECT 1 FROM dataset_claims WHERE name = 'shared'")).length === 0) {
    if (Date.now() > deadline) throw new Error('alpha\'s push never claimed the name');
    await new Promise((r) => setTimeout(r, 50));
  }
  // Beta pushes the same name now.
  const r = await s.cli(['dataset', 'push', writeTree(tempDir(), { 'evil.csv': 'x\n', 'a.csv': 'evil\n' }), '--name', 'shared', '--json', '--token', b]);
  t.equal(r.code, 1, 'beta\'s push fails');
  const err = JSON.parse(r.stderr || '{}').error;
  t.equal(err?.code, 'ALREADY_EXISTS', `refused: the name is taken (${String(err?.message)})`);
  t.notMatch(err?.message, /alpha/, 'without naming project alpha');
  t.same((await s.objects('datasets/shared/')).sort(), [], 'beta wrote nothing into the folder alpha is creating');
  pending.forEach((end) => end());
  await answer;
  t.same(await s.query("SELECT name, project, file_count FROM datasets WHERE name = 'shared'"), [{ name: 'shared', project: 'alpha', file_count: 1 }], 'the dataset is alpha\'s, with alpha\'s one file');
  t.equal((await s.minio.getObject(s.bucket, 'datasets/shared/a.csv').then((st) => st.toArray())).map(String).join(''), '1\n', 'alpha\'s file is alpha\'s bytes');
  t.same(await s.query('SELECT * FROM dataset_claims'), [], 'the claim went with the push that ended');
});
