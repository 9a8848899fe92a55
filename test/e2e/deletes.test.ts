// Issue 21, storage that is cleaned up: `run delete`, `package delete NAME [VERSION]`, `dataset delete NAME`.
// Each removes the rows and the objects (checked in Postgres and in a real MinIO listing), refuses what is
// still needed leaving everything as it was, is logged in the ML log, and follows the role table: members
// delete in their project, readers are refused, another project's things are answered as missing. Runs are
// submitted with no agent (they stay queued, so they are live) and killed to end them: no run executes.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Stack, root, tempDir, writeTree } from '../helpers/stack.js';
import { as, fakeCheckpoint, put, snapshot, trainPy } from '../helpers/deletes.js';

/** The CLI on a pseudo-terminal (script(1)), as the stack's admin, `input` typed at it. */
function onTerminal(s: Stack, args: string[], input: string): Promise<{ code: number; out: string }> {
  const cmd = [process.execPath, path.join(root, 'bin', 'trainyard.js'), ...args, '--scheduler', s.schedulerAddress].map((a) => `'${a}'`).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { env: s.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
    child.stdin.end(input);
  });
}

// One stack shared by two tests (a stack costs seconds on a loaded machine); their names differ.
t.test('runs, and who may delete', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await t.test('run delete: an ended run\'s rows and everything under runs/RUN/; a live run is refused', (t) => runDelete(t, s));
  await t.test('who may delete: members of the project; readers are refused; other projects see nothing', (t) => whoMay(t, s));
  await t.test('a run that a live run or a schedule resumes from is kept', (t) => resumedFrom(t, s));
});

async function resumedFrom(t: Test, s: Stack): Promise<void> {
  const M = await as(s, 'alpha', 'member');
  t.equal((await M(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'rp'])).code, 0, 'package pushed');
  t.equal((await M(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'rd'])).code, 0, 'dataset pushed');
  const src = (await M(['run', 'train', '--package', 'rp', '--dataset', 'rd'])).out.id as string;
  t.equal((await M(['run', 'kill', src])).code, 0, 'the source run ended');
  await fakeCheckpoint(s, src);
  const resumer = await M(['run', 'train', '--package', 'rp', '--dataset', 'rd', '--resume-from', src]);
  t.equal(resumer.code, 0, 'a run resuming from its checkpoint is queued');
  const diff = await M(['run', 'diff', src, resumer.out.id]);
  t.same([diff.code, diff.err?.code], [1, 'FAILED_PRECONDITION'], 'run diff of runs with no lineage: refused by what they are (exit 1), not a usage error');
  t.match(diff.err?.message, new RegExp(`run ${src} has no lineage \\(Killed\\)`));

  let before = await snapshot(s);
  const byRun = await M(['run', 'delete', src]);
  t.equal(byRun.err?.code, 'FAILED_PRECONDITION', 'the source of a live run\'s --resume-from is refused');
  t.match(byRun.err?.message, new RegExp(`run ${src} is still needed: run ${resumer.out.id} \\((Scheduled|Waiting for resources)\\) resumes from its checkpoint`), byRun.err?.message);
  t.same(await snapshot(s), before, 'the refusal changed nothing, its checkpoint included');
  t.equal((await M(['run', 'kill', resumer.out.id])).code, 0, 'the resuming run is killed');

  t.equal((await M(['schedules', 'create', 'resumes', '--cron', '0 3 * * *', '--', 'run', 'train', '--package', 'rp', '--dataset', 'rd', '--resume-from', src])).code, 0, 'a schedule resumes from it');
  before = await snapshot(s);
  const bySchedule = await M(['run', 'delete', src]);
  t.match(bySchedule.err?.message, new RegExp(`run ${src} is still needed: schedule "resumes" \\(active\\) resumes from its checkpoint`), 'so is the source of a schedule\'s');
  t.same(await snapshot(s), before, 'and changed nothing');
  t.equal((await M(['schedules', 'delete', 'resumes'])).code, 0, 'the schedule is deleted');
  t.equal((await M(['run', 'delete', src])).code, 0, 'then the run is deleted');
  t.same(await s.objects(`runs/${src}/`), [], 'with its checkpoint');
  const after = await M(['run', 'train', '--package', 'rp', '--dataset', 'rd', '--resume-from', src]);
  t.equal(after.err?.code, 'NOT_FOUND', 'and nothing can resume from it any more');
}

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

  // On a terminal (script(1) gives the CLI one) it asks first; "n" deletes nothing.
  const tty = await onTerminal(s, ['run', 'delete', ended], 'n\n');
  t.match(tty.out, new RegExp(`Delete run ${ended} and its objects in the bucket\\? This cannot be undone\\. \\[y/N\\]`), 'a terminal is asked');
  t.match(tty.out, /not deleted/, 'answered no: not deleted');
  t.equal(tty.code, 1, 'exit 1');
  t.same(await snapshot(s), before, 'and nothing changed');
  const ttyJson = await onTerminal(s, ['run', 'delete', ended, '--json'], 'n\n');
  t.match(ttyJson.out, /This cannot be undone\. \[y\/N\]/, '--json on a terminal is asked too (only --yes skips the question)');
  t.equal(ttyJson.code, 1, 'answered no: exit 1');
  t.same(await snapshot(s), before, 'and nothing changed');

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
