// Issue 19, agent pools per project: an admin binds a project to agent labels (`projects set P --agents
// pool=a`); a member's --selector may narrow within them and never leave; `--exclusive true` keeps a
// project's runs off agents that hold another project's runs; an agent told `--accept-projects a` never
// gets another project's run. Real scheduler, agents and runs; each setup makes the unsafe choice the
// placer's best fit on today's main (the other pool's agent has fewer CPUs left over).
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { Gate, gatedTrainPy, quickTrainPy, until } from '../helpers/packages.js';

/** A token of `project` with `role`, and the CLI as that token (--json; the error parsed on a refusal). */
async function member(s: Stack, project: string) {
  const token = (await s.cliJson(['tokens', 'create', '--project', project, '--role', 'member'])).token as string;
  return async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', token]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null };
  };
}

async function pushAs(as: Awaited<ReturnType<typeof member>>, project: string, trainPy = quickTrainPy) {
  const p = await as(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', `pkg-${project}`]);
  const d = await as(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', `data-${project}`]);
  if (p.code !== 0 || d.code !== 0) throw new Error(`push as ${project} failed: ${JSON.stringify(p.err ?? d.err)}`);
}

t.test('a project bound to pool=a: a selector for pool=b is refused, and every run lands on a pool=a agent', async (t) => {
  const s = await Stack.create(t, {
    agents: [
      { name: 'pa1', labels: 'pool=a', cpus: 4 }, { name: 'pa2', labels: 'pool=a,disk=ssd', cpus: 4 },
      // B's pool: the best fit for a 1-CPU run (fewest CPUs left over), were the binding not kept.
      { name: 'pb1', labels: 'pool=b', cpus: 2 },
    ],
  });
  const set = await s.cli(['projects', 'set', 'alpha', '--agents', 'pool=a', '--json']);
  t.equal(set.code, 0, `an admin binds alpha to pool=a ${set.stderr}`);
  t.same(JSON.parse(set.stdout).agents, { pool: 'a' }, 'projects set answers with the binding');
  const A = await member(s, 'alpha');
  await pushAs(A, 'alpha');
  const listed = (await A(['projects'])).out.find((p: { name: string }) => p.name === 'alpha');
  t.same(listed.agents, { pool: 'a' }, 'projects --json shows the binding to the project\'s member');

  // The attack: steer a run onto B's pool (where B's runs, data and secrets are).
  const steer = await A(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha', '--selector', 'pool=b']);
  t.equal(steer.code, 1, 'a selector outside the binding is refused');
  t.equal(steer.err?.code, 'PERMISSION_DENIED', 'PERMISSION_DENIED');
  t.match(steer.err?.message, /selector pool=b is outside project "alpha"'s agents \(pool=a/, `naming the selector and the binding (${steer.err?.message})`);
  t.equal((await s.query('SELECT count(*)::int AS n FROM runs'))[0]!.n, 0, 'no run was created');

  // Narrowing within the binding works.
  const narrow = await A(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha', '--selector', 'disk=ssd', '--cpus', '1', '--wait']);
  t.equal(narrow.out?.status, 'Successful', 'a selector that narrows within the pool is accepted and runs');
  t.equal((await s.query('SELECT last_agent FROM runs WHERE id = $1', [narrow.out?.id]))[0]!.last_agent, 'pa2', 'on the one pool=a agent with disk=ssd');

  // Without a selector: several runs, each on a pool=a agent, never on pb1 (the best fit by CPUs).
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push((await A(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha', '--cpus', '1'])).out.id);
  for (const id of ids) t.equal((await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'])).status, 'Successful', `${id} Successful`);
  const agents = (await s.query('SELECT id, last_agent FROM runs WHERE id = ANY($1)', [ids])).map((r) => r.last_agent as string);
  t.equal(agents.length, 6, 'six runs read back');
  t.ok(agents.every((a) => a === 'pa1' || a === 'pa2'), `every run ran on a pool=a agent (${agents.join(', ')})`);

  // Clearing the binding: any agent again.
  const cleared = await s.cliJson(['projects', 'set', 'alpha', '--agents', 'none']);
  t.same(cleared.agents, {}, '--agents none clears the binding');
});

t.test('--exclusive: A and B runs submitted together on one 2-slot agent never share it', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'x1', cpus: 4, env: { TRAINYARD_MAX_RUNS: '2' } }] });
  t.equal((await s.cli(['projects', 'set', 'alpha', '--exclusive', 'true'])).code, 0, 'an admin makes alpha exclusive');
  const A = await member(s, 'alpha');
  const B = await member(s, 'beta');
  await pushAs(A, 'alpha', gatedTrainPy);
  await pushAs(B, 'beta', gatedTrainPy);
  t.equal((await A(['projects'])).out.find((p: { name: string }) => p.name === 'alpha').exclusive, true, 'projects --json shows it exclusive');
  const gate = new Gate();
  const submit = (as: typeof A, p: string) => as(['run', 'train', '--package', `pkg-${p}`, '--dataset', `data-${p}`, '--env', `GATE=${gate.file}`]);
  // Together: the placer sees both projects' runs in the same passes.
  const made = await Promise.all([submit(A, 'alpha'), submit(B, 'beta'), submit(A, 'alpha'), submit(B, 'beta'), submit(A, 'alpha'), submit(B, 'beta')]);
  const ids = made.map((m) => m.out.id as string);
  // While the gate is closed, the agent's slots hold one project's runs only.
  await until('a run placed', async () => (await s.query("SELECT count(*)::int AS n FROM runs WHERE agent = 'x1'"))[0]!.n >= 1);
  for (let i = 0; i < 10; i++) {
    const projects = (await s.query("SELECT DISTINCT project FROM runs WHERE agent = 'x1'")).map((r) => r.project as string);
    t.ok(projects.length <= 1, `sample ${i}: the agent holds one project's runs (${projects.join(', ')})`);
  }
  gate.open();
  for (const id of ids) t.equal((await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'])).status, 'Successful', `${id} Successful`);
  // Every run's time on the agent, from its placement to its end: no A and B intervals overlap.
  const spans = await s.query(`SELECT r.id, r.project, (SELECT min(at) FROM run_events e WHERE e.run_id = r.id AND e.detail LIKE 'placed on %') AS placed, r.ended_at
    FROM runs r WHERE r.id = ANY($1)`, [ids]);
  let overlaps = 0;
  for (const x of spans) for (const y of spans) {
    if (x.project === y.project) continue;
    if (x.placed < y.ended_at && y.placed < x.ended_at) overlaps++;
  }
  t.equal(overlaps, 0, 'no alpha run was on the agent while a beta run was');
});

t.test('--accept-projects alpha: the agent never gets beta\'s runs, which go elsewhere', async (t) => {
  const s = await Stack.create(t, {
    agents: [
      // The best fit for 1-CPU runs (fewest CPUs left over), but it takes alpha's runs only.
      { name: 'only-alpha', cpus: 2, env: { TRAINYARD_ACCEPT_PROJECTS: 'alpha' } },
      { name: 'any', cpus: 4 },
    ],
  });
  const agents = await s.cliJson<{ name: string; accept_projects: string[] }[]>(['agents']);
  t.same(agents.find((a) => a.name === 'only-alpha')?.accept_projects, ['alpha'], 'agents --json shows the projects it accepts');
  t.same(agents.find((a) => a.name === 'any')?.accept_projects, [], 'and none for an agent that takes every project\'s');
  t.match((await s.cli(['agents'])).stdout, /only-alpha.*alpha/, 'the agents table shows them');
  const A = await member(s, 'alpha');
  const B = await member(s, 'beta');
  await pushAs(A, 'alpha');
  await pushAs(B, 'beta');
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push((await B(['run', 'train', '--package', 'pkg-beta', '--dataset', 'data-beta', '--cpus', '1'])).out.id);
  for (const id of ids) t.equal((await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'])).status, 'Successful', `${id} Successful`);
  const where = (await s.query('SELECT last_agent FROM runs WHERE id = ANY($1)', [ids])).map((r) => r.last_agent as string);
  t.same(where, ['any', 'any', 'any', 'any'], `beta's runs all went to the other agent (${where.join(', ')})`);
  const a = await A(['run', 'train', '--package', 'pkg-alpha', '--dataset', 'data-alpha', '--cpus', '1', '--wait']);
  t.equal(a.out?.status, 'Successful', 'an alpha run succeeds');
  t.equal((await s.query('SELECT last_agent FROM runs WHERE id = $1', [a.out?.id]))[0]!.last_agent, 'only-alpha', 'on the agent that accepts alpha');
});
