// --max-pending-uploads (agent/pending-uploads.ts): at most that many finished attempts upload with their
// GPUs given back; the next waits (keeping its GPUs) until one ends; a stopped attempt stops waiting; 0
// means none ever release early.
import t from 'tap';
import { PendingUploads } from '../../agent/pending-uploads.js';

t.test('places are bounded, handed on in order, and given back once', async (t) => {
  const p = new PendingUploads(2);
  const never = new AbortController().signal;
  const a = await p.take(never);
  const b = await p.take(never);
  t.equal(p.taken, 2, 'two taken');
  let got: string | null = null;
  const c = p.take(never).then((x) => { got = 'c'; return x; });
  await new Promise((r) => setImmediate(r));
  t.equal(got, null, 'a third waits while both are taken');
  a!.release();
  a!.release(); // twice: counted once
  const cp = await c;
  t.equal(got, 'c', 'it gets the place given back');
  t.equal(p.taken, 2, 'still two: a second release of the same place frees nothing');
  b!.release();
  cp!.release();
  t.equal(p.taken, 0, 'all given back');
});

t.test('a stopped attempt stops waiting; 0 places: none ever', async (t) => {
  const p = new PendingUploads(1);
  const first = await p.take(new AbortController().signal);
  const stop = new AbortController();
  const waiting = p.take(stop.signal);
  stop.abort();
  t.equal(await waiting, null, 'aborted while waiting: no place (it keeps its GPUs until its end)');
  first!.release();
  t.equal(p.taken, 0, 'the aborted waiter took nothing');
  t.ok(await p.take(new AbortController().signal), 'the next one gets the place');
  t.equal(await new PendingUploads(0).take(new AbortController().signal), null, '--max-pending-uploads 0: no place');
});
