// Issue 8, secrets: `--secret KEY=VALUE` / `KEY=@file` reaches train.py's environment and nothing else.
// Through the real CLI, scheduler, agent and harness: the run proves it got the value (by its digest),
// prints it (the logs show ***), and a second run fails with it in its exception (the reason shows ***).
// Then every place a value could leak is searched: every API answer, the logs, events, _results.json,
// the runs table, the agent's own log; and the stored secrets are gone once the run has ended.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const fileSecret = `file-secret-${randomBytes(12).toString('hex')}`;
const inlineSecret = `inline-${randomBytes(12).toString('hex')}`;
const digest = (v: string) => createHash('sha256').update(v).digest('hex');

const train = `
import hashlib, os, time
class Main:
    def train(self, d):
        gate = os.environ.get("GATE")
        while gate and not os.path.exists(gate):
            time.sleep(0.02)
        v = os.environ["API_TOKEN"]
        print("digest", hashlib.sha256(v.encode()).hexdigest(), hashlib.sha256(os.environ["DB_PASSWORD"].encode()).hexdigest())
        print(v)
        print("token=" + v + "!")
        if os.environ.get("FAIL_WITH_IT") == "1":
            raise RuntimeError("could not log in with " + os.environ["DB_PASSWORD"])
    def save(self):
        pass
`;

t.test('a secret reaches train.py, and is never returned, stored past the run, or shown', async (t) => {
  const s = await Stack.create(t);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': train }), '--name', 'sec']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const file = path.join(tempDir(), 'token');
  writeFileSync(file, `${fileSecret}\n`, { mode: 0o600 });

  // The first run waits for the gate, so its secrets are certainly still stored when they are looked for.
  const gate = path.join(tempDir(), 'gate');
  const ok = await s.cliJson(['run', 'train', '--package', 'sec', '--dataset', 'd', '--env', `GATE=${gate}`, '--secret', `API_TOKEN=@${file}`, '--secret', `DB_PASSWORD=${inlineSecret}`]);
  t.same(ok.secret_names, ['API_TOKEN', 'DB_PASSWORD'], 'the run shows its secrets\' names');
  const bad = await s.cliJson(['run', 'train', '--package', 'sec', '--dataset', 'd', '--env', 'FAIL_WITH_IT=1', '--secret', `API_TOKEN=@${file}`, '--secret', `DB_PASSWORD=${inlineSecret}`]);
  const stored = await s.query('SELECT run_id, name, value FROM run_secrets ORDER BY run_id, name');
  t.ok(stored.some((r) => r.run_id === ok.id), 'the secrets are stored while the runs are live');
  writeFileSync(gate, '');

  const done = await s.waitForStatus(ok.id, ['Successful', 'Failed', 'Killed'], 240_000);
  t.equal(done.status, 'Successful', `the run succeeds (${done.failure_reason ?? ''})`);
  const failed = await s.waitForStatus(bad.id, ['Successful', 'Failed', 'Killed'], 240_000);
  t.equal(failed.status, 'Failed', 'the second run fails in train()');
  t.match(failed.failure_reason, /could not log in with \*\*\*/, `its reason shows *** for the secret (${failed.failure_reason})`);

  const logs = await s.cli(['run', 'logs', ok.id]);
  t.match(logs.stdout, `digest ${digest(fileSecret)} ${digest(inlineSecret)}`, 'train.py got both values (the file\'s without its trailing newline)');
  t.match(logs.stdout, /^\*\*\*$/m, 'a line that is the secret shows ***');
  t.match(logs.stdout, 'token=***!', 'a secret inside a line shows ***');

  // Everywhere a value could have gone.
  const everything = [
    JSON.stringify(await s.cliJson(['run', 'get', ok.id])), JSON.stringify(await s.cliJson(['run', 'get', bad.id])),
    JSON.stringify(await s.cliJson(['run', 'list'])),
    logs.stdout, logs.stderr, (await s.cli(['run', 'logs', bad.id])).stdout, (await s.cli(['run', 'get', ok.id])).stdout,
    JSON.stringify(await s.query('SELECT * FROM runs')), JSON.stringify(await s.query('SELECT * FROM run_events')),
    JSON.stringify(await s.query('SELECT * FROM run_logs')), JSON.stringify(await s.query('SELECT * FROM package_versions')),
    await s.objectText(`runs/${ok.id}/attempt-1/_results.json`),
    readFileSync(path.join(s.dir, 'agent1.log'), 'utf8'), readFileSync(path.join(s.dir, 'scheduler1.log'), 'utf8'),
  ].join('\n');
  t.notMatch(everything, fileSecret, 'the file secret appears in no API answer, log, event, table or _results.json');
  t.notMatch(everything, inlineSecret, 'nor does the inline one');
  t.same(await s.query('SELECT * FROM run_secrets'), [], 'the stored values were deleted when the runs ended');
});

t.test('bad secrets are refused before anything is made', async (t) => {
  const s = await Stack.create(t);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': train }), '--name', 'sec']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const cases: [string, string[], RegExp][] = [
    ['a reserved name', ['--secret', 'LD_PRELOAD=/tmp/x.so'], /secret LD_PRELOAD: the name is reserved/],
    ['a name also given as env', ['--env', 'TOKEN=a', '--secret', 'TOKEN=b'], /secret TOKEN: the name is also given as an environment variable/],
    ['a file that is not there', ['--secret', 'TOKEN=@/nonexistent/token'], /--secret TOKEN=@\/nonexistent\/token: cannot read the file \(ENOENT\)/],
    ['not KEY=VALUE', ['--secret', 'TOKEN'], /--secret "TOKEN": expected KEY=VALUE/],
    ['an empty value', ['--secret', 'TOKEN='], /secret TOKEN: the value is empty/],
    ['over the size limit with the env', ['--env', `BIG=${'x'.repeat(40_000)}`, '--secret', `S=${'y'.repeat(30_000)}`], /environment and secrets are \d+ bytes; at most 65536/],
  ];
  for (const [what, flags, re] of cases) {
    const r = await s.cli(['run', 'train', '--package', 'sec', '--dataset', 'd', ...flags]);
    t.equal(r.code, 2, `${what}: exit 2 (invalid input)`);
    t.match(r.stderr, re, `${what}: says why`);
  }
  t.same(await s.query('SELECT id FROM runs'), [], 'no run was made');
  t.same(await s.query('SELECT * FROM run_secrets'), [], 'and no secret stored');
});
