// The agent's log shipper (agent/log-shipper.ts) against a sink that fails: sends are bounded by the
// backoff (no spinning), memory stays bounded while the scheduler is away (lines past the bound wait in a
// spill file), and once the sink answers every line arrives exactly once, in order. The sink is a fake
// scheduler: what is tested is the shipper's side of the AppendLogs contract.
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LogShipper, type LogShipperOptions } from '../../agent/log-shipper.js';
import type { ShippedLine } from '../../agent/lines.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'ty-shipper-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake scheduler: refuses while `down` (or for the first `failFirst` calls), else keeps what it gets. */
class FakeSink {
  down = false;
  failFirst = 0;
  permanentFor = new Set<number>(); // first seqs of batches refused for good
  failTimes = new Map<number, number>(); // first seq of a batch -> tries of it that fail (the scheduler away for it alone)
  stopAfter = Infinity;
  calls = 0;
  failures = 0;
  received: ShippedLine[] = [];
  batches: number[] = [];
  async append(lines: ShippedLine[]): Promise<{ stop: boolean }> {
    this.calls++;
    await sleep(1);
    if (this.down || this.failures < this.failFirst) {
      this.failures++;
      throw Object.assign(new Error('14 UNAVAILABLE: scheduler unreachable'), { code: 14 });
    }
    if (this.permanentFor.has(lines[0]!.seq)) throw Object.assign(new Error('3 INVALID_ARGUMENT'), { code: 3 });
    const fails = this.failTimes.get(lines[0]!.seq) ?? 0;
    if (fails > 0) {
      this.failTimes.set(lines[0]!.seq, fails - 1);
      throw Object.assign(new Error('14 UNAVAILABLE: scheduler unreachable'), { code: 14 });
    }
    // Idempotent on seq, as the scheduler's ON CONFLICT DO NOTHING: a repeat would show up as a gap/dupe below.
    this.received.push(...lines.map((l) => ({ ...l })));
    this.batches.push(lines.length);
    return { stop: this.received.length >= this.stopAfter };
  }
}

function shipper(sink: FakeSink, o: Partial<LogShipperOptions> = {}, signal = new AbortController().signal) {
  return new LogShipper({
    sink, spillFile: path.join(tmp(), 'spill.jsonl'), signal, onStop: () => {}, baseMs: 20, capMs: 200, batchDelayMs: 5,
    isRetryable: (err) => (err as { code?: number }).code === 14, ...o,
  });
}

function assertInOrderOnce(t: Test, got: ShippedLine[], n: number, text: (i: number) => string): void {
  t.equal(got.length, n, `${n} lines delivered`);
  let ok = true;
  for (let i = 0; i < n; i++) {
    if (got[i]?.seq !== i + 1 || got[i]?.text !== text(i + 1)) { ok = false; t.fail(`line ${i + 1}: got seq ${got[i]?.seq} "${got[i]?.text?.slice(0, 40)}"`); break; }
  }
  t.ok(ok, 'every line once, in seq order, with its text');
}

t.test('a sink that fails a few times: every line once and in order, batches of at most 500', async (t) => {
  const sink = new FakeSink();
  sink.failFirst = 3;
  const s = shipper(sink);
  for (let i = 1; i <= 1234; i++) s.line('stdout', `line ${i}`);
  t.equal(await s.flush(), true, 'flush says everything is acknowledged');
  assertInOrderOnce(t, sink.received, 1234, (i) => `line ${i}`);
  t.ok(sink.batches.every((b) => b <= 500), `batches ${sink.batches.join(',')}`);
  t.equal(s.ackedSeq, 1234);
  t.equal(sink.failures, 3);
});

t.test('the scheduler away for a long while: sends are bounded by the backoff, not thousands a second', async (t) => {
  const sink = new FakeSink();
  sink.down = true;
  const s = shipper(sink, { baseMs: 50, capMs: 400 });
  const writer = setInterval(() => { for (let i = 0; i < 50; i++) s.line('stdout', 'x'); }, 10);
  await sleep(3000);
  clearInterval(writer);
  // 50, 100, 200, 400, 400, ... ms (±50 %): about 10 tries in 3 s; a spinning loop makes thousands.
  t.ok(sink.calls <= 25, `${sink.calls} sends in 3 s`);
  t.ok(sink.calls >= 3, 'it does keep trying');
  sink.down = false;
  t.equal(await s.flush(), true);
  assertInOrderOnce(t, sink.received, s.lastSeq, () => 'x');
});

t.test('memory stays bounded while the scheduler is away: lines past the bound wait on disk, then all arrive', async (t) => {
  const sink = new FakeSink();
  sink.down = true;
  const dir = tmp();
  const spillFile = path.join(dir, 'spill.jsonl');
  const s = shipper(sink, { spillFile, maxMemoryBytes: 1024 * 1024, capMs: 100 });
  const text = (i: number) => `${i} `.padEnd(1000, 'y');
  gc();
  const before = process.memoryUsage().heapUsed;
  const n = 150_000; // 150 MB of text: far more than the bound
  for (let i = 1; i <= n; i++) {
    s.line('stdout', text(i));
    if (i % 10_000 === 0) await sleep(1); // as a real child's output arrives: in chunks, between events
  }
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  t.ok(grown < 40 * 1024 * 1024, `heap grew ${Math.round(grown / 1048576)} MiB for 150 MB of lines`);
  const st = s.stats();
  t.ok(st.memoryBytes <= 1024 * 1024, `in memory: ${st.memoryBytes} bytes (${st.memoryLines} lines)`);
  t.ok(st.spilledBytes > 100 * 1024 * 1024, `on disk: ${st.spilledBytes} bytes`);
  t.ok(existsSync(spillFile), 'the spill file exists');
  sink.down = false;
  t.equal(await s.flush(), true);
  assertInOrderOnce(t, sink.received, n, text);
  t.equal(s.stats().spilledBytes, 0, 'the spill is read back to the end');
  s.close();
  t.notOk(existsSync(spillFile), 'close removes the spill file');
});

t.test('lines given while the spill is being read back keep their order', async (t) => {
  const sink = new FakeSink();
  sink.down = true;
  const s = shipper(sink, { maxMemoryBytes: 64 * 1024 });
  let i = 0;
  for (; i < 3000;) s.line('stderr', `a${++i}`);
  sink.down = false;
  const more = (async () => { for (let k = 0; k < 50; k++) { for (let j = 0; j < 100; j++) s.line('stderr', `a${++i}`); await sleep(2); } })();
  await more;
  t.equal(await s.flush(), true);
  assertInOrderOnce(t, sink.received, 8000, (k) => `a${k}`);
});

t.test('once the agent gives up (its signal), flush answers false at once and nothing more is sent', async (t) => {
  const sink = new FakeSink();
  sink.down = true;
  const ac = new AbortController();
  const s = shipper(sink, {}, ac.signal);
  s.line('system', 'the end');
  await sleep(200);
  const started = Date.now();
  const flushed = s.flush();
  ac.abort();
  t.equal(await flushed, false, 'not shipped, and it says so');
  t.ok(Date.now() - started < 500, 'without waiting out a backoff');
  const calls = sink.calls;
  await sleep(300);
  t.ok(sink.calls <= calls + 1, `no more sends after giving up (${sink.calls - calls})`);
});

t.test('an already given-up shipper does not spin on flush (the old loop called itself at once)', async (t) => {
  const sink = new FakeSink();
  sink.down = true;
  const s = shipper(sink, {}, AbortSignal.abort());
  for (let i = 0; i < 10; i++) s.line('stdout', `l${i}`);
  const r = await Promise.race([s.flush(), sleep(2000).then(() => 'hung' as const)]);
  t.equal(r, false);
  t.ok(sink.calls <= 1, `${sink.calls} sends`);
});

t.test('a permanent refusal drops that batch and the rest still go; stop=true calls onStop', async (t) => {
  const sink = new FakeSink();
  sink.permanentFor.add(1);
  sink.stopAfter = 1;
  let stops = 0;
  const warnings: string[] = [];
  const s = shipper(sink, { onStop: () => { stops++; }, onWarn: (m) => warnings.push(m) });
  for (let i = 1; i <= 10; i++) s.line('stdout', `p${i}`);
  t.equal(await s.flush(), true);
  s.line('stdout', 'after');
  t.equal(await s.flush(), true);
  t.same(sink.received.map((l) => l.text), ['after'], 'the refused batch is not retried; later lines go');
  t.ok(warnings.some((w) => /refused; dropped/.test(w)), 'the drop is said');
  t.equal(stops, 1, 'onStop when the scheduler says the attempt is no longer current');
});

t.test('a batch answered but not stored (the attempt no longer current) is dropped and said so, once', async (t) => {
  const warnings: string[] = [];
  let stops = 0;
  const sink = { calls: 0, async append() { this.calls++; return { stop: true, taken: false }; } };
  const s = shipper(sink as unknown as FakeSink, { onStop: () => { stops++; }, onWarn: (m) => warnings.push(m) });
  for (let i = 1; i <= 3; i++) s.line('stdout', `p${i}`);
  t.equal(await s.flush(), true, 'flush ends: no later try could store them');
  t.equal(sink.calls, 1, 'not sent again');
  for (let i = 4; i <= 1200; i++) s.line('stdout', `p${i}`);
  t.equal(await s.flush(), true);
  t.equal(sink.calls, 1, 'nor are the lines after them (three batches\' worth), which would not be stored either');
  t.same(warnings.filter((w) => /not stored/.test(w)), ['log lines from 1 not stored: the scheduler no longer holds this attempt as current (it ended or was taken back); they and any later lines of it are dropped'], 'the drop is said once, from which line');
  t.equal(stops, 1, 'and the attempt is told to stop');
  const quiet: string[] = [];
  const ok = shipper(new FakeSink(), { onWarn: (m) => quiet.push(m) });
  ok.line('stdout', 'x');
  t.equal(await ok.flush(), true);
  t.same(quiet, [], 'a sink that does not say (taken absent) drops nothing and says nothing');
});

t.test('takeRest hands the unshipped lines to the end report, after the batch in flight, or says to flush', async (t) => {
  const sink = new FakeSink();
  const s = shipper(sink, { batchDelayMs: 1000 });
  t.teardown(() => s.close());
  s.line('stdout', 'one');
  await s.flush();
  t.same(sink.received.map((l) => l.text), ['one']);
  s.line('stdout', 'two');
  s.line('system', 'three');
  const rest = await s.takeRest();
  t.same(rest?.map((l) => [l.seq, l.stream, l.text]), [[2, 'stdout', 'two'], [3, 'system', 'three']], 'the lines not sent, in order, with their seqs');
  t.equal(sink.calls, 1, 'no batch went out for them');
  t.equal(s.ackedSeq, 3, 'they count as handed over');
  t.same(await s.flush(), true, 'nothing is left to flush');
  await sleep(30);
  t.equal(sink.calls, 1, 'and nothing is sent later');

  // A batch in flight when the report comes: it lands first, and the rest is what came after it.
  const slow = new FakeSink();
  const s2 = shipper(slow, { batchDelayMs: 1 });
  t.teardown(() => s2.close());
  slow.failFirst = 1; // the first try fails and is retried 20 ms later: in flight meanwhile
  s2.line('stdout', 'a');
  await sleep(5);
  s2.line('stdout', 'b');
  const rest2 = await s2.takeRest();
  const sent = slow.received.map((l) => l.seq);
  t.ok(sent.includes(1), 'the batch in flight landed before');
  t.same([...sent, ...(rest2 ?? []).map((l) => l.seq)], [1, 2], 'sent and taken: each line once, in order');
});

t.test('lines takeRest gave out, whose end report was refused for good, are sent on their own, in order, once', async (t) => {
  const sink = new FakeSink();
  const s = shipper(sink, { batchDelayMs: 1000 });
  t.teardown(() => s.close());
  s.line('stdout', 'one');
  await s.flush();
  s.line('stdout', 'two');
  s.line('stderr', 'three');
  const rest = await s.takeRest();
  t.equal(rest?.length, 2);
  sink.failFirst = sink.failures + 2; // the scheduler away for two tries: retried
  t.equal(await s.sendTaken(rest!, new AbortController().signal), true, 'taken');
  t.same(sink.received.map((l) => [l.seq, l.text]), [[1, 'one'], [2, 'two'], [3, 'three']], 'every line once, in order');

  // A line given meanwhile goes after them, though they are still being retried when it comes.
  const ordered = new FakeSink();
  const s3 = shipper(ordered, { batchDelayMs: 1 });
  t.teardown(() => s3.close());
  s3.line('stdout', 'a');
  s3.line('stdout', 'b');
  const rest3 = await s3.takeRest();
  ordered.failTimes.set(1, 3); // the taken lines' batch is retried; a batch of 'c' alone would go at once
  const sending = s3.sendTaken(rest3!, new AbortController().signal);
  s3.line('system', 'c');
  await sending;
  t.equal(await s3.flush(), true);
  t.same(ordered.received.map((l) => l.text), ['a', 'b', 'c'], 'in seq order');

  // Refused for good in turn: said, and not retried forever.
  const warns: string[] = [];
  const s2 = shipper(sink, { onWarn: (m) => warns.push(m) });
  t.teardown(() => s2.close());
  sink.permanentFor.add(1);
  s2.line('stdout', 'x');
  const rest2 = await s2.takeRest();
  t.equal(await s2.sendTaken(rest2!, new AbortController().signal), false, 'not taken');
  t.match(warns.join('\n'), /log lines 1\.\.1 refused; dropped/);
});

t.test('takeRest refuses (null) when lines wait in the spill file: they are flushed as batches', async (t) => {
  const sink = new FakeSink();
  sink.down = true;
  const s = shipper(sink, { maxMemoryBytes: 2000 });
  t.teardown(() => s.close());
  for (let i = 1; i <= 40; i++) s.line('stdout', `line ${i}`);
  await sleep(10);
  sink.down = false;
  t.equal(await s.takeRest(), null, 'some lines are on disk: not handed over');
  t.equal(await s.flush(), true);
  assertInOrderOnce(t, sink.received, 40, (i) => `line ${i}`);
});
