// An agent that detaches (agent/detach.ts; README, "Runs outlive their agent"): SIGTERM with --on-stop
// detach, or SIGUSR2 whatever --on-stop says, and the agent exits 0 at once, leaving its run training
// under its supervisor and the scheduler told nothing; the agent started again (same name, same work dir)
// takes it over. The run ends Successful on the same attempt and lease, every log line once and in order,
// never requeued. The default (--on-stop drain) still drains on SIGTERM: agent-stop.test.ts, drain.test.ts.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Stack } from '../helpers/stack.js';
import { expectTakenOver, Gate, pushGated, submitGated, until, waitForAttempt, waitForLog } from '../helpers/packages.js';

// Restarting an agent under load can take seconds: the scheduler's loss deadline must not be what is tested.
const schedulerEnv = { TRAINYARD_AGENT_LOST_AFTER_MS: '60000' };

const spoolOf = (s: Stack, agent: string, run: string) => path.join(s.dir, `work-${agent}`, `${run}-a1.spool`);
const recordOf = (s: Stack, agent: string, run: string) => path.join(s.dir, `work-${agent}`, `${run}-a1.reattach.json`);

const cases: { name: string; signal: NodeJS.Signals; env: Record<string, string> }[] = [
  { name: 'SIGTERM with --on-stop detach', signal: 'SIGTERM', env: { TRAINYARD_ON_STOP: 'detach' } },
  { name: 'SIGUSR2 with the default --on-stop (drain)', signal: 'SIGUSR2', env: {} },
];

for (const c of cases) t.test(`${c.name}: the agent leaves its run, which the restarted agent takes over: Successful, same attempt, every line once`, async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'box', env: c.env }], schedulerEnv });
  await pushGated(s);
  const gate = new Gate();
  // About 20 s of lines, a tenth of a second apart.
  const lines = 200;
  const id = await submitGated(s, gate, ['--env', `LINES=${lines}`, '--env', 'LINE_DELAY=0.1']);
  const before = await waitForAttempt(s, id, 1);
  await waitForLog(s, id, 'line 10');
  const rec = JSON.parse(readFileSync(recordOf(s, 'box', id), 'utf8')) as { cgroup: string };
  const box = s.daemons.find((d) => d.name === 'box')!;
  const detaching = box.waitFor((l) => String(l.msg).startsWith('detaching') && Array.isArray(l.leave) && l.leave.includes(id), 30_000);
  t.equal(await box.stop(c.signal, 30_000), 0, 'the agent exits 0');
  await detaching;
  t.notOk(box.lines.some((l) => l.includes('"stopping attempt"')), 'no attempt was stopped');
  t.notOk(box.lines.some((l) => l.includes('"draining"')), 'nor drained');
  t.ok(readFileSync(path.join(rec.cgroup, 'cgroup.events'), 'utf8').includes('populated 1'), 'the run outlived its agent');
  const [row] = await s.query('SELECT status, attempt, lease FROM runs WHERE id = $1', [id]);
  t.match(row, { status: 'Running', attempt: 1 }, 'the scheduler still has it Running on its attempt');
  t.equal(String(row!.lease), String(before.lease), 'and its lease');
  const shippedBefore = (await s.query('SELECT count(*)::int AS n FROM run_logs WHERE run_id = $1', [id]))[0]!.n as number;
  // The run prints on while no agent is there: its lines go to the spool file.
  await until('lines printed while the agent was down', async () => readFileSync(spoolOf(s, 'box', id), 'utf8').includes('o line 40\n'));
  const again = await s.startAgent('box', { env: c.env });
  await again.waitFor((l) => l.msg === 'attempt taken over from the agent before this one' && l.run === id, 30_000);
  await waitForLog(s, id, `line ${lines}`);
  gate.open();
  const texts = await expectTakenOver(t, s, id, lines, before.lease);
  t.ok(shippedBefore > 10 && shippedBefore < texts.length, `the first agent shipped part of the log (${shippedBefore} of ${texts.length} lines)`);
  t.notOk(existsSync(recordOf(s, 'box', id)), 'the record is gone once the end is reported');
});
