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
