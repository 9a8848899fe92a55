// The one retry helper (shared/retry.ts): delays that grow, are capped and jittered; a permanent error
// or a fired signal stops it at once; spent retries say how many tries were made.
import t from 'tap';
import { backoffDelay, retry, RetriesExhausted } from '../../shared/retry.js';

t.test('delays double from baseMs and stop growing at capMs', async (t) => {
  const o = { baseMs: 100, capMs: 1000, jitter: 0, random: () => 0.5 };
  t.same([1, 2, 3, 4, 5, 6, 60].map((n) => backoffDelay(n, o)), [100, 200, 400, 800, 1000, 1000, 1000]);
  t.equal(backoffDelay(5000, o), 1000, 'no overflow to Infinity or NaN far out');
});

t.test('jitter spreads each delay within ±jitter', async (t) => {
  const o = { baseMs: 1000, capMs: 1000, jitter: 0.25 };
  t.equal(backoffDelay(1, { ...o, random: () => 0 }), 750);
  t.ok(Math.abs(backoffDelay(1, { ...o, random: () => 0.999999 }) - 1250) < 0.01);
  const seen = new Set(Array.from({ length: 50 }, () => Math.round(backoffDelay(3, o))));
  t.ok(seen.size > 10, 'delays differ from one another');
  for (const d of seen) t.ok(d >= 750 && d <= 1250, `${d} within 750..1250`);
});

t.test('retries with the delays it announces, then succeeds', async (t) => {
  const delays: number[] = [];
  let tries = 0;
  const started = Date.now();
  const v = await retry(async () => { if (++tries < 4) throw new Error('flaky'); return 'ok'; }, {
    retries: 10, baseMs: 20, capMs: 50, jitter: 0, onRetry: (_e, n, ms) => delays.push(n, ms),
  });
  t.equal(v, 'ok');
  t.equal(tries, 4);
  t.same(delays, [1, 20, 2, 40, 3, 50], 'retry numbers and capped delays');
  t.ok(Date.now() - started >= 100, 'it really waited');
});

t.test('a permanent error is thrown as it is, after one try', async (t) => {
  let tries = 0;
  const permanent = Object.assign(new Error('no such key'), { code: 'NoSuchKey' });
  await t.rejects(retry(async () => { tries++; throw permanent; }, {
    retries: Infinity, baseMs: 10, capMs: 10, isRetryable: (e) => (e as { code?: string }).code !== 'NoSuchKey',
  }), permanent);
  t.equal(tries, 1);
});

t.test('spent retries throw RetriesExhausted with the last error and the number of tries', async (t) => {
  let tries = 0;
  const err = await retry(async () => { tries++; throw new Error(`fail ${tries}`); }, { retries: 2, baseMs: 1, capMs: 1 }).catch((e: unknown) => e);
  t.ok(err instanceof RetriesExhausted);
  t.equal((err as RetriesExhausted).tries, 3);
  t.equal(((err as RetriesExhausted).cause as Error).message, 'fail 3');
  t.equal(tries, 3);
});

t.test('Infinity retries go on until the signal fires, which stops the wait at once', async (t) => {
  const ac = new AbortController();
  let tries = 0;
  const started = Date.now();
  setTimeout(() => ac.abort(new Error('stopping')), 300);
  await t.rejects(retry(async () => { tries++; throw new Error('down'); }, { retries: Infinity, baseMs: 100, capMs: 60_000, signal: ac.signal }), { message: 'stopping' });
  const took = Date.now() - started;
  t.ok(took < 1000, `stopped within the wait (${took} ms), not after the next delay`);
  t.ok(tries >= 2 && tries <= 4, `tries bounded by the backoff (${tries})`);
});

t.test('an already fired signal makes no try at all', async (t) => {
  let tries = 0;
  await t.rejects(retry(async () => { tries++; }, { retries: 3, baseMs: 1, capMs: 1, signal: AbortSignal.abort(new Error('gone')) }), { message: 'gone' });
  t.equal(tries, 0);
});

// Issue 20: a try that never settles (a store that accepted the connection and never answers) held its
// caller past an abort, so a phase's deadline could not end the attempt.
t.test('a try that never settles ends when the signal fires', async (t) => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('deadline')), 50);
  let tries = 0;
  await t.rejects(retry(() => { tries++; return new Promise<never>(() => {}); }, { retries: 3, baseMs: 1, capMs: 1, signal: ac.signal }), { message: 'deadline' });
  t.equal(tries, 1, 'one try, abandoned');
});
