// The venv cache (agent/venv.ts) on a real `python3 -m venv` (no requirements, so nothing reaches an
// index): a build shared by two runs survives the kill of the run that started it; it is aborted only
// when every run waiting on it has left, and then leaves nothing a later run would trust.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureVenv, type VenvOptions } from '../../agent/venv.js';

const options = (): VenvOptions => ({ venvDir: mkdtempSync(path.join(os.tmpdir(), 'ty-venv-')), python: 'python3', pythonVersion: '', pipIndexUrl: '', pipFindLinks: '' });

t.test('killing the run that started a shared build does not fail the other run waiting on it', async (t) => {
  const o = options();
  const first = new AbortController();
  const second = new AbortController();
  const logs1: string[] = [];
  const logs2: string[] = [];
  const p1 = ensureVenv(o, null, (l) => logs1.push(l), first.signal);
  const p2 = ensureVenv(o, null, (l) => logs2.push(l), second.signal);
  // Both wait on one build (no ready venv yet); the first run is killed while it is under way.
  await new Promise((r) => setImmediate(r));
  first.abort(new Error('run 1 killed'));
  await t.rejects(p1, { message: 'run 1 killed' }, 'the killed run stops waiting, with its own reason');
  const dir = await p2;
  t.ok(existsSync(path.join(dir, 'bin', 'python')), 'the other run gets its venv');
  t.ok(existsSync(path.join(dir, '.trainyard-ready')), 'marked ready');
  t.ok(logs2.some((l) => /waiting for environment/.test(l)), 'the second run was told it waits on a shared build');
  t.ok(logs2.some((l) => /creating environment/.test(l)) || logs1.some((l) => /creating environment/.test(l)), 'the build logged');
  t.equal(await ensureVenv(o, null, () => {}, new AbortController().signal), dir, 'and later runs reuse it');
});

t.test('the build output goes to every run waiting on it, also after the first has left', async (t) => {
  const o = options();
  const first = new AbortController();
  const logs2: string[] = [];
  const p1 = ensureVenv(o, null, () => {}, first.signal);
  const p2 = ensureVenv(o, null, (l) => logs2.push(l), new AbortController().signal);
  first.abort();
  await t.rejects(p1);
  await p2;
  t.ok(logs2.some((l) => /creating environment/.test(l)), `second run saw: ${logs2.join(' | ')}`);
});

t.test('when every waiting run has left, the build is aborted and leaves no venv to trust', async (t) => {
  const o = options();
  const a = new AbortController();
  const b = new AbortController();
  const pa = ensureVenv(o, null, () => {}, a.signal);
  const pb = ensureVenv(o, null, () => {}, b.signal);
  await new Promise((r) => setImmediate(r));
  a.abort(new Error('a killed'));
  b.abort(new Error('b killed'));
  await t.rejects(pa, { message: 'a killed' });
  await t.rejects(pb, { message: 'b killed' });
  // The aborted build cleans up in the background; a new run starts a fresh build (after its lock).
  const dir = await ensureVenv(o, null, () => {}, new AbortController().signal);
  t.ok(existsSync(path.join(dir, '.trainyard-ready')), 'a later run builds it anew and gets it');
  t.same(readdirSync(o.venvDir).filter((n) => n.endsWith('.lock')), [], 'no lock left behind');
});

t.test('a run whose signal already fired does not start a build', async (t) => {
  const o = options();
  await t.rejects(ensureVenv(o, null, () => {}, AbortSignal.abort(new Error('already killed'))), { message: 'already killed' });
  t.same(readdirSync(o.venvDir), [], 'nothing created');
});
