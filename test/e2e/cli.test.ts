// The CLI's own errors, before any scheduler is involved: they name the problem and exit non-zero.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { freePort, root } from '../helpers/stack.js';

const trainyard = (...args: string[]) =>
  spawnSync(process.execPath, [path.join(root, 'bin', 'trainyard.js'), ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });

t.test('no scheduler at the address: a clear error within seconds, exit 1', async (t) => {
  const port = await freePort();
  const r = trainyard('run', 'list', '--scheduler', `127.0.0.1:${port}`);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`cannot reach the scheduler at 127\\.0\\.0\\.1:${port} within 10 s`));
  const j = trainyard('agents', '--json', '--scheduler', `127.0.0.1:${port}`);
  t.equal(j.status, 1);
  t.equal(JSON.parse(j.stderr).error.code, 'UNAVAILABLE', '--json errors are JSON too');
});

t.test('usage errors exit 2 and say what is wrong', async (t) => {
  const unknown = trainyard('frobnicate');
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  const flag = trainyard('run', 'train', '--package', 'p', '--dataset', 'd', '--gpus', 'many');
  t.equal(flag.status, 2);
  t.match(flag.stderr, /--gpus: expected an integer from 0 to 8, got "many"/);
  const missing = trainyard('run', 'train', '--dataset', 'd', '--scheduler', '127.0.0.1:1');
  t.equal(missing.status, 2);
  t.match(missing.stderr, /missing --package/);
  const env = trainyard('run', 'train', '--package', 'p', '--dataset', 'd', '--env', 'NOEQUALS');
  t.equal(env.status, 2);
  t.match(env.stderr, /--env "NOEQUALS": expected KEY=VALUE/);
});
