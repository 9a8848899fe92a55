// SubmitRuns (issue 11, sweeps): many runs in one call, each with its own idempotency key; all created in
// one transaction or none, the refusal naming the run's index; the same rules as SubmitRun.
import t from 'tap';
import { Stack } from '../helpers/stack.js';
import { pushQuick } from '../helpers/packages.js';

const codeOf = (e: unknown) => (e as { code?: string }).code;

t.test('a sweep in one call: all or nothing, idempotent per run', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await pushQuick(s);
  const api = s.api();
  t.teardown(() => api.close());
  const sweep = [0.1, 0.01, 0.001].map((lr) => ({ package: 'p', dataset: 'd', env: { LR: String(lr) }, idempotency_key: `sweep-lr-${lr}` }));
  const first = await api.submitRuns({ runs: sweep });
  t.equal(first.runs.length, 3, 'three runs');
  t.same(first.runs.map((r) => r.env.LR), ['0.1', '0.01', '0.001'], 'in the order asked');
  t.equal(new Set(first.runs.map((r) => r.id)).size, 3, 'distinct runs');
  const again = await api.submitRuns({ runs: sweep });
  t.same(again.runs.map((r) => r.id), first.runs.map((r) => r.id), 'the same keys return the same runs');
  const count = async () => Number((await s.query('SELECT count(*)::int AS n FROM runs'))[0]!.n);
  t.equal(await count(), 3);

  const bad = await api.submitRuns({ runs: [{ package: 'p', dataset: 'd' }, { package: 'nope', dataset: 'd' }, { package: 'p', dataset: 'd' }] }).catch((e: unknown) => e);
  t.equal(codeOf(bad), 'NOT_FOUND', 'a refused run refuses the batch');
  t.match((bad as Error).message, /runs\[1\]: package "nope" not found/, 'naming its index and why');
  t.equal(await count(), 3, 'and none of the batch was created');
  const envBad = await api.submitRuns({ runs: [{ package: 'p', dataset: 'd' }, { package: 'p', dataset: 'd', env: { LD_PRELOAD: 'x' } }] }).catch((e: unknown) => e);
  t.equal(codeOf(envBad), 'INVALID_ARGUMENT');
  t.match((envBad as Error).message, /runs\[1\]: environment variable LD_PRELOAD is reserved/);
  const none = await api.submitRuns({ runs: [] }).catch((e: unknown) => e);
  t.match((none as Error).message, /give at least one run/, 'an empty batch is refused');
  const many = await api.submitRuns({ runs: Array.from({ length: 1001 }, () => ({ package: 'p', dataset: 'd' })) }).catch((e: unknown) => e);
  t.match((many as Error).message, /at most 1000 runs in one call, got 1001/, 'so is one over the limit');
  t.equal(await count(), 3, 'nothing was created by any refused batch');

  const reader = (await api.createToken({ project: 'default', role: 'reader', name: 'r', expires_in_seconds: 3600 })).token;
  const asReader = s.api(reader);
  t.teardown(() => asReader.close());
  const denied = await asReader.submitRuns({ runs: [{ package: 'p', dataset: 'd' }] }).catch((e: unknown) => e);
  t.equal(codeOf(denied), 'PERMISSION_DENIED', 'a reader may not submit a batch either');
  t.equal(await count(), 3);
});
