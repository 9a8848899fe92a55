// shared/deadline.ts: a deadline combined with another signal still fires after a garbage collection.
// `AbortSignal.any([s, AbortSignal.timeout(ms)])` did not on Node 20 (nodejs/node#57736): the venv lock's
// test waited its 30 s out whenever a collection came first, and the agent's claim and release reports
// were bounded the same way.
import t from 'tap';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setTimeout as sleep } from 'node:timers/promises';
import { deadline } from '../../shared/deadline.js';

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
