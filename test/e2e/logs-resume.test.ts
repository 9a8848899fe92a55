// Defect 6: StreamLogs must honour the position a client resumes from. A run's log is ordered by
// (attempt, seq), each attempt numbering its lines from 1; a client that has line (A, S) gets exactly the
// lines after it, across attempts, and `run logs --follow` resumes there after losing its scheduler.
import t from 'tap';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Stack, root } from '../helpers/stack.js';
import { Gate, pushGated, submitGated } from '../helpers/packages.js';
import { Api, streamOf } from '../../cli/client.js';

/** A run that no agent takes (there is none), with lines written straight into its log. */
async function queuedRunWithLines(s: Stack, perAttempt: number[]): Promise<string> {
  await pushGated(s);
  const id = await submitGated(s, new Gate());
  for (const [i, n] of perAttempt.entries()) await insertLines(s, id, i + 1, 1, n);
  // The run is on its latest attempt, as it would be after an agent loss requeued and placed it again.
  await s.query('UPDATE runs SET attempt = $2 WHERE id = $1', [id, perAttempt.length]);
  return id;
}

async function insertLines(s: Stack, id: string, attempt: number, from: number, to: number): Promise<void> {
  await s.query(`INSERT INTO run_logs (run_id, attempt, seq, stream, text)
    SELECT $1, $2::int, q, 'stdout', 'a' || $2::int || ' line ' || q FROM generate_series($3::int, $4::int) AS q`, [id, attempt, from, to]);
}

async function read(api: Api, req: { run_id: string; after_attempt?: number; after_seq?: number; follow?: boolean }): Promise<string[]> {
  const out: string[] = [];
  for await (const l of streamOf(api.client.StreamLogs(req))) out.push(`${l.attempt}:${l.seq} ${l.text}`);
  return out;
}

t.test('StreamLogs from a position returns exactly the lines after it, across attempts', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const id = await queuedRunWithLines(s, [3, 4]);
  const api = s.api();
  t.teardown(() => api.close());
  const all = ['1:1 a1 line 1', '1:2 a1 line 2', '1:3 a1 line 3', '2:1 a2 line 1', '2:2 a2 line 2', '2:3 a2 line 3', '2:4 a2 line 4'];

  t.same(await read(api, { run_id: id }), all, 'no position: every line, in (attempt, seq) order');
  t.same(await read(api, { run_id: id, after_attempt: 1, after_seq: 2 }), all.slice(2), 'after 1:2: the rest of attempt 1, then all of attempt 2');
  t.same(await read(api, { run_id: id, after_attempt: 1, after_seq: 3 }), all.slice(3), 'after the last line of attempt 1: attempt 2 from its first line');
  t.same(await read(api, { run_id: id, after_attempt: 2, after_seq: 1 }), all.slice(4), 'after 2:1: nothing of attempt 1');
  t.same(await read(api, { run_id: id, after_attempt: 2, after_seq: 4 }), [], 'after the last line: nothing');
  // An older client sends only after_seq: a line of the run's current attempt (the field's old meaning).
  t.same(await read(api, { run_id: id, after_seq: 2 }), all.slice(5), 'after_seq alone: after that line of the current attempt');

  // Following from the end: only lines written later come, and the stream ends with the run.
  const followed = read(api, { run_id: id, after_attempt: 2, after_seq: 4, follow: true });
  await new Promise((r) => setTimeout(r, 500));
  await insertLines(s, id, 2, 5, 5);
  await insertLines(s, id, 3, 1, 2);
  await s.cliJson(['run', 'kill', id]);
  t.same(await followed, ['2:5 a2 line 5', '3:1 a3 line 1', '3:2 a3 line 2'], 'follow: exactly the new lines, then the end');

  const bad = await read(api, { run_id: id, after_attempt: -1, after_seq: 0 }).catch((e: Error) => e);
  t.match(String(bad), /after_attempt must be a non-negative integer/, 'a negative position is refused');
  // A refused stream ends with its error (it used to leave the client waiting for ever).
  const unknown = await s.cli(['run', 'logs', 'run_nope'], { timeoutMs: 20_000 });
  t.equal(unknown.code, 1, 'run logs of an unknown run exits 1');
  t.match(unknown.stderr, /run run_nope not found/);
});

t.test('run logs --follow resumes after the last line it printed when its scheduler dies', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const first = s.schedulerAddress;
  const second = String((await (await s.startScheduler()).waitFor((l) => l.msg === 'listening')).address);
  const id = await queuedRunWithLines(s, [3]);

  const child = spawn(process.execPath, [path.join(root, 'bin', 'trainyard.js'), 'run', 'logs', id, '--follow', '--json', '--scheduler', `${first},${second}`],
    { env: s.env(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.teardown(() => { child.kill('SIGKILL'); });
  const lines = () => stdout.split('\n').filter(Boolean).map((l) => { const j = JSON.parse(l); return `${j.attempt}:${j.seq}`; });
  const until = async (what: string, ok: () => boolean) => {
    const end = Date.now() + 60_000;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`${what} did not happen; stdout: ${stdout}; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await until('the first three lines', () => lines().length === 3);

  // The CLI's scheduler (the first of the two: pick_first) dies; lines keep landing meanwhile.
  await s.daemons.find((d) => d.name === 'scheduler1')!.kill9();
  await insertLines(s, id, 1, 4, 5);
  await s.query('UPDATE runs SET attempt = 2 WHERE id = $1', [id]);
  await insertLines(s, id, 2, 1, 2);
  await until('the lines written while it reconnected', () => lines().length >= 7);
  s.schedulerAddress = second;
  await s.cliJson(['run', 'kill', id]);
  t.equal(await exited, 0, `run logs exits 0 once the run ends (stderr: ${stderr})`);
  t.same(lines(), ['1:1', '1:2', '1:3', '1:4', '1:5', '2:1', '2:2'], 'every line exactly once, in order, across the reconnect');
  t.match(stderr, /resuming after attempt 1 line 3/, 'it says where it resumed');
});
