// The seal of a built venv (agent/venv-seal.ts), on real files, both ways it finds what to look at (find(1),
// and the walk from Node with many calls in flight, used where find is missing or fails): every write bit
// for group and others and every setuid/setgid bit is taken off however deep and wide the tree, a run
// uid's files become root's, links inside are kept, and a dangling link or one leading out to a file that
// is not root's alone fails the build.
import t from 'tap';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { seal } from '../../agent/venv-seal.js';
import { PackagingError } from '../../agent/packaging-error.js';

const root = process.getuid?.() === 0;
const how = (useFind: boolean) => (useFind ? 'with find' : 'walked from Node');

/** A venv-like tree: `dirs` folders of `files` files each, every one group/other writable, some setuid. */
function tree(dirs: number, files: number): { dir: string; paths: string[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ty-seal-'));
  const paths: string[] = [];
  for (let d = 0; d < dirs; d++) {
    const sub = path.join(dir, 'lib', `pkg${d}`, 'sub');
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < files; f++) {
      const p = path.join(sub, `m${f}.py`);
      writeFileSync(p, 'x = 1\n');
      chmodSync(p, f % 7 === 0 ? 0o6777 : 0o666);
      paths.push(p);
    }
    chmodSync(sub, 0o777);
    chmodSync(path.dirname(sub), 0o2775);
    paths.push(sub, path.dirname(sub));
  }
  return { dir, paths };
}

for (const useFind of [true, false]) {
  t.test(`${how(useFind)}: no file or folder is left writable by others or setuid, in a tree of 40 x 50 files`, async (t) => {
    const { dir, paths } = tree(40, 50);
    symlinkSync('sub/m1.py', path.join(dir, 'lib', 'pkg0', 'inside'));
    await seal(dir, { chownToRoot: false, rootOnlyLinks: root, useFind });
    const bad = paths.filter((p) => (lstatSync(p).mode & 0o6022) !== 0);
    t.same(bad, [], 'every one sealed');
    t.equal(lstatSync(paths[0]!).mode & 0o7777, 0o755, 'a setuid file keeps its other bits (rwxr-xr-x)');
    t.equal(lstatSync(paths[1]!).mode & 0o7777, 0o644, 'a plain one too (rw-r--r--)');
    t.ok(lstatSync(path.join(dir, 'lib', 'pkg0', 'inside')).isSymbolicLink(), 'a link inside the venv is kept');
  });

  // find hands raw names over; the walk from Node reads names as UTF-8 and cannot reach such a file, so it
  // fails the build rather than leave the file unsealed.
  t.test(`${how(useFind)}: a file whose name is not UTF-8 is ${useFind ? 'sealed too' : 'refused'}`, async (t) => {
    const { dir } = tree(1, 1);
    const odd = Buffer.concat([Buffer.from(dir + '/lib/pkg0/'), Buffer.from([0x66, 0xff, 0x2e, 0x70, 0x79])]);
    writeFileSync(odd, 'x = 3\n');
    chmodSync(odd, 0o4666);
    const sealing = seal(dir, { chownToRoot: false, rootOnlyLinks: root, useFind });
    if (!useFind) return void await t.rejects(sealing, { code: 'ENOENT' }, 'the build fails');
    await sealing;
    t.equal(lstatSync(odd).mode & 0o7777, 0o644, 'rw-r--r--');
  });

  t.test(`${how(useFind)}: a run uid's build is given to root first`, { skip: !root && 'needs root' }, async (t) => {
    const { dir, paths } = tree(3, 5);
    for (const p of [dir, ...paths]) chownSync(p, 61999, 61999);
    await seal(dir, { chownToRoot: true, rootOnlyLinks: true, useFind });
    t.same([dir, ...paths].filter((p) => lstatSync(p).uid !== 0 || lstatSync(p).gid !== 0), [], 'every file root\'s');
  });

  t.test(`${how(useFind)}: a dangling link anywhere fails the seal`, async (t) => {
    const { dir } = tree(20, 20);
    symlinkSync('/nonexistent/trainyard-seal-target', path.join(dir, 'lib', 'pkg13', 'sub', 'gone'));
    await t.rejects(seal(dir, { chownToRoot: false, rootOnlyLinks: root, useFind }), PackagingError, 'refused');
    await t.rejects(seal(dir, { chownToRoot: false, rootOnlyLinks: root, useFind }), { message: /link lib\/pkg13\/sub\/gone to nothing/ }, 'naming the link');
  });

  t.test(`${how(useFind)}: a link out of the venv to a file that is not root's is refused when links must be root's`, { skip: !root && 'needs root' }, async (t) => {
    const { dir } = tree(5, 5);
    const outside = mkdtempSync(path.join(os.tmpdir(), 'ty-seal-out-'));
    const target = path.join(outside, 'theirs.py');
    writeFileSync(target, 'x = 2\n');
    chownSync(target, 61999, 61999);
    symlinkSync(target, path.join(dir, 'lib', 'pkg2', 'sub', 'out'));
    await t.rejects(seal(dir, { chownToRoot: false, rootOnlyLinks: true, useFind }), PackagingError, 'refused');
    const ok = tree(5, 5).dir;
    symlinkSync('/usr/bin/env', path.join(ok, 'lib', 'pkg2', 'sub', 'out'));
    await seal(ok, { chownToRoot: false, rootOnlyLinks: true, useFind });
    t.pass('a link to a file root\'s alone, in folders root\'s alone (/usr/bin/env), is accepted');
  });
}
