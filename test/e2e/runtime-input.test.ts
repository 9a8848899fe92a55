// Bad input that only shows up when a run executes: requirements pip cannot install, a module that is not
// installed, a flood of output with binary bytes in it, a disk that fills up, and a Main() that raises.
// Each run ends with a clear reason, and a failed run never registers a package version.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const terminal = ['Successful', 'Failed', 'Killed'];

/** Pushes the package and a one-file dataset, submits a run, and waits (in Postgres) until it ends. */
async function runToEnd(s: Stack, files: Record<string, string>, name: string, timeoutMs = 180_000): Promise<Record<string, any>> {
  await s.cliJson(['package', 'push', writeTree(tempDir(), files), '--name', name]);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', `${name}-data`]);
  const { id } = await s.cliJson(['run', 'train', '--package', name, '--dataset', `${name}-data`]);
  return s.waitForStatus(id as string, terminal, timeoutMs);
}

async function versionsOf(s: Stack, runId: string): Promise<unknown[]> {
  return s.query('SELECT * FROM package_versions WHERE run_id = $1', [runId]);
}

interface Line { attempt: number; seq: number; stream: string; text: string }
async function logsOf(s: Stack, runId: string): Promise<Line[]> {
  const r = await s.cli(['run', 'logs', runId, '--json']);
  if (r.code !== 0) throw new Error(`run logs exited ${r.code}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => {
    const j = JSON.parse(l);
    return { ...j, seq: Number(j.seq) };
  });
}

t.test('requirements.txt that pip cannot install: Failed in Packaging, with pip\'s error', async (t) => {
  const s = await Stack.create(t);
  const run = await runToEnd(s, {
    'train.py': 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n',
    'requirements.txt': 'this is not a requirement!!\n',
  }, 'badreqs');
  t.equal(run.status, 'Failed');
  t.ok(run.packaging_at, 'the run reached Packaging');
  t.equal(run.running_at, null, 'the run never reached Running');
  t.match(run.failure_reason, /^pip install -r requirements\.txt failed \(exit code 1\): /, 'the reason says pip failed');
  t.match(run.failure_reason, /Invalid requirement: 'this is not a requirement!!'/, 'the reason carries pip\'s own message');
  t.same(await versionsOf(s, run.id), [], 'no version registered');
  const logs = await logsOf(s, run.id);
  t.ok(logs.some((l) => /ERROR: Invalid requirement: 'this is not a requirement!!'/.test(l.text)), 'pip\'s output is in the logs');
});

t.test('train.py importing a module that is not installed: Failed, naming the module', async (t) => {
  const s = await Stack.create(t);
  const run = await runToEnd(s, {
    'train.py': 'import surely_not_installed_xyz\n\nclass Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n',
  }, 'noimport');
  t.equal(run.status, 'Failed');
  t.ok(run.running_at, 'it failed while Running, not in Packaging');
  t.equal(run.failure_reason,
    "train.py: cannot import surely_not_installed_xyz: No module named 'surely_not_installed_xyz' (is it in requirements.txt?)");
  t.same(await versionsOf(s, run.id), [], 'no version registered');
  const logs = await logsOf(s, run.id);
  t.ok(logs.some((l) => l.stream === 'stderr' && /ModuleNotFoundError: No module named 'surely_not_installed_xyz'/.test(l.text)),
    'Python\'s traceback is in the logs');
});

const chattyTrainPy = `
import sys
class Main:
    def train(self, d):
        pad = "x" * 90
        for i in range(60000):
            print("L%08d %s" % (i, pad))
        sys.stdout.flush()
        sys.stdout.buffer.write(bytes(range(256)) + b"\\n")
        sys.stdout.buffer.flush()
        print("after binary")
    def save(self):
        pass
`;

t.test('megabytes of output with raw binary in it: every line once, in order, binary replaced', async (t) => {
  const s = await Stack.create(t);
  const started = Date.now();
  const run = await runToEnd(s, { 'train.py': chattyTrainPy }, 'chatty', 300_000);
  t.equal(run.status, 'Successful', `the run succeeded (reason: ${run.failure_reason})`);
  t.comment(`60,000-line run took ${Math.round((Date.now() - started) / 1000)} s`);
  const logs = await logsOf(s, run.id);

  t.ok(logs.every((l) => l.attempt === 1), 'all lines from attempt 1');
  t.equal(logs[0]!.seq, 1, 'the first line is seq 1');
  const gaps = logs.slice(1).filter((l, i) => l.seq !== logs[i]!.seq + 1).map((l) => l.seq);
  t.same(gaps.slice(0, 5), [], 'seq goes up by exactly 1 from line to line: no gap, no duplicate');
  t.equal(logs.at(-1)!.seq, Number(run.last_log_seq), 'the last line is the last seq the scheduler acknowledged');

  const numbered = logs.filter((l) => l.stream === 'stdout' && /^L\d{8} x{90}$/.test(l.text));
  t.equal(numbered.length, 60_000, 'exactly 60,000 of the 100-char lines');
  t.ok(numbered.every((l) => l.text.length === 100), 'each of them 100 chars');
  const outOfOrder = numbered.findIndex((l, i) => Number(l.text.slice(1, 9)) !== i);
  t.equal(outOfOrder, -1, 'they arrive in the order printed, each number once');

  // bytes(range(256)) holds a "\n" (byte 10), so the write is two lines: bytes 0-9, then bytes 11-255.
  const last = logs.findIndex((l) => l.text.startsWith('L00059999 '));
  const after = logs.findIndex((l) => l.text === 'after binary');
  t.equal(after, last + 3, 'the binary write gave exactly two lines between the last numbered line and the next print');
  const [low, high] = [logs[last + 1]!, logs[last + 2]!];
  t.equal(low.stream, 'stdout');
  t.equal(low.text, '\uFFFD' + String.fromCharCode(...Array.from({ length: 9 }, (_, i) => i + 1)),
    'bytes 0-9: NUL (which Postgres cannot store) became U+FFFD, the rest kept');
  const ascii = String.fromCharCode(...Array.from({ length: 117 }, (_, i) => i + 11));
  t.equal(high.text.slice(0, ascii.length), ascii, 'bytes 11-127 arrive as themselves');
  const rest = high.text.slice(ascii.length);
  t.ok(rest.length > 0 && /^\uFFFD+$/.test(rest), 'bytes 128-255 (invalid UTF-8) arrive as U+FFFD replacement characters');
  t.same(await s.query('SELECT count(*)::int AS n FROM package_versions WHERE run_id = $1', [run.id]), [{ n: 1 }], 'the run registered its version');
});

t.test('disk full on the agent: Failed with a clear reason, and the agent keeps working', async (t) => {
  const mountDir = mkdtempSync(path.join(os.tmpdir(), 'ty-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mountDir]);
  t.teardown(() => { execFileSync('umount', ['-l', mountDir]); });
  const s = await Stack.create(t, { agents: [{ name: 'small', env: { TRAINYARD_WORK_DIR: mountDir } }] });
  const agent = s.daemons.find((d) => d.name === 'small')!;

  await s.cliJson(['package', 'push', writeTree(tempDir(), {
    'train.py': 'import os\nclass Main:\n    def train(self, d):\n        print(sorted(os.listdir(d)))\n    def save(self):\n        pass\n',
  }), '--name', 'reader']);
  const big: Record<string, Buffer> = {};
  for (const n of ['a', 'b', 'c', 'd']) big[`${n}.bin`] = randomBytes(2 * 1024 * 1024);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), big), '--name', 'big']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'tiny']);

  const started = Date.now();
  const { id } = await s.cliJson(['run', 'train', '--package', 'reader', '--dataset', 'big']);
  const run = await s.waitForStatus(id as string, terminal, 120_000);
  t.comment(`the disk-full run ended in ${Math.round((Date.now() - started) / 1000)} s`);
  t.equal(run.status, 'Failed');
  t.comment(`reason: ${run.failure_reason}`);
  t.match(run.failure_reason, /disk full on agent small while making the data local/, 'the reason says the disk is full, where and when');
  t.match(run.failure_reason, /ENOSPC|no space left on device/i, 'and carries the system\'s error');
  t.same(await versionsOf(s, run.id), [], 'no version registered');
  const logs = await logsOf(s, run.id);
  t.ok(logs.some((l) => l.stream === 'system' && l.text === `[trainyard] failed: ${run.failure_reason}`), 'the reason is in the logs too');
  t.same(logs.filter((l) => /retry/.test(l.text)).map((l) => l.text), [], 'a full disk is not retried as if it were a storage hiccup');

  t.ok(agent.alive, 'the agent is still running');
  const [row] = await s.cliJson<any[]>(['agents']);
  t.equal(row.name, 'small');
  t.equal(row.status, 'online', 'and still online');
  // (Only the agent's own identity file, which it keeps there from its first start, its package cache and
  // the spare copies for the next runs, and its dataset cache, which keeps nothing of a failed download.)
  t.same(execFileSync('ls', ['-A', mountDir]).toString().trim().split('\n').filter((f) => f && !['identity', 'packages', 'package-spares', 'data-cache'].includes(f)), [], 'the failed attempt left nothing in the work dir');
  t.same(execFileSync('ls', ['-A', path.join(mountDir, 'data-cache')]).toString().trim(), '', 'not even a partial cache entry');
  const cached = existsSync(path.join(mountDir, 'packages')) ? readdirSync(path.join(mountDir, 'packages')) : [];
  t.same(cached.filter((f) => !/^[0-9a-f]{64}$/.test(f)), [], 'nor a half-extracted package in the cache');

  const { id: id2 } = await s.cliJson(['run', 'train', '--package', 'reader', '--dataset', 'tiny']);
  const second = await s.waitForStatus(id2 as string, terminal, 120_000);
  t.equal(second.status, 'Successful', `a small run afterwards succeeds on the same agent (reason: ${second.failure_reason})`);
  t.equal(second.last_agent, 'small');
});

t.test('Main() whose __init__ raises: Failed with the exception\'s summary line', async (t) => {
  const s = await Stack.create(t);
  const run = await runToEnd(s, {
    'train.py': 'class Main:\n    def __init__(self):\n        raise RuntimeError("cannot load the tokenizer: vocab.txt is missing\\nsecond line")\n'
      + '    def train(self, d):\n        pass\n    def save(self):\n        pass\n',
  }, 'badinit');
  t.equal(run.status, 'Failed');
  t.equal(run.failure_reason, 'RuntimeError: cannot load the tokenizer: vocab.txt is missing', 'the reason is the summary line, first line of the message only');
  t.same(await versionsOf(s, run.id), [], 'no version registered');
  const stderr = (await logsOf(s, run.id)).filter((l) => l.stream === 'stderr').map((l) => l.text).join('\n');
  t.match(stderr, /line 3, in __init__/, 'the traceback in the logs points at __init__');
});
