// Runs outlive their agent daemon (issue 22): kill -9 of the agent while its run trains, then the same
// agent (same name, same work dir) started again, takes the run over — same attempt and lease, every log
// line once — instead of the scheduler requeueing it; a run that ended while no agent was there is uploaded
// and reported on restart; a run killed meanwhile is killed on restart. The runs here print numbered lines
// for a few seconds (not the 60 s: outliving the restart by a few seconds is what shows it).
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Stack } from '../helpers/stack.js';
import { expectTakenOver, Gate, pushGated, submitGated, until, waitForAttempt, waitForLog } from '../helpers/packages.js';

// Restarting an agent under load can take seconds: the scheduler's loss deadline must not be what is tested.
const schedulerEnv = { TRAINYARD_AGENT_LOST_AFTER_MS: '60000' };

const spoolOf = (s: Stack, agent: string, run: string) => path.join(s.dir, `work-${agent}`, `${run}-a1.spool`);
const recordOf = (s: Stack, agent: string, run: string) => path.join(s.dir, `work-${agent}`, `${run}-a1.reattach.json`);

async function logTexts(s: Stack, run: string): Promise<string[]> {
  return (await s.query('SELECT text FROM run_logs WHERE run_id = $1 ORDER BY attempt, seq', [run])).map((r) => String(r.text));
}

t.test('kill -9 of the agent mid-run: the run goes on, and ends Successful on the same attempt, every line once', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'box' }], schedulerEnv });
  await pushGated(s);
  const gate = new Gate();
  const lines = 60;
  const id = await submitGated(s, gate, ['--env', `LINES=${lines}`, '--env', 'LINE_DELAY=0.1']);
  const before = await waitForAttempt(s, id, 1);
  await waitForLog(s, id, 'line 5');
  await s.daemons.find((d) => d.name === 'box')!.kill9();
  // The run prints on while no agent is there: its lines go to the spool file.
  await until('lines printed while the agent was down', async () => readFileSync(spoolOf(s, 'box', id), 'utf8').includes('o line 15\n'));
  const again = await s.startAgent('box');
  await again.waitFor((l) => l.msg === 'attempt taken over from the agent before this one' && l.run === id, 30_000);
  await waitForLog(s, id, `line ${lines}`);
  gate.open();
  await expectTakenOver(t, s, id, lines, before.lease);
  t.notOk(existsSync(recordOf(s, 'box', id)), 'the record is gone once the end is reported');
  t.notOk(existsSync(spoolOf(s, 'box', id)), 'and the spool');
});

t.test('a run that ended while the agent was down is uploaded and reported on restart', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'box' }], schedulerEnv });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--env', 'LINES=3']);
  await waitForAttempt(s, id, 1);
  await waitForLog(s, id, 'line 3');
  await s.daemons.find((d) => d.name === 'box')!.kill9();
  gate.open();
  // Its supervisor wrote its exit status to the spool.
  await until('the run\'s exit in the spool', async () => /\nx \{"code": 0/.test(readFileSync(spoolOf(s, 'box', id), 'utf8')));
  t.equal((await s.query('SELECT status FROM runs WHERE id = $1', [id]))[0]!.status, 'Running', 'nobody has reported it yet');
  // As if the agent had died before the hashes of its pull were in (a large file's come after the pull,
  // agent/data-cache.ts deferHashes): the record says so, and the agent that takes the run over hashes the
  // run's data folder for the lineage.
  const rec = JSON.parse(readFileSync(recordOf(s, 'box', id), 'utf8'));
  t.ok(rec.lineage.data, 'the record holds the data manifest (nothing was pending)');
  writeFileSync(recordOf(s, 'box', id), JSON.stringify({ ...rec, dataPending: true, lineage: { ...rec.lineage, data: null } }));
  await s.startAgent('box');
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.equal(run.status, 'Successful');
  t.equal(run.attempt, 1);
  t.equal(run.lost_attempts, 0);
  t.equal(await s.objectText(`runs/${id}/attempt-1/artifacts/attempt.txt`), '1');
  const texts = await logTexts(s, id);
  t.equal(texts.filter((x) => x === 'trained').length, 1, 'the line printed while no agent was there, once');
  const versions = await s.query('SELECT major, minor FROM package_versions WHERE run_id = $1', [id]);
  t.same(versions, [{ major: 1, minor: 1 }], 'its version registered once');
  const lineage = JSON.parse(await s.objectText(`runs/${id}/attempt-1/_lineage.json`));
  t.same(lineage.data, rec.lineage.data, 'the lineage\'s data manifest, hashed from the run\'s folder, is the one the pull had');
});

t.test('a run killed while the agent was down is killed on restart', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'box' }], schedulerEnv });
  await pushGated(s);
  const gate = new Gate();
  const id = await submitGated(s, gate, ['--env', 'LINES=2']);
  await waitForAttempt(s, id, 1);
  await waitForLog(s, id, 'line 2');
  const rec = JSON.parse(readFileSync(recordOf(s, 'box', id), 'utf8')) as { cgroup: string };
  await s.daemons.find((d) => d.name === 'box')!.kill9();
  t.ok(readFileSync(path.join(rec.cgroup, 'cgroup.events'), 'utf8').includes('populated 1'), 'the run outlived its agent');
  const kill = await s.cli(['run', 'kill', id]);
  t.equal(kill.code, 0, kill.stderr);
  await s.startAgent('box');
  const run = await s.waitForStatus(id, ['Killed', 'Successful', 'Failed']);
  t.equal(run.status, 'Killed');
  t.equal(run.attempt, 1);
  await until('the run\'s cgroup gone', async () => !existsSync(rec.cgroup));
  t.notOk(gate.isOpen, 'it was stopped, not let finish');
  t.same(await s.query('SELECT * FROM package_versions WHERE run_id = $1', [id]), [], 'no version');
  gate.open();
});
