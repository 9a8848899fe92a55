// Package zips: what is refused (entries leaving the root, absolute paths, links, bombs) and a clean
// round trip. Hostile zips are written with Python's zipfile, which writes any name it is given.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { inspectZip, extractZip, zipDir } from '../../shared/zip.js';
import { tempDir, writeTree } from '../helpers/stack.js';

const limits = { maxUnzippedBytes: 10 * 1024 * 1024, maxEntries: 100 };

function pyZip(entries: { name: string; data?: string; symlink?: string; size?: number }[]): string {
  const file = path.join(tempDir(), 'p.zip');
  const script = `
import json, sys, zipfile
entries = json.loads(sys.argv[2])
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for e in entries:
        info = zipfile.ZipInfo(e["name"])
        if e.get("symlink"):
            info.external_attr = (0o120777 << 16)
            z.writestr(info, e["symlink"])
        elif e.get("size"):
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, b"\\0" * e["size"])
        else:
            z.writestr(info, e.get("data", ""))
`;
  execFileSync('python3', ['-c', script, file, JSON.stringify(entries)]);
  return file;
}

t.test('entries that leave the root are refused, naming the entry', async (t) => {
  const file = pyZip([{ name: 'train.py', data: 'x' }, { name: '../evil.py', data: 'x' }]);
  await t.rejects(inspectZip(file, limits), { code: 'INVALID_PACKAGE', message: /zip entry "\.\.\/evil\.py" leaves the package root/ });
  const abs = pyZip([{ name: 'train.py', data: 'x' }, { name: '/etc/evil', data: 'x' }]);
  await t.rejects(inspectZip(abs, limits), { code: 'INVALID_PACKAGE', message: /"\/etc\/evil" is an absolute path/ });
  const dest = path.join(tempDir(), 'out');
  await t.rejects(extractZip(file, dest, limits), { code: 'INVALID_PACKAGE' });
  t.notOk(existsSync(dest), 'nothing extracted');
});

t.test('links are refused', async (t) => {
  const file = pyZip([{ name: 'train.py', data: 'x' }, { name: 'data', symlink: '/etc/passwd' }]);
  await t.rejects(inspectZip(file, limits), { code: 'INVALID_PACKAGE', message: /zip entry "data" is a symbolic link/ });
});

t.test('zip bombs and too many entries are refused', async (t) => {
  const bomb = pyZip([{ name: 'train.py', data: 'x' }, { name: 'zeros.bin', size: 20 * 1024 * 1024 }]);
  await t.rejects(inspectZip(bomb, limits), { code: 'INVALID_PACKAGE', message: /unpacks to more than 10485760 bytes/ });
  const many = pyZip(Array.from({ length: 101 }, (_, i) => ({ name: `f${i}.txt`, data: 'x' })));
  await t.rejects(inspectZip(many, limits), { code: 'INVALID_PACKAGE', message: /101 entries; the limit is 100/ });
});

t.test('a folder round-trips, and a single top folder is taken as the root', async (t) => {
  const src = writeTree(tempDir(), { 'train.py': 'print(1)\n', 'sub/model.bin': 'abc', 'skip/me.txt': 'no' });
  const zip = path.join(tempDir(), 'x.zip');
  const { files } = await zipDir(src, zip, (rel) => rel === 'skip');
  t.equal(files, 2);
  const dest = path.join(tempDir(), 'out');
  const info = await extractZip(zip, dest, limits);
  t.equal(info.root, '');
  t.equal(readFileSync(path.join(dest, 'sub', 'model.bin'), 'utf8'), 'abc');
  t.notOk(existsSync(path.join(dest, 'skip')));

  const nested = pyZip([{ name: 'my-package/train.py', data: 'x' }, { name: 'my-package/req.txt', data: 'y' }]);
  const n = await inspectZip(nested, limits);
  t.equal(n.root, 'my-package/');
  t.same(n.entries.map((e) => e.rel).sort(), ['req.txt', 'train.py']);
});

t.test('zipDir with inMemoryUpTo gives the bytes it would write, or writes the file past its limit', async (t) => {
  const dir = writeTree(tempDir(), { 'train.py': 'x = 1\n', 'model/weights.bin': 'w'.repeat(5000), 'skip.me': 'no' });
  const exclude = (rel: string) => rel === 'skip.me';
  const file = path.join(tempDir(), 'out.zip');
  await zipDir(dir, file, exclude);
  const small = path.join(tempDir(), 'small.zip');
  const { buffer: buf } = await zipDir(dir, small, exclude, { inMemoryUpTo: 1 << 20 });
  t.ok(buf && buf.equals(readFileSync(file)), 'byte for byte the same zip (same digest for the version)');
  t.notOk(existsSync(small), 'and no file written');
  const big = path.join(tempDir(), 'big.zip');
  const over = await zipDir(dir, big, exclude, { inMemoryUpTo: 4000 });
  t.equal(over.buffer, undefined, 'files over the limit: no buffer');
  t.ok(readFileSync(big).equals(readFileSync(file)), 'the file written instead');
});
