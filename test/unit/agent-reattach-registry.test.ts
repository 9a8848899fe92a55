// The box-wide registry of runs that outlive their agent (agent/reattach.ts), read by every agent's cgroup
// sweep at its start (agent/cgroup.ts). An entry another agent is writing, or one left half-written by a
// crash, must never cost this agent its cgroups: in CI an entry read while another agent wrote it was
// empty, JSON.parse threw out of the sweep, and the agent ran without cgroups (no supervisor, no spool, no
// reattach). This file uses a registry of its own, so nothing it plants is seen by other tests' agents.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const registry = mkdtempSync(path.join(os.tmpdir(), 'ty-registry-'));
process.env.TRAINYARD_REATTACH_REGISTRY = registry;
// Imported after the variable is set: the registry's folder is read when agent/reattach.ts loads.
const { REATTACH_REGISTRY, registryNames, saveRecord } = await import('../../agent/reattach.js');
const { cgroup2Mount, ownCgroupPath, RunCgroup, sweepLeftovers } = await import('../../agent/cgroup.js');

t.equal(REATTACH_REGISTRY, registry, 'the test runs against its own registry');
// Each test starts from an empty registry (what one plants is not another's). Nothing here calls
// prepareCgroupBase: it sweeps the agents' shared base, which this registry does not describe.
t.beforeEach(() => { for (const name of readdirSync(registry)) rmSync(path.join(registry, name)); });

t.test('entries that cannot be parsed are kept and never fail the read', async (t) => {
  writeFileSync(path.join(registry, 'run_empty-a1-1'), '');
  writeFileSync(path.join(registry, 'run_garbage-a1-1'), '{"cgroup": "/sys/fs/cg');
  writeFileSync(path.join(registry, 'run_nocgroup-a1-1'), '{}');
  const names = await registryNames();
  for (const name of ['run_empty-a1-1', 'run_garbage-a1-1', 'run_nocgroup-a1-1']) {
    t.ok(names.has(name), `${name} is kept (its cgroup is not swept)`);
    t.ok(existsSync(path.join(registry, name)), `${name} is left in place`);
  }
});

t.test('an entry whose cgroup is gone is dropped; one naming another folder is kept', async (t) => {
  const gone = path.join(mkdtempSync(path.join(os.tmpdir(), 'ty-cg-gone-')), 'run_gone-a1-1');
  writeFileSync(path.join(registry, 'run_gone-a1-1'), JSON.stringify({ workDir: '/nowhere', cgroup: gone }));
  // Its name is not its cgroup's: never trusted to remove anything.
  writeFileSync(path.join(registry, 'run_other-a1-1'), JSON.stringify({ workDir: '/nowhere', cgroup: gone }));
  const names = await registryNames();
  t.notOk(names.has('run_gone-a1-1'), 'the ended run\'s name is not kept');
  t.notOk(existsSync(path.join(registry, 'run_gone-a1-1')), 'and its entry is removed');
  t.ok(names.has('run_other-a1-1'), 'an entry whose name is not its cgroup\'s is kept');
});

t.test('an entry is written whole: no temporary file is left, and it parses', async (t) => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'ty-work-'));
  const attemptDir = path.join(work, 'run_saved-a1');
  mkdirSync(attemptDir);
  const cgroup = path.join(work, 'cg', 'run_saved-a1-1');
  await saveRecord(attemptDir, {
    version: 1, dispatch: {} as never, cgroup, pid: 1, startedAtMs: 0, startAt: 0, lineage: {}, user: null,
  });
  t.same(JSON.parse(readFileSync(path.join(registry, 'run_saved-a1-1'), 'utf8')), { workDir: work, cgroup });
  t.same(readdirSync(registry).filter((n) => n.endsWith('.tmp')), [], 'no temporary entry is left');
});

t.test('with unparsable entries in the registry, the cgroup sweep still runs (an agent keeps its cgroups)', async (t) => {
  // A base of this test's own below the agents' one: the sweep of the shared base with this test's nearly
  // empty registry would kill what other tests' detached runs left (kept only by the real registry).
  const mount = cgroup2Mount();
  if (!mount) { await t.skip('no cgroup v2 hierarchy is mounted'); return; }
  const base = path.join(mount, ownCgroupPath(), 'trainyard', `test-registry-${process.pid}`);
  try { mkdirSync(base, { recursive: true }); } catch (err) { await t.skip(`no cgroup v2 to manage here: ${(err as Error).message}`); return; }
  t.teardown(() => { try { rmdirSync(base); } catch { /* what a failed assertion left */ } });
  writeFileSync(path.join(registry, 'run_empty-a2-1'), '');
  // A dead agent's cgroup no entry names is removed; one an unparsable entry names is left (its run may
  // still be wanted by the agent of its work dir).
  const { spawnSync } = await import('node:child_process');
  const deadPid = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim();
  const swept = await RunCgroup.create(base, `run_swept-a1-${deadPid}`);
  const kept = await RunCgroup.create(base, `run_kept-a1-${deadPid}`);
  writeFileSync(path.join(registry, `run_kept-a1-${deadPid}`), '');
  const removed = await sweepLeftovers(base);
  t.ok(removed.includes(`run_swept-a1-${deadPid}`), 'the dead agent\'s cgroup is swept');
  t.notOk(existsSync(swept.dir));
  t.notOk(removed.includes(`run_kept-a1-${deadPid}`), 'the one an unparsable entry names is not');
  t.ok(existsSync(kept.dir));
  await kept.destroy();
});
