// The venv cache key (agent/venv-key.ts) covers everything pip reads (issue 19): the requirements text and
// every local file or folder it names, -r and -c files recursively, wherever the package's copy lives.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { venvKey } from '../../agent/venv-key.js';
import { parseRunUids } from '../../agent/run-uids.js';
import { tempDir, writeTree } from '../helpers/stack.js';

const key = async (pkg: string) => (await venvKey({ python: '/usr/bin/python3', pythonVersion: '3.11.7', pipIndexUrl: '', pipFindLinks: '', requirementsFile: path.join(pkg, 'requirements.txt') })).key;

/** A package whose requirements name a wheel folder, a wheel file, the package itself and a nested -r file naming another wheel. */
const pkg = (files: Record<string, string> = {}) => writeTree(tempDir(), {
  'requirements.txt': '--no-index\n--find-links wheels\n./local-0.1-py3-none-any.whl\n-r more.txt\n',
  'more.txt': '-c pins.txt\n--find-links=extra\n',
  'pins.txt': 'x==1\n',
  'wheels/a-0.1-py3-none-any.whl': 'A',
  'local-0.1-py3-none-any.whl': 'L',
  'extra/b-0.1-py3-none-any.whl': 'B',
  ...files,
});

t.test('the same package in two folders has one key; any file the requirements name changes it', async (t) => {
  const base = await key(pkg());
  t.equal(await key(pkg()), base, 'another copy of the same files (another attempt\'s folder): the same venv');
  for (const [what, change] of [
    ['a wheel in --find-links', { 'wheels/a-0.1-py3-none-any.whl': 'A2' }],
    ['a wheel added to --find-links', { 'wheels/c-0.1-py3-none-any.whl': 'C' }],
    ['a ./x.whl', { 'local-0.1-py3-none-any.whl': 'L2' }],
    ['a folder named in a -r file', { 'extra/b-0.1-py3-none-any.whl': 'B2' }],
    ['a -c file named in a -r file', { 'pins.txt': 'x==2\n' }],
  ] as const) {
    t.not(await key(pkg(change)), base, `${what}: another key`);
  }
  const p = pkg();
  writeFileSync(path.join(p, 'train.py'), 'changed');
  t.equal(await key(p), base, 'a file the requirements do not name changes nothing');
  t.not((await venvKey({ python: '/usr/bin/python3', pythonVersion: '3.12.1', pipIndexUrl: '', pipFindLinks: '', requirementsFile: path.join(p, 'requirements.txt') })).key, base, 'another Python version: another key');
});

t.test('-e . hashes the package folder itself', async (t) => {
  const a = writeTree(tempDir(), { 'requirements.txt': '-e .\n', 'setup.py': 'one' });
  const b = writeTree(tempDir(), { 'requirements.txt': '-e .\n', 'setup.py': 'two' });
  t.not(await key(a), await key(b));
});

t.test('--run-uids: FIRST-LAST above the system range, or refused with an example', async (t) => {
  t.same(parseRunUids('61000-61063'), { first: 61000, last: 61063 });
  t.same(parseRunUids('61000'), { first: 61000, last: 61000 }, 'one uid');
  for (const bad of ['0-10', '61063-61000', 'x', '61000-70000', '']) t.throws(() => parseRunUids(bad), /expected FIRST-LAST.*61000-61063/, `"${bad}" is refused`);
});
