// Issue 8, Postgres: the scheduler needs no superuser. A database owned by a role with no superuser,
// CREATEDB or CREATEROLE rights: the scheduler migrates it, bootstraps its admin token, and a training run
// goes end to end, with every daemon and the CLI's scheduler connecting as that role.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy as quick } from '../helpers/packages.js';

t.test('a scheduler on a plain (non-superuser) database role', async (t) => {
  const s = await Stack.create(t, { plainRole: true });
  const [me] = await s.query<{ user: string; rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>(
    'SELECT current_user AS user, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user');
  t.same(me, { user: s.plainRole, rolsuper: false, rolcreatedb: false, rolcreaterole: false }, 'the role has no superuser, CREATEDB or CREATEROLE');
  const [owner] = await s.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user");
  t.ok(owner!.n > 5, `the migrations made the tables as that role (${owner!.n} tables)`);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const run = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--wait']);
  t.match(run, { status: 'Successful', output_version: '1.1' }, `a run goes end to end (${String(run.failure_reason ?? '')})`);
  const doctor = await s.cli(['doctor', '--json']);
  t.equal(doctor.code, 0, `trainyard doctor is content (${doctor.stderr.slice(0, 300)})`);
});
