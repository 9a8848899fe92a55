// Issue 21: `trainyard agents` shows each agent's venv cache use against its --venv-cache-gb, as the agent
// measured it after its last build and reported it in its heartbeat (stored on the agents row).
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

t.test('agents shows each agent\'s venv cache use, in the table and in --json', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'a1', cpus: 2, env: { TRAINYARD_VENV_DIR: tempDir('ty-cache-use-'), TRAINYARD_VENV_CACHE_GB: '1.5' } }] });
  const pkg = writeTree(tempDir(), { 'train.py': 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        open("model.txt", "w").write("ok")\n' });
  await s.cliJson(['package', 'push', pkg, '--name', 'p']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const id = String((await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'd'])).id);
  const run = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 120_000);
  t.equal(run.status, 'Successful', String(run.failure_reason ?? ''));
  // The agent measures after the build and reports at its next heartbeat (every 2 s): polled.
  let use: Record<string, unknown> | undefined;
  for (let i = 0; i < 100 && !(Number(use?.venv_bytes) > 0); i++) {
    const agents = await s.cliJson<Record<string, any>[]>(['agents']);
    use = agents.find((a) => a.name === 'a1')?.cache_use as Record<string, unknown> | undefined;
    if (!(Number(use?.venv_bytes) > 0)) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(Number(use?.venv_bytes) > 0, `--json: the venv dir's bytes (${JSON.stringify(use)})`);
  t.equal(Number(use?.venv_cap_bytes), 1.5 * 2 ** 30, '--json: the cap, in bytes');
  const r = await s.cli(['agents']);
  t.equal(r.code, 0);
  t.match(r.stdout, /VENV CACHE/, 'the table has the column');
  t.match(r.stdout, /a1 .* [\d.]+ (MiB|GiB) \/ 1\.50 GiB/, `the agent's row shows use / cap (${r.stdout})`);
});
