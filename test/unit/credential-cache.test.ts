// Storage credentials issued ahead of the claim (scheduler/storage/credential-cache.ts): a claim takes the
// prefetched ones once, for its own attempt only; a failed or missing prefetch is issued again at the claim.
import t from 'tap';
import { AttemptCredentials } from '../../scheduler/storage/credential-cache.js';
import type { AttemptScope } from '../../scheduler/storage/attempt-credentials.js';

const row = (id: string, lease: number) => ({
  id, lease, attempt: 1, package_object_key: `packages/p/${'a'.repeat(64)}/package.zip`, dataset: 'd', dataset_sub: '', eval_dataset: null, eval_dataset_sub: '',
});

t.test('prefetched once per attempt, issued again otherwise', async (t) => {
  const scopes: AttemptScope[] = [];
  let n = 0;
  let fail = false;
  const cache = new AttemptCredentials(async (scope) => {
    scopes.push(scope);
    n++;
    if (fail) throw new Error('STS down');
    return { access_key: `AK${n}`, secret_key: 'SK', session_token: 'ST', expires_at_ms: Date.now() + 900_000 };
  }, 'trainyard');
  cache.prefetch(row('run_aaaaaaaaaaaaaa', 7));
  t.equal(n, 1, 'placement starts issuing');
  t.same(scopes[0], { bucket: 'trainyard', readObjects: [`packages/p/${'a'.repeat(64)}/package.zip`], readPrefixes: ['datasets/d/'], writePrefix: 'runs/run_aaaaaaaaaaaaaa/attempt-1/', checkpointPrefix: 'runs/run_aaaaaaaaaaaaaa/checkpoints/attempt-1/' }, 'scoped to the attempt (and its checkpoints\' folder)');
  t.equal((await cache.forClaim(row('run_aaaaaaaaaaaaaa', 7))).access_key, 'AK1', 'the claim takes the prefetched credentials');
  t.equal(n, 1, 'without asking STS again');
  t.equal((await cache.forClaim(row('run_aaaaaaaaaaaaaa', 7))).access_key, 'AK2', 'taken once: a second claim gets new ones');
  cache.prefetch(row('run_bbbbbbbbbbbbbb', 8));
  t.equal((await cache.forClaim(row('run_bbbbbbbbbbbbbb', 9))).access_key, 'AK4', 'another lease (a newer attempt) does not get them');
  fail = true;
  cache.prefetch(row('run_cccccccccccccc', 1));
  fail = false;
  t.equal((await cache.forClaim(row('run_cccccccccccccc', 1))).access_key, 'AK6', 'a failed prefetch is issued again at the claim');
  fail = true;
  await t.rejects(cache.forClaim(row('run_dddddddddddddd', 1)), /STS down/, 'and a failure at the claim is the claim\'s error');
});

t.test('bounded: a burst of placements prefetches only what the limits allow, and the rest issue at their claim', async (t) => {
  let asked = 0;
  const answers: (() => void)[] = [];
  const cache = new AttemptCredentials(async () => {
    asked++;
    await new Promise<void>((res) => answers.push(res));
    return { access_key: `AK${asked}`, secret_key: 'SK', session_token: 'ST', expires_at_ms: Date.now() + 900_000 };
  }, 'trainyard', { maxInFlight: 2, maxEntries: 3, ttlMs: 50 });
  for (let i = 0; i < 10; i++) cache.prefetch(row(`run_${String(i).repeat(14)}`, i + 1));
  t.equal(asked, 2, 'ten placements at once start two STS calls, not ten');
  t.equal(cache.held, 2);
  answers.splice(0).forEach((a) => a());
  await new Promise((res) => setImmediate(res));
  cache.prefetch(row('run_aaaaaaaaaaaaaa', 20));
  t.equal(asked, 3, 'an answered call makes room for the next placement');
  cache.prefetch(row('run_bbbbbbbbbbbbbb', 21));
  t.equal(cache.held, 3, 'and entries stop at their cap');
  answers.splice(0).forEach((a) => a());
  await new Promise((res) => setImmediate(res));
  cache.prefetch(row('run_cccccccccccccc', 22));
  t.equal(asked, 3, 'entries at the cap (claims not come yet): no prefetch');
  await new Promise((res) => setTimeout(res, 60));
  cache.prefetch(row('run_dddddddddddddd', 23));
  t.equal(asked, 4, 'entries older than the TTL are dropped, which makes room');
  t.equal(cache.held, 1);
  const claim = cache.forClaim(row(`run_${'3'.repeat(14)}`, 4));
  answers.splice(0).forEach((a) => a());
  await new Promise((res) => setImmediate(res));
  answers.splice(0).forEach((a) => a());
  t.match((await claim).access_key, /^AK\d+$/, 'a placement that was not prefetched is issued at its claim');
  t.equal(asked, 5);
});

t.test('prefetched for another scope than the claim reads: not handed out', async (t) => {
  let n = 0;
  const cache = new AttemptCredentials(async () => ({ access_key: `AK${++n}`, secret_key: 'SK', session_token: 'ST', expires_at_ms: Date.now() + 900_000 }), 'trainyard');
  cache.prefetch({ ...row('run_aaaaaaaaaaaaaa', 7), dataset: 'other' });
  const got = await cache.forClaim(row('run_aaaaaaaaaaaaaa', 7));
  t.equal(got.access_key, 'AK2', 'the claim issues for the scope it read itself');
});

// Issue 20 (suspected, confirmed): prefetched credentials were pruned only once 64 were held, so keys for
// placements never claimed here stayed in memory for as long as the scheduler placed little.
t.test('prefetched credentials are not kept past their TTL, even when nothing else happens', async (t) => {
  const cache = new AttemptCredentials(async () => ({ access_key: 'AK', secret_key: 'SK', session_token: 'ST', expires_at_ms: Date.now() + 900_000 }), 'trainyard', { ttlMs: 100 });
  cache.prefetch(row('run_dddddddddddddd', 1));
  cache.prefetch(row('run_eeeeeeeeeeeeee', 2));
  t.equal(cache.held, 2, 'held while their claims may come');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(cache.held, 0, 'gone after the TTL with no further call');
});
