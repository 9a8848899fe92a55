// shared/deadline.ts: a deadline combined with another signal still fires after a garbage collection, and
// after() waits a delay longer than setTimeout holds (2^31 - 1 ms) in steps instead of firing it at 1 ms.
// `AbortSignal.any([s, AbortSignal.timeout(ms)])` did not on Node 20 (nodejs/node#57736): the venv lock's
// test waited its 30 s out whenever a collection came first, and the agent's claim and release reports
// were bounded the same way.
import t from 'tap';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, deadline, MAX_TIMER_MS } from '../../shared/deadline.js';

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Whether `make()`'s signal aborts a 3 s sleep after a collection, and with which error's name. */
async function abortsAfterGc(make: () => AbortSignal): Promise<string> {
  const keepAlive = setTimeout(() => {}, 5000);
  const outcome = sleep(3000, undefined, { signal: make() }).then(() => 'slept', (err: Error) => err.name);
  await sleep(20);
  gc();
  const r = await outcome;
  clearTimeout(keepAlive);
  return r;
}

t.test('a deadline beside a long-lived signal aborts in time though a collection came first', async (t) => {
  const agentLife = new AbortController();
  const reasons: unknown[] = [];
  for (let i = 0; i < 5; i++) {
    const s = deadline(150, agentLife.signal);
    s.addEventListener('abort', () => reasons.push(s.reason), { once: true });
    t.equal(await abortsAfterGc(() => s), 'AbortError', `try ${i}: the sleep was cut off, not slept out`);
  }
  t.equal(reasons.length, 5);
  t.ok(reasons.every((r) => r instanceof DOMException && r.name === 'TimeoutError'), 'the reason is a TimeoutError, as AbortSignal.timeout gives');
});

t.test('the other signal still aborts it first, with its own reason', async (t) => {
  const ac = new AbortController();
  const s = deadline(10_000, ac.signal);
  ac.abort(new Error('agent stopping'));
  t.ok(s.aborted);
  t.equal((s.reason as Error).message, 'agent stopping');
});

t.test('alone, it is a timeout', async (t) => {
  t.equal(await abortsAfterGc(() => deadline(100)), 'AbortError');
});

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('past what setTimeout holds, nothing fires early', async (t) => {
  let fired = 0;
  const a = after(MAX_TIMER_MS + 1000, () => { fired++; });
  const s = deadline(30 * 86400 * 1000);
  await pause(150);
  t.equal(fired, 0, 'after() waits');
  t.notOk(s.aborted, 'a 30-day deadline is not over');
  a.cancel();
});

t.test('in steps: fires once the whole delay has passed, never before; a cancel between steps holds', async (t) => {
  const t0 = Date.now();
  const fired = await new Promise<number>((resolve) => { after(130, () => resolve(Date.now() - t0), { stepMs: 40 }); });
  t.ok(fired >= 129, `fired after ${fired} ms of 130 (four steps)`);
  let late = false;
  const c = after(200, () => { late = true; }, { stepMs: 50 });
  await pause(120); // two steps in
  c.cancel();
  await pause(150);
  t.notOk(late, 'cancelled between steps: it never fires');
});
