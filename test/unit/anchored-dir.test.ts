// Reading and chowning a folder that something else keeps changing (shared/anchored-dir.ts): links,
// FIFOs and devices are never opened or followed, and a folder swapped for a link to another folder by
// renameat2(RENAME_EXCHANGE), in a tight loop from another process, never makes the walk read or chown
// anything of that other folder.
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AnchoredDir, NotPlainPath, removeTree } from '../../shared/anchored-dir.js';
import { chownTree } from '../../agent/containment.js';
import { tempDir, writeTree } from '../helpers/stack.js';

/** Swaps a and b (RENAME_EXCHANGE) as fast as it can until `stop` exists; resolves with how many swaps worked. */
function swapper(a: string, b: string, stop: string): { done: Promise<number>; started: Promise<void> } {
  const script = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, stop = (x.encode() for x in sys.argv[1:4])
n = 0
print("go", flush=True)
while not os.path.exists(stop):
    for _ in range(200):
        if libc.renameat2(-100, a, -100, b, 2) == 0:
            n += 1
print(n, flush=True)
`;
  const child = spawn('python3', ['-c', script, a, b, stop], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let go: () => void;
  const started = new Promise<void>((r) => { go = r; });
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('go')) go(); });
  return { started, done: new Promise((resolve) => child.on('exit', () => resolve(Number(out.split('\n')[1] ?? 0)))) };
}

t.test('links, FIFOs and folders swapped for links are not followed; a FIFO does not block', async (t) => {
  const outside = writeTree(tempDir(), { 'identity': 'SECRET' });
  const dir = writeTree(tempDir(), { 'a.txt': 'a', 'sub/b.txt': 'bb' });
  symlinkSync(path.join(outside, 'identity'), path.join(dir, 'link.txt'));
  symlinkSync(outside, path.join(dir, 'linkdir'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  const root = await AnchoredDir.open(dir);
  t.teardown(() => root.close());
  const files = await root.files();
  t.same(files.map((f) => [f.rel, f.size]), [['a.txt', 1], ['sub/b.txt', 2]], 'only the regular files, links and the FIFO skipped');
  await t.rejects(root.openDir('linkdir'), NotPlainPath, 'a folder that is a link is refused');
  await t.rejects(root.openDir('a.txt'), NotPlainPath, 'a file is not a folder');
  t.equal(await root.openDir('missing/x'), null, 'a missing folder is null');
  await t.rejects(root.readSmallFile('fifo', 1024), { message: /is a FIFO, not a regular file/ }, 'a FIFO is refused at once, not waited on');
  await t.rejects(root.readSmallFile('link.txt', 1024), { message: /symbolic link/ }, 'a link is refused');
  await t.rejects(root.readSmallFile('a.txt', 0), { message: /over the limit of 0/ }, 'a file over the cap is refused');
  t.equal(await root.readSmallFile('none', 10), null, 'no such file: null');
  // Replaced after it was listed: refused, not read.
  writeFileSync(path.join(dir, 'a.txt.new'), 'other');
  execFileSync('mv', ['-f', path.join(dir, 'a.txt.new'), path.join(dir, 'a.txt')]);
  await t.rejects(root.openFile(files[0]!), { message: /replaced while it was read/ });
  const b = await root.openFile(files[1]!);
  t.equal((await b.readFile('utf8')), 'bb');
  await b.close();
});

t.test('a folder swapped for a link in a loop: the walk reads only what is inside, never the other folder', async (t) => {
  const outside = writeTree(tempDir(), { 'identity': 'SECRET' });
  const dir = writeTree(tempDir(), { 'art/model.txt': 'mine' });
  symlinkSync(outside, path.join(dir, 'swap'));
  const stop = path.join(tempDir(), 'stop');
  const s = swapper(path.join(dir, 'art'), path.join(dir, 'swap'), stop);
  await s.started;
  let read = 0;
  let refused = 0;
  const seen = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const root = await AnchoredDir.open(dir);
    try {
      const art = await root.openDir('art');
      if (!art) continue;
      try {
        for (const f of await art.files()) {
          const fh = await art.openFile(f).catch(() => null);
          if (!fh) continue;
          seen.add(await fh.readFile('utf8'));
          await fh.close();
          read++;
        }
      } finally { await art.close(); }
    } catch (err) {
      if (!(err instanceof NotPlainPath)) throw err;
      refused++;
    } finally { await root.close(); }
  }
  writeFileSync(stop, '');
  const swaps = await s.done;
  t.ok(swaps > 0, `the folder was swapped (${swaps} times)`);
  t.comment(`${refused} walks met the link and refused it; ${read} reads of the folder's own file`);
  t.ok([...seen].every((x) => x === 'mine'), 'nothing but the folder\'s own file was ever read');
});

t.test('chownTree gives away the tree, never what a link (or a folder swapped for one) names', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const outside = writeTree(tempDir(), { 'identity': 'SECRET', 'deep/x': 'x' });
  const dir = writeTree(tempDir(), { 'a.txt': 'a', 'sub/b.txt': 'bb' });
  symlinkSync(path.join(outside, 'identity'), path.join(dir, 'link'));
  await chownTree(dir, 65534, 65534);
  t.equal(statSync(path.join(dir, 'sub', 'b.txt')).uid, 65534, 'a file below is given away');
  t.equal(statSync(dir).uid, 65534, 'and the folder itself');
  t.equal(lstatSync(path.join(dir, 'link')).uid, 65534, 'a link itself is changed');
  t.equal(statSync(path.join(outside, 'identity')).uid, 0, 'what it names is not');

  // Another process swaps sub/ for a link to `outside` as fast as it can, while the tree is given away again and again.
  chownSync(dir, 0, 0);
  symlinkSync(outside, path.join(dir, 'swap'));
  const stop = path.join(tempDir(), 'stop');
  const s = swapper(path.join(dir, 'sub'), path.join(dir, 'swap'), stop);
  await s.started;
  for (let i = 0; i < 200; i++) await chownTree(dir, 65534 - (i % 2), 65534);
  writeFileSync(stop, '');
  t.ok((await s.done) > 0, 'the folder was swapped');
  const owners = (p: string): number[] => [statSync(p).uid, ...(statSync(p).isDirectory() ? readdirSync(p).flatMap((n) => owners(path.join(p, n))) : [])];
  t.same([...new Set(owners(outside))], [0], 'nothing in the other folder changed owner');
});

t.test('removeTree removes files, folders, links and FIFOs below, and nothing a link names', async (t) => {
  const outside = writeTree(tempDir(), { 'keep.txt': 'KEEP', 'sub/keep2.txt': 'KEEP' });
  const files: Record<string, string> = {};
  for (let i = 0; i < 150; i++) files[`d${i % 3}/f${i}.bin`] = String(i);
  const dir = writeTree(tempDir(), { ...files, 'top.txt': 'x', 'deep/a/b/c.txt': 'y' });
  symlinkSync(outside, path.join(dir, 'to-dir'));
  symlinkSync(path.join(outside, 'keep.txt'), path.join(dir, 'd1', 'to-file'));
  execFileSync('mkfifo', [path.join(dir, 'deep', 'fifo')]);
  await removeTree(dir);
  t.throws(() => lstatSync(dir), /ENOENT/, 'the folder is gone');
  t.same(readdirSync(outside).sort(), ['keep.txt', 'sub'], 'what the links named is all there');
  t.equal(readFileSync(path.join(outside, 'sub', 'keep2.txt'), 'utf8'), 'KEEP');
  await removeTree(dir); // gone already: not an error
});

t.test('removeTree while a folder in it is swapped for a link in a loop: never removes what the link names', async (t) => {
  const outside = writeTree(tempDir(), { 'keep.txt': 'KEEP', 'more/keep2.txt': 'KEEP' });
  let swaps = 0;
  for (let round = 0; round < 5; round++) {
    const files: Record<string, string> = {};
    for (let i = 0; i < 200; i++) files[`art/f${i}.txt`] = 'mine';
    const dir = writeTree(tempDir(), files);
    symlinkSync(outside, path.join(dir, 'swap'));
    const stop = path.join(tempDir(), 'stop');
    const s = swapper(path.join(dir, 'art'), path.join(dir, 'swap'), stop);
    await s.started;
    await removeTree(dir).catch((err: unknown) => t.comment(`round ${round}: ${String(err)}`));
    writeFileSync(stop, '');
    swaps += await s.done;
  }
  t.ok(swaps > 0, `the folder was swapped (${swaps} times)`);
  t.same(readdirSync(outside).sort(), ['keep.txt', 'more'], 'nothing the link named was removed');
  t.equal(readFileSync(path.join(outside, 'more', 'keep2.txt'), 'utf8'), 'KEEP');
});

t.test('removeTree holds a descriptor per level of the tree, not per folder, however wide a run made it', async (t) => {
  const dir = tempDir();
  const make = (at: string, depth: number) => {
    if (depth === 0) { writeFileSync(path.join(at, 'f'), 'x'); return; }
    for (let i = 0; i < 6; i++) { const sub = path.join(at, `d${i}`); mkdirSync(sub); make(sub, depth - 1); }
  };
  make(dir, 4); // 1,554 folders, 6 wide and 4 deep
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  let most = before;
  let sampling = true;
  const sample = () => { most = Math.max(most, fds()); if (sampling) setImmediate(sample); };
  sample();
  await removeTree(dir);
  sampling = false;
  t.throws(() => lstatSync(dir), /ENOENT/, 'the tree is gone');
  t.ok(most - before <= 16, `at most a few descriptors more while it ran (${most - before}), not one per folder`);
});
