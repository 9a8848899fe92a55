// The venv's packages in a run's lineage (agent/lineage.ts venvInfo) are what `pip freeze` would list:
// read from a real venv (made --without-pip, so nothing is installed or downloaded) whose site-packages
// holds hand-written .dist-info folders, among them the ones pip freeze leaves out.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { venvInfo } from '../../agent/lineage.js';
import { tempDir } from '../helpers/stack.js';

/** A venv with no pip, holding the given distributions (name, version) as metadata only. */
function fakeVenv(dists: [string, string][]): string {
  const venv = path.join(tempDir('ty-freeze-'), 'venv');
  const made = spawnSync('python3', ['-m', 'venv', '--without-pip', venv], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`python3 -m venv: ${made.stderr}`);
  const lib = path.join(venv, 'lib');
  const site = path.join(lib, readdirSync(lib).find((d) => d.startsWith('python'))!, 'site-packages');
  for (const [name, version] of dists) {
    const info = path.join(site, `${name.replace(/-/g, '_')}-${version}.dist-info`);
    mkdirSync(info, { recursive: true });
    writeFileSync(path.join(info, 'METADATA'), `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n`);
  }
  return venv;
}

t.test('the venv\'s packages leave out what pip freeze leaves out', async (t) => {
  const venv = fakeVenv([
    ['pip', '24.0'], ['setuptools', '69.0.0'], ['wheel', '0.42.0'], ['distribute', '0.7.3'],
    ['numpy', '1.26.4'], ['Scikit-Learn', '1.4.0'], ['typing_extensions', '4.9.0'],
  ]);
  const info = await venvInfo(venv);
  t.match(info.python, /^3\.\d+\.\d+/, 'the venv\'s Python version');
  const [major, minor] = info.python.split('.').map(Number) as [number, number];
  // pip/_internal/commands/freeze.py: pip always; the build tools only before Python 3.12.
  const buildTools = major === 3 && minor < 12 ? [] : ['distribute==0.7.3', 'setuptools==69.0.0', 'wheel==0.42.0'];
  t.strictSame(info.packages, ['numpy==1.26.4', 'Scikit-Learn==1.4.0', 'typing_extensions==4.9.0', ...buildTools].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase())),
    `NAME==VERSION, case-insensitively sorted, without pip${buildTools.length ? '' : ', setuptools, wheel or distribute'} (Python ${info.python})`);
  t.strictSame(await venvInfo(venv), info, 'read again: the same (from the venv\'s cache)');
});

t.test('names are matched as pip matches them (canonical: case, -, _ and . alike)', async (t) => {
  const info = await venvInfo(fakeVenv([['PIP', '24.0'], ['requests', '2.31.0']]));
  t.strictSame(info.packages, ['requests==2.31.0'], 'PIP is pip');
});

// Issue 19: the lineage is read as data. Running the venv's Python (as the agent, root) to list its
// packages ran every .pth file a requirement brought, as root.
t.test('reading the packages runs nothing of the venv: a .pth file is not executed', async (t) => {
  const venv = fakeVenv([['evil', '0.1']]);
  const lib = path.join(venv, 'lib');
  const site = path.join(lib, readdirSync(lib).find((d) => d.startsWith('python'))!, 'site-packages');
  const marker = path.join(tempDir('ty-pth-'), 'ran');
  writeFileSync(path.join(site, 'evil.pth'), `import os; open(${JSON.stringify(marker)}, "w").write(str(os.getuid()))\n`);
  const info = await venvInfo(venv);
  t.strictSame(info.packages, ['evil==0.1'], 'the package is listed');
  t.notOk(existsSync(marker), 'and its .pth file never ran');
});

// Issue 21: a venv uv made names its Python `version_info` in pyvenv.cfg, not `version`.
t.test('the Python version of a venv uv made is read too', async (t) => {
  const venv = fakeVenv([['numpy', '1.26.4']]);
  writeFileSync(path.join(venv, 'pyvenv.cfg'), 'home = /usr/bin\nimplementation = CPython\nuv = 0.13.9\nversion_info = 3.11.7\ninclude-system-site-packages = false\n');
  const info = await venvInfo(venv);
  t.equal(info.python, '3.11.7', 'from version_info');
  t.same(info.packages, ['numpy==1.26.4']);
});
