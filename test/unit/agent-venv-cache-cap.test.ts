// The venv cache's cap (agent/venv-cache-cap.ts, --venv-cache-gb): past it, the least recently used venvs
// go first, never one in use (held by an attempt, or with a warm interpreter); files hard-linked from the
// shared uv cache count once; and a venv handed out by ensureVenv is held before anything can remove it.
import t from 'tap';
import { existsSync, linkSync, mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { VenvCacheCap, diskUse } from '../../agent/venv-cache-cap.js';
import { ensureVenv } from '../../agent/venv.js';

const MIB = 1024 * 1024;

/** A ready venv (as the cache sees one) holding one file of `mib` MiB, last used `ageS` seconds ago. */
function fakeVenv(venvDir: string, key: string, mib: number, ageS: number): string {
  const dir = path.join(venvDir, key);
  mkdirSync(path.join(dir, 'lib'), { recursive: true });
  writeFileSync(path.join(dir, 'lib', 'big.bin'), randomBytes(mib * MIB));
  const marker = path.join(dir, '.trainyard-ready');
  writeFileSync(marker, 'x');
  const when = new Date(Date.now() - ageS * 1000);
  utimesSync(marker, when, when);
  return dir;
}

const key = (c: string) => c.repeat(24);

t.test('over the cap, the least recently used venvs not in use are removed, until it fits', async (t) => {
  const venvDir = mkdtempSync(path.join(os.tmpdir(), 'ty-cap-'));
  const oldest = fakeVenv(venvDir, key('a'), 1, 400); // in use: kept although the oldest
  const old = fakeVenv(venvDir, key('b'), 1, 300);
  const warm = fakeVenv(venvDir, key('c'), 1, 200); // a warm interpreter runs from it
  const newer = fakeVenv(venvDir, key('d'), 1, 100);
  const newest = fakeVenv(venvDir, key('e'), 1, 0);
  const total = await diskUse(venvDir);
  // Room for all but one MiB and a half: two venvs must go.
  const cap = new VenvCacheCap(venvDir, total - 1.5 * MIB, { busy: (d) => d === warm });
  const holder = cap.holder();
  holder.hold(oldest);
  const r = await cap.enforce();
  t.same(r.removed.sort(), [key('b'), key('d')], 'the two least recently used that are not in use');
  for (const d of [oldest, warm, newest]) t.ok(existsSync(d), `${path.basename(d)} kept`);
  for (const d of [old, newer]) t.notOk(existsSync(d), `${path.basename(d)} removed`);
  t.ok(r.bytes <= total - 1.5 * MIB, `it fits now (${r.bytes} bytes)`);
  t.equal(cap.usedBytes, r.bytes, 'the use reported is the one measured');
  // Holding it was a use: released, it is now more recent than the one made before it was held.
  holder.releaseAll();
  fakeVenv(venvDir, key('f'), 1, 0);
  const r2 = await cap.enforce();
  t.same(r2.removed, [key('e')], 'a use counts: the venv last used longest ago goes, not the one held until now');
});

t.test('a venv in use is never removed, even when nothing else can go', async (t) => {
  const venvDir = mkdtempSync(path.join(os.tmpdir(), 'ty-cap-'));
  const a = fakeVenv(venvDir, key('a'), 1, 10);
  const cap = new VenvCacheCap(venvDir, 1);
  cap.hold(a);
  const r = await cap.enforce();
  t.same(r.removed, [], 'nothing removed');
  t.ok(existsSync(path.join(a, 'lib', 'big.bin')), 'the venv in use is whole');
});

t.test('files hard-linked from the shared uv cache count once; removing a venv frees only its own', async (t) => {
  const venvDir = mkdtempSync(path.join(os.tmpdir(), 'ty-cap-'));
  const cache = path.join(venvDir, '.uv-cache');
  mkdirSync(cache);
  writeFileSync(path.join(cache, 'wheel.bin'), randomBytes(2 * MIB));
  const a = fakeVenv(venvDir, key('a'), 0, 10);
  const b = fakeVenv(venvDir, key('b'), 0, 5);
  linkSync(path.join(cache, 'wheel.bin'), path.join(a, 'lib', 'wheel.bin'));
  linkSync(path.join(cache, 'wheel.bin'), path.join(b, 'lib', 'wheel.bin'));
  const total = await diskUse(venvDir);
  t.ok(total < 2.5 * MIB, `the linked file counts once (${total} bytes)`);
  t.ok(await diskUse(a, true) < 0.5 * MIB, 'a venv\'s own bytes leave out what the cache holds');
  // Nothing is in use but the cache alone is over the cap: the venvs go, then the cache (no build under way).
  const cap = new VenvCacheCap(venvDir, MIB, { building: () => false });
  const r = await cap.enforce();
  t.same(r.removed.sort(), [key('a'), key('b')], 'both venvs removed');
  t.ok(r.cacheCleared, 'then the shared cache');
  t.ok(r.bytes <= MIB, 'and it fits');
});

t.test('ensureVenv holds the venv it hands out, built or reused, until each run that asked lets go', async (t) => {
  const venvDir = mkdtempSync(path.join(os.tmpdir(), 'ty-cap-'));
  const cap = new VenvCacheCap(venvDir, 1);
  const o = { venvDir, python: 'python3', pythonVersion: '', pipIndexUrl: '', pipFindLinks: '', installer: 'pip' as const, cap };
  const h1 = cap.holder();
  const dir = await ensureVenv({ ...o, hold: h1.hold }, null, () => {}, new AbortController().signal);
  t.ok(cap.inUse(dir), 'built: held by the run that asked');
  await cap.enforce();
  t.ok(existsSync(path.join(dir, '.trainyard-ready')), 'not removed while held, though over the cap');
  const h2 = cap.holder();
  t.equal(await ensureVenv({ ...o, hold: h2.hold }, null, () => {}, new AbortController().signal), dir, 'reused');
  h1.releaseAll();
  t.ok(cap.inUse(dir), 'still held by the second run');
  h2.releaseAll();
  t.notOk(cap.inUse(dir), 'released when both ended');
  const r = await cap.enforce();
  t.same(r.removed, [path.basename(dir)], 'then removed');
  t.notOk(existsSync(dir), 'gone');
});

t.test('du and the walk from Node measure the same: allocated blocks, a hard-linked file once', async (t) => {
  const venvDir = mkdtempSync(path.join(os.tmpdir(), 'ty-cap-'));
  const a = fakeVenv(venvDir, key('a'), 1, 0);
  fakeVenv(venvDir, key('b'), 2, 0);
  linkSync(path.join(a, 'lib', 'big.bin'), path.join(venvDir, 'linked.bin'));
  const walked = await diskUse(venvDir, false, false);
  t.ok(walked > 3 * MIB, `the walk counts the files (${walked} bytes)`);
  t.equal(await diskUse(venvDir), walked, 'du says the same');
});
