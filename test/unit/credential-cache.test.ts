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
  t.same(scopes[0], { bucket: 'trainyard', readObjects: [`packages/p/${'a'.repeat(64)}/package.zip`], readPrefixes: ['datasets/d/'], writePrefix: 'runs/run_aaaaaaaaaaaaaa/attempt-1/' }, 'scoped to the attempt');
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
