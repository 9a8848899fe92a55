// Issue 21: `trainyard agents` shows each agent's venv cache use against its --venv-cache-gb, as the agent
// measured it after its last build and reported it in its heartbeat (stored on the agents row); beside it
// the data cache's use against --data-cache-mb and the package cache's use.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

t.test('agents shows each agent\'s venv, data and package cache use, in the table and in --json', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1', cpus: 2, env: { TRAINYARD_VENV_DIR: tempDir('ty-cache-use-'), TRAINYARD_VENV_CACHE_GB: '1.5', TRAINYARD_DATA_CACHE_MB: '64' } }] });
  const pkg = writeTree(tempDir(), { 'train.py': 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        open("model.txt", "w").write("ok")\n' });
  await s.cliJson(['package', 'push', pkg, '--name', 'p']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const id = String((await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'd'])).id);
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 120_000);
  t.equal(run.status, 'Successful', String(run.failure_reason ?? ''));
  // The agent measures after the build and reports at its next heartbeat (every 2 s): polled.
  let use: Record<string, unknown> | undefined;
  const reported = (u: Record<string, unknown> | undefined) => Number(u?.venv_bytes) > 0 && Number(u?.data_bytes) > 0 && Number(u?.package_bytes) > 0;
  for (let i = 0; i < 100 && !reported(use); i++) {
    const agents = await s.cliJson<Record<string, any>[]>(['agents']);
    use = agents.find((a) => a.name === 'a1')?.cache_use as Record<string, unknown> | undefined;
    if (!reported(use)) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(Number(use?.venv_bytes) > 0, `--json: the venv dir's bytes (${JSON.stringify(use)})`);
  t.equal(Number(use?.venv_cap_bytes), 1.5 * 2 ** 30, '--json: the cap, in bytes');
  t.equal(Number(use?.data_bytes), 2, '--json: the data cache holds the dataset\'s one file (2 bytes)');
  t.equal(Number(use?.data_cap_bytes), 64 * 2 ** 20, '--json: --data-cache-mb, in bytes');
  t.ok(Number(use?.package_bytes) > 0, '--json: the package cache\'s bytes on disk');
  const r = await s.cli(['agents']);
  t.equal(r.code, 0);
  t.match(r.stdout, /VENV CACHE +DATA CACHE +PACKAGES/, 'the table has the columns');
  t.match(r.stdout, /a1 .* [\d.]+ (MiB|GiB) \/ 1\.50 GiB +0\.0 MiB \/ 64\.0 MiB +[\d.]+ MiB/, `the agent's row shows use / cap for each (${r.stdout})`);
});
