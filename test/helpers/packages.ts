// Packages the fault tests share.
import { writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';
import { Stack, tempDir, writeTree } from './stack.js';

/**
 * train() prints its progress, then waits until the file named by $GATE exists (so a test decides when
 * training ends, without sleeps), then writes an artifact; save() writes model.txt.
 */
export const gatedTrainPy = `
import os, sys, time
class Main:
    def train(self, d):
        n = int(os.environ.get("LINES", "0"))
        for i in range(1, n + 1):
            print("line %d" % i, flush=True)
            time.sleep(float(os.environ.get("LINE_DELAY", "0")))
        gate = os.environ.get("GATE")
        deadline = time.time() + 300
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.05)
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        with open(os.path.join(os.environ["artifacts_directory"], "attempt.txt"), "w") as fh:
            fh.write(os.environ.get("TRAINYARD_ATTEMPT", "?"))
        print("trained", flush=True)
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;

export class Gate {
  readonly file = path.join(tempDir('gate-'), 'open');
  open(): void { writeFileSync(this.file, ''); }
  get isOpen(): boolean { return existsSync(this.file); }
}

export async function pushGated(s: Stack, name = 'gated'): Promise<void> {
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': gatedTrainPy }), '--name', name]);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
}

export async function submitGated(s: Stack, gate: Gate, extra: string[] = [], name = 'gated'): Promise<string> {
  const run = await s.cliJson(['run', 'train', '--package', name, '--dataset', 'd', '--env', `GATE=${gate.file}`, ...extra]);
  return run.id as string;
}

/** Polls until the run is Running in the given attempt (the test's wait, not the product's). */
export async function waitForAttempt(s: Stack, runId: string, attempt: number, status = 'Running', timeoutMs = 120_000): Promise<Record<string, any>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await s.query('SELECT * FROM runs WHERE id = $1', [runId]);
    if (row && row.attempt === attempt && row.status === status) return row;
    if (Date.now() > end) throw new Error(`run ${runId} is ${row?.status} attempt ${row?.attempt}, not ${status} attempt ${attempt}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls until the run's log has a line with this text (train.py is really running). */
export async function waitForLog(s: Stack, runId: string, text: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while ((await s.query('SELECT 1 FROM run_logs WHERE run_id = $1 AND text = $2', [runId, text])).length === 0) {
    if (Date.now() > end) throw new Error(`run ${runId}: no log line "${text}" within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The smallest package that trains: train() prints, save() writes model.txt. */
export const quickTrainPy = `
class Main:
    def train(self, d):
        print("trained", flush=True)
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;

/** train() raises ValueError("bad data"): the run fails with that reason. */
export const failingTrainPy = `
class Main:
    def train(self, d):
        raise ValueError("bad data")
    def save(self):
        pass
`;

/** Pushes the quick package (as `name`) and a one-file dataset `d`, as pushGated does for the gated one. */
export async function pushQuick(s: Stack, name = 'p'): Promise<void> {
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', name]);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
}

/** Polls until `probe` gives something and returns it (the test's own wait, not the product's). */
export async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 90_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A gated run of `lines` numbered lines that an agent took over from the one before it (reattach.test.ts,
 * detach.test.ts): ended Successful on attempt 1 and `lease`, never requeued, every line once and in order,
 * the log numbered without a gap. Returns the log's texts.
 */
export async function expectTakenOver(t: Test, s: Stack, id: string, lines: number, lease: unknown): Promise<string[]> {
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.equal(run.status, 'Successful');
  t.equal(run.attempt, 1, 'the same attempt');
  t.equal(run.lost_attempts, 0, 'no attempt lost');
  t.equal(String(run.lease), String(lease), 'the same lease');
  const texts = (await s.query('SELECT text FROM run_logs WHERE run_id = $1 ORDER BY attempt, seq', [id])).map((r) => String(r.text));
  for (let i = 1; i <= lines; i++) t.equal(texts.filter((x) => x === `line ${i}`).length, 1, `line ${i} exactly once`);
  const numbered = texts.filter((x) => /^line \d+$/.test(x)).map((x) => Number(x.slice(5)));
  t.same(numbered, Array.from({ length: lines }, (_, i) => i + 1), 'in order');
  t.equal(texts.filter((x) => x === 'trained').length, 1);
  const seqs = (await s.query('SELECT seq FROM run_logs WHERE run_id = $1 ORDER BY seq', [id])).map((r) => Number(r.seq));
  t.same(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), 'the log is numbered without a gap');
  const events = await s.query('SELECT status FROM run_events WHERE run_id = $1 ORDER BY id', [id]);
  t.notOk(events.some((e) => e.status === 'Waiting for resources' && events.indexOf(e) > 1), 'never requeued');
  t.equal(await s.objectText(`runs/${id}/attempt-1/artifacts/attempt.txt`), '1', 'attempt 1 uploaded its outputs');
  return texts;
}
