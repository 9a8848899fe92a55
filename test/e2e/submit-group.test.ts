// SubmitRun's refusals that must come before any query: clear, naming the field, and nothing made.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy } from '../helpers/packages.js';

const codeOf = (e: unknown) => (e as { code?: string }).code;

// Postgres text holds no NUL byte: such a request used to reach a query and fail there, INTERNAL; in a
// group it would have failed every call of the group.
t.test('NUL bytes in a key, a selector or a GPU model: INVALID_ARGUMENT, naming the field', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', 'p']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const api = s.api();
  t.teardown(() => api.close());
  for (const [what, req, message] of [
    ['idempotency key', { idempotency_key: 'k\0' }, /idempotency_key contains a NUL byte/],
    ['selector', { resources: { selector: { zone: 'a\0' } } }, /resources\.selector: label "zone" contains a NUL byte/],
    ['GPU model', { resources: { gpu_model: 'H\u0000100' } }, /resources\.gpu_model contains a NUL byte/],
  ] as const) {
    const e = await api.submitRun({ package: 'p', dataset: 'd', ...req }).catch((err: unknown) => err as Error);
    t.equal(codeOf(e), 'INVALID_ARGUMENT', `a NUL in the ${what}`);
    t.match((e as Error).message, message, 'says which field');
  }
  t.same(await s.query('SELECT count(*)::int AS n FROM runs'), [{ n: 0 }], 'nothing made');
});
