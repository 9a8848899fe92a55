// A sealed venv's bytecode, compiled by the agent (agent/venv.ts compileVenvBytecode,
// agent/harness/trainyard_compile.py): plain modules get their .pyc, and root is never led by a link the
// build left (the seal allows links to root-owned places): not into a folder a __pycache__ link points
// to, not through a .py link to a file the run could not read, not down a linked folder, and not at all
// when the venv's lib/ is a link.
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { backgroundCompiles, compileInBackground, compileVenvBytecode, ensureVenv, stopBackgroundCompiles } from '../../agent/venv.js';

const python = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();
const tag = spawnSync(python, ['-c', 'import sys; print(sys.implementation.cache_tag)'], { encoding: 'utf8' }).stdout.trim();

/** A venv-shaped tree: DIR/lib/python3/site-packages with `files` (path: text) in it. */
function venv(files: Record<string, string>): { dir: string; site: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ty-compile-'));
  const site = path.join(dir, 'lib', 'python3', 'site-packages');
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(site, p)), { recursive: true });
    writeFileSync(path.join(site, p), text);
  }
  mkdirSync(site, { recursive: true });
  return { dir, site };
}

const compile = (dir: string) => compileVenvBytecode({ python, cgroupBase: null, venvDir: path.dirname(dir) }, dir, new AbortController().signal);

t.test('plain modules are compiled, each into its own __pycache__, writable by nobody else', async (t) => {
  const { dir, site } = venv({ 'plain.py': 'X = 1\n', 'pkg/__init__.py': '', 'pkg/mod.py': 'def f():\n    return 2\n', 'broken.py': 'def (\n' });
  // A source anyone may write, and an agent started with umask 0: the compile's own umask decides.
  chmodSync(path.join(site, 'plain.py'), 0o666);
  const umask = process.umask(0);
  try {
    t.match(await compile(dir), /^compiled 3 of 4 files$/, 'it says how many it compiled');
  } finally {
    process.umask(umask);
  }
  for (const p of ['__pycache__', 'pkg/__pycache__']) {
    const st = statSync(path.join(site, p));
    t.equal(st.mode & 0o777, 0o755, `${p} is 755`);
  }
  t.ok(existsSync(path.join(site, '__pycache__', `plain.${tag}.pyc`)), 'plain.py is compiled');
  t.ok(existsSync(path.join(site, 'pkg', '__pycache__', `mod.${tag}.pyc`)), 'pkg/mod.py is compiled');
  t.equal(statSync(path.join(site, '__pycache__', `plain.${tag}.pyc`)).mode & 0o022, 0, 'the .pyc is writable by nobody else');
  t.notOk(existsSync(path.join(site, '__pycache__', `broken.${tag}.pyc`)), 'a module that does not compile is skipped, and the rest goes on');
});

t.test('a __pycache__ that is a link is not written through', async (t) => {
  const victim = mkdtempSync(path.join(os.tmpdir(), 'ty-victim-'));
  const { dir, site } = venv({ 'evil/os.py': 'print("planted")\n', 'evil/__init__.py': '' });
  symlinkSync(victim, path.join(site, 'evil', '__pycache__'));
  await compile(dir);
  t.same(readdirSync(victim), [], 'nothing was written where the link points');
});

t.test('a .py link and a linked folder are not compiled (root would read what the run cannot)', async (t) => {
  const secretDir = mkdtempSync(path.join(os.tmpdir(), 'ty-secret-'));
  writeFileSync(path.join(secretDir, 'settings.py'), 'TOKEN = "s3cr3t"\n');
  mkdirSync(path.join(secretDir, 'pkg'));
  writeFileSync(path.join(secretDir, 'pkg', 'inner.py'), 'TOKEN = "s3cr3t"\n');
  const { dir, site } = venv({ 'ok.py': '' });
  symlinkSync(path.join(secretDir, 'settings.py'), path.join(site, 'leak.py'));
  symlinkSync(path.join(secretDir, 'pkg'), path.join(site, 'linked'));
  await compile(dir);
  t.ok(existsSync(path.join(site, '__pycache__', `ok.${tag}.pyc`)), 'the plain module beside them is compiled');
  t.notOk(existsSync(path.join(site, '__pycache__', `leak.${tag}.pyc`)), 'the .py link is not');
  t.notOk(existsSync(path.join(secretDir, 'pkg', '__pycache__')), 'nothing is compiled down the linked folder');
});

t.test('a venv whose lib/ is a link is not compiled at all', async (t) => {
  const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'ty-elsewhere-'));
  writeFileSync(path.join(elsewhere, 'm.py'), 'X = 1\n');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ty-compile-'));
  symlinkSync(elsewhere, path.join(dir, 'lib'));
  await t.rejects(compile(dir), /not a plain folder/, 'refused, saying why');
  t.notOk(existsSync(path.join(elsewhere, '__pycache__')), 'and nothing written where it points');
});

t.test('a ready venv whose compile never finished is compiled at its next use', async (t) => {
  // Built with pip (no requirements: nothing reaches an index), which marks it compiled; the marker is
  // then taken away, as a compile the agent's stop cut short leaves it, and a module is added.
  const o = { venvDir: mkdtempSync(path.join(os.tmpdir(), 'ty-venv-')), python, pythonVersion: '', pipIndexUrl: '', pipFindLinks: '', installer: 'pip' as const };
  const dir = await ensureVenv(o, null, () => {}, new AbortController().signal);
  t.ok(existsSync(path.join(dir, '.trainyard-compiled')), 'a pip build is marked compiled (pip compiles what it installs)');
  rmSync(path.join(dir, '.trainyard-compiled'));
  const site = path.join(dir, 'lib', readdirSync(path.join(dir, 'lib'))[0]!, 'site-packages');
  writeFileSync(path.join(site, 'late.py'), 'X = 1\n');
  t.equal(await ensureVenv(o, null, () => {}, new AbortController().signal), dir, 'reused at once (the compile does not hold the run)');
  await backgroundCompiles();
  t.ok(existsSync(path.join(site, '__pycache__', `late.${tag}.pyc`)), 'and compiled in the background');
  t.ok(existsSync(path.join(dir, '.trainyard-compiled')), 'then marked, so the next use does not compile again');
  t.notOk(existsSync(`${dir}.lock`), 'and its lock is released');
});

t.test('an agent that stops ends the compile: no marker, the lock released, compiled at the next use', async (t) => {
  const o = { venvDir: mkdtempSync(path.join(os.tmpdir(), 'ty-venv-')), python, pythonVersion: '', pipIndexUrl: '', pipFindLinks: '', installer: 'pip' as const };
  const dir = await ensureVenv(o, null, () => {}, new AbortController().signal);
  rmSync(path.join(dir, '.trainyard-compiled'));
  // A compiler that takes its time: the "python" the compile runs is a script that sleeps.
  const slow = path.join(mkdtempSync(path.join(os.tmpdir(), 'ty-slow-')), 'python');
  writeFileSync(slow, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
  compileInBackground({ ...o, python: slow }, dir, null);
  await new Promise((r) => setTimeout(r, 300));
  t.ok(existsSync(`${dir}.lock`), 'the compile holds the venv\'s lock');
  const t0 = Date.now();
  await stopBackgroundCompiles();
  t.ok(Date.now() - t0 < 10_000, `the stop ended it at once (${Date.now() - t0} ms), not after its 30 s`);
  t.notOk(existsSync(path.join(dir, '.trainyard-compiled')), 'not marked compiled');
  t.notOk(existsSync(`${dir}.lock`), 'the lock is released');
  await ensureVenv(o, null, () => {}, new AbortController().signal);
  await backgroundCompiles();
  t.ok(existsSync(path.join(dir, '.trainyard-compiled')), 'the next use compiles it');
});
