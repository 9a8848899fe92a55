// The agent's disk (issue 21): a run's log spill (agent/log-spill.ts) holds at most --log-spill-mb. A run
// that prints far more while the scheduler is away loses the lines past the cap (counted, and said in
// its log once the scheduler listens again) instead of filling the agent's disk; the lines kept come
// back whole and in order.
import t from 'tap';
import { mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LogSpill, LogSpillFull } from '../../agent/log-spill.js';
import type { ShippedLine } from '../../agent/lines.js';

t.test('the spill stops at its cap: the file never grows past it and the lines past it are counted lost', async (t) => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'ty-spill-')), 'spill.jsonl');
  const errors: unknown[] = [];
  const cap = 600 * 1024;
  const spill = new LogSpill(file, (e) => errors.push(e), cap);
  const total = 2000;
  for (let seq = 1; seq <= total; seq++) {
    spill.push({ seq, stream: 'stdout', text: 'x'.repeat(1000), at: '2026-01-01T00:00:00Z' });
    if (seq % 100 === 0) t.ok((statSync(file, { throwIfNoEntry: false })?.size ?? 0) <= cap, 'never past the cap');
  }
  const back: ShippedLine[] = [];
  for (let got = await spill.take(64 * 1024); got.length; got = await spill.take(64 * 1024)) back.push(...got);
  t.ok(back.length > 0 && back.length < total, `some lines kept (${back.length}), not all`);
  t.same(back.slice(0, 400).map((l) => l.seq), Array.from({ length: 400 }, (_, i) => i + 1), 'the first lines come back whole');
  t.ok(back.every((l, i) => i === 0 || l.seq > back[i - 1]!.seq), 'all of them in order (a gap where lines were dropped)');
  t.equal(spill.lost, total - back.length, 'every other line is counted lost');
  t.ok(errors.length > 0 && errors.every((e) => e instanceof LogSpillFull), 'the cap is what is reported');
  t.match(String((errors[0] as Error).message), /cap of 614400 bytes \(--log-spill-mb\)/);
});

t.test('read back, the spill starts over and takes lines again up to the cap', async (t) => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'ty-spill-')), 'spill.jsonl');
  const spill = new LogSpill(file, () => {}, 300 * 1024);
  for (let seq = 1; seq <= 250; seq++) spill.push({ seq, stream: 'stdout', text: 'y'.repeat(1000), at: '2026-01-01T00:00:00Z' });
  let n = 0;
  for (let got = await spill.take(1 << 20); got.length; got = await spill.take(1 << 20)) n += got.length;
  t.equal(n, 250, 'under the cap nothing is lost');
  for (let seq = 251; seq <= 500; seq++) spill.push({ seq, stream: 'stdout', text: 'y'.repeat(1000), at: '2026-01-01T00:00:00Z' });
  n = 0;
  for (let got = await spill.take(1 << 20); got.length; got = await spill.take(1 << 20)) n += got.length;
  t.equal(n, 250, 'and after it was read back, as many again');
  t.equal(spill.lost, 0);
});
