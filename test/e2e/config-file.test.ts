// A scheduler started with --config uses the file (a limit set only there is enforced), under the
// TRAINYARD_* variables (the stack's bucket, set by variable, wins over the file's); a YAML file and a
// TOML file alike.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

const trainPy = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';

const files = {
  'scheduler.yaml': '# only what the stack does not set otherwise\nmax-zip-entries: 1\nbucket: not-this-bucket\n',
  'scheduler.toml': '# only what the stack does not set otherwise\nmax-zip-entries = 1\nbucket = "not-this-bucket"\n',
};

t.test('a scheduler started with a config file uses it', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const first = s.schedulerAddress;
  const push = async (address: string, files: Record<string, string>, name: string) => {
    s.schedulerAddress = address; // s.cli dials the stack's address
    try { return await s.cli(['package', 'push', writeTree(tempDir(), files), '--name', name, '--json']); } finally { s.schedulerAddress = first; }
  };

  for (const [name, text] of Object.entries(files)) await t.test(name, async (t) => {
    const format = path.extname(name).slice(1);
    const cfg = path.join(tempDir('ty-config-'), name);
    writeFileSync(cfg, text);
    const second = await s.startScheduler({}, '127.0.0.1:0', ['--config', cfg]);
    const listening = await second.waitFor((l) => l.msg === 'listening');
    t.equal((await second.waitFor((l) => l.msg === 'config file read')).file, cfg, 'it says which file it read');

    const two = { 'train.py': trainPy, 'README.md': 'two entries\n' };
    const refused = await push(String(listening.address), two, `two-files-${format}`);
    t.equal(refused.code, 2, `the scheduler with the file refuses a zip of two entries ${refused.stdout}`);
    t.match(refused.stderr, /zip has 2 entries; the limit is 1/, 'with the limit from the file');
    const accepted = await push(first, two, `two-files-${format}`);
    t.equal(accepted.code, 0, `the scheduler without it accepts the same package ${accepted.stderr}`);

    const one = await push(String(listening.address), { 'train.py': trainPy }, `one-file-${format}`);
    t.equal(one.code, 0, `one entry is within the file's limit ${one.stderr}`);
    t.ok((await s.objects(`packages/one-file-${format}/`)).length === 1, 'and it went to the bucket the variable names, not the file\'s');
  });
});
