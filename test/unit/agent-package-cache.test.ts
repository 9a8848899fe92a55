// The agent's package cache (agent/package-cache.ts): a version is extracted once, each run gets its own
// copy, a failed extraction (a digest that did not match) leaves nothing behind, and the least recently
// used versions go.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MAX_ENTRIES, PackageCache } from '../../agent/package-cache.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'ty-pkgcache-'));
const sha = (n: number) => n.toString(16).padStart(64, '0');

t.test('a version is extracted once; every run gets a copy of its own', async (t) => {
  const work = tmp();
  const cache = new PackageCache(work);
  let extractions = 0;
  const extract = async (into: string) => {
    extractions++;
    mkdirSync(into);
    writeFileSync(path.join(into, 'train.py'), 'print(1)\n');
  };
  const a = path.join(tmp(), 'a');
  const b = path.join(tmp(), 'b');
  t.equal(await cache.copyTo(sha(1), a, extract), false, 'first use: a miss');
  t.equal(await cache.copyTo(sha(1), b, extract), true, 'second use: a hit');
  t.equal(extractions, 1, 'extracted once');
  writeFileSync(path.join(a, 'train.py'), 'tampered by a run\n');
  writeFileSync(path.join(a, 'model.bin'), 'saved by a run\n');
  const c = path.join(tmp(), 'c');
  await cache.copyTo(sha(1), c, extract);
  t.equal(readFileSync(path.join(c, 'train.py'), 'utf8'), 'print(1)\n', 'what one run changes in its copy never reaches a later run');
  t.notOk(existsSync(path.join(c, 'model.bin')));
  t.equal(statSync(path.join(work, 'packages')).mode & 0o777, 0o700, 'the cache is the agent\'s alone');
  await t.rejects(cache.copyTo('../../etc', path.join(tmp(), 'd'), extract), /not a SHA-256/, 'a key that is not a digest is refused');
});

t.test('a failed extraction caches nothing, and the next run tries again', async (t) => {
  const cache = new PackageCache(tmp());
  await t.rejects(cache.copyTo(sha(2), path.join(tmp(), 'x'), async (into) => {
    mkdirSync(into);
    writeFileSync(path.join(into, 'half'), '');
    throw new Error('the package zip has SHA-256 …, not the registered …');
  }), /not the registered/);
  let again = false;
  await cache.copyTo(sha(2), path.join(tmp(), 'y'), async (into) => { again = true; mkdirSync(into); });
  t.ok(again, 'the next run extracts again (nothing was kept from the failed one)');
});

t.test('beyond MAX_ENTRIES the least recently used versions are removed', async (t) => {
  const work = tmp();
  const cache = new PackageCache(work);
  const extract = async (into: string) => { mkdirSync(into); };
  for (let i = 0; i < MAX_ENTRIES + 3; i++) {
    await cache.copyTo(sha(100 + i), path.join(tmp(), 'p'), extract);
    await new Promise((r) => setTimeout(r, 2));
  }
  // Eviction runs after an insert, in the background.
  for (let i = 0; i < 50 && readdirSync(path.join(work, 'packages')).length > MAX_ENTRIES; i++) await new Promise((r) => setTimeout(r, 20));
  const left = readdirSync(path.join(work, 'packages'));
  t.equal(left.length, MAX_ENTRIES, 'the cache holds MAX_ENTRIES versions');
  t.notOk(left.includes(sha(100)), 'the oldest went');
  t.ok(left.includes(sha(100 + MAX_ENTRIES + 2)), 'the newest stayed');
});

t.test('the next run\'s copy is made ahead and renamed into place; spares of an earlier agent are not trusted', async (t) => {
  const work = tmp();
  mkdirSync(path.join(work, 'package-spares', `${sha(7)}-1`), { recursive: true });
  writeFileSync(path.join(work, 'package-spares', `${sha(7)}-1`, 'train.py'), 'left by a crashed agent\n');
  const cache = new PackageCache(work);
  const extract = async (into: string) => { mkdirSync(into); writeFileSync(path.join(into, 'train.py'), 'print(7)\n'); };
  const spares = () => readdirSync(path.join(work, 'package-spares'));
  // The spare's folder appears when its copy starts: it is settled once its file is there too.
  const made = () => {
    try { return spares().length > 0 && readFileSync(path.join(work, 'package-spares', spares()[0]!, 'train.py'), 'utf8') === 'print(7)\n'; } catch { return false; }
  };
  const settle = async () => { for (let i = 0; i < 300 && !made(); i++) await new Promise((r) => setTimeout(r, 10)); };
  const a = path.join(work, 'a');
  await cache.copyTo(sha(7), a, extract);
  t.equal(readFileSync(path.join(a, 'train.py'), 'utf8'), 'print(7)\n', 'the run got the cached tree, not what an earlier agent left');
  await settle();
  const first = spares();
  t.equal(first.length, 1, 'a spare copy waits for the next run');
  t.equal(readFileSync(path.join(work, 'package-spares', first[0]!, 'train.py'), 'utf8'), 'print(7)\n');
  writeFileSync(path.join(a, 'train.py'), 'changed by the first run\n');
  const b = path.join(work, 'b');
  await cache.copyTo(sha(7), b, extract);
  t.equal(readFileSync(path.join(b, 'train.py'), 'utf8'), 'print(7)\n', 'the next run got the spare: the cached bytes');
  await settle();
  t.notOk(spares().includes(first[0]!), 'the spare was moved into the run\'s folder');
  t.equal(spares().length, 1, 'and another made for the run after');
});

t.test('a version is ready only once a run found its venv ready', async (t) => {
  const cache = new PackageCache(tmp());
  t.notOk(cache.isReady(sha(9)));
  t.equal(cache.venvOf(sha(9)), null);
  cache.markReady(sha(9), '/venvs/a');
  t.ok(cache.isReady(sha(9)), 'marked by the attempt once its venv was there');
  t.equal(cache.venvOf(sha(9)), '/venvs/a', 'and which venv it was');
  cache.markReady('../x', '/venvs/a');
  t.notOk(cache.isReady('../x'), 'only digests');
});
