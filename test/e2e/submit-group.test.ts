// SubmitRun under load (issue 11): calls in flight together are checked and committed together
// (scheduler/runs/submit-group.ts), and each still gets its own answer: its own run, or its own clear
// refusal with nothing made; the same idempotency key gives one run; events and secrets go with each run.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { pushQuick, quickTrainPy } from '../helpers/packages.js';
import type { SubmitRunRequest } from '../../shared/proto.js';

const codeOf = (e: unknown) => (e as { code?: string }).code;

t.test('SubmitRun calls in flight together: each its own run or its own refusal', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await pushQuick(s);
  t.equal((await s.cli(['projects', 'set', 'default', '--max-priority', '5'])).code, 0);
  const reader = (await s.cliJson(['tokens', 'create', '--project', 'default', '--role', 'reader'])).token as string;
  const api = s.api();
  const asReader = s.api(reader);
  t.teardown(() => { api.close(); asReader.close(); });

  const good = Array.from({ length: 30 }, (_, i): SubmitRunRequest => ({ package: 'p', dataset: 'd', env: { I: String(i) }, secrets: { TOKEN: `secret-${i}` } }));
  const bad: [string, SubmitRunRequest, string, RegExp][] = [
    ['an unknown package', { package: 'nope', dataset: 'd' }, 'NOT_FOUND', /package "nope" not found/],
    ['a reserved variable', { package: 'p', dataset: 'd', env: { LD_PRELOAD: 'x' } }, 'INVALID_ARGUMENT', /LD_PRELOAD is reserved/],
    ['a priority over the cap', { package: 'p', dataset: 'd', priority: 9 }, 'PERMISSION_DENIED', /priority 9 is above project "default"'s cap of 5/],
    ['a missing sub-folder', { package: 'p', dataset: 'd/missing' }, 'NOT_FOUND', /has no subfolder "missing"/],
    ['an unknown version', { package: 'p', dataset: 'd', version: '7.0' }, 'NOT_FOUND', /has no version 7\.0 \(it has 1\.0\)/],
    ['a NUL in the idempotency key', { package: 'p', dataset: 'd', idempotency_key: 'a\0b' }, 'INVALID_ARGUMENT', /idempotency_key contains a NUL byte/],
  ];
  const same = Array.from({ length: 5 }, (): SubmitRunRequest => ({ package: 'p', dataset: 'd', idempotency_key: 'one-order' }));
  // All at once, interleaved, so groups mix good, refused and repeated calls.
  const calls: Promise<unknown>[] = [];
  for (let i = 0; i < good.length; i++) {
    calls.push(api.submitRun(good[i]!));
    if (i < bad.length) calls.push(api.submitRun(bad[i]![1]));
    if (i < same.length) calls.push(api.submitRun(same[i]!));
    if (i === 3) calls.push(asReader.submitRun({ package: 'p', dataset: 'd' }));
  }
  const settled = await Promise.allSettled(calls);
  const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value as { id: string; status: string; env: Record<string, string>; secret_names: string[] }] : []));
  const refused = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));

  const goodRuns = ok.filter((r) => r.env.I !== undefined);
  t.equal(goodRuns.length, 30, 'every good call made its run');
  t.same([...new Set(goodRuns.map((r) => r.env.I))].sort(), good.map((g) => g.env!.I).sort(), 'each with its own request');
  t.equal(new Set(goodRuns.map((r) => r.id)).size, 30, 'distinct runs');
  t.ok(goodRuns.every((r) => r.status === 'Scheduled' && r.secret_names.join() === 'TOKEN'), 'answered with the run as made');
  const stored = await s.query<{ run_id: string; value: string }>('SELECT run_id, value FROM run_secrets');
  const secretOf = new Map(stored.map((x) => [x.run_id, x.value]));
  t.ok(goodRuns.every((r) => secretOf.get(r.id) === `secret-${r.env.I}`), 'each run holds its own secret');

  const keyed = ok.filter((r) => r.env.I === undefined);
  t.equal(keyed.length, 5, 'every call with the same key was answered');
  t.equal(new Set(keyed.map((r) => r.id)).size, 1, 'with one run');
  t.same(await s.query('SELECT count(*)::int AS n FROM runs WHERE idempotency_key = $1', ['one-order']), [{ n: 1 }], 'one row for the key');

  t.equal(refused.length, bad.length + 1, 'every bad call was refused');
  for (const [what, , code, message] of bad) {
    const e = refused.find((x) => message.test(x.message));
    t.ok(e, `${what}: refused, saying why`);
    t.equal(codeOf(e), code, `${what}: ${code}`);
  }
  const r = refused.find((x) => /a reader token only reads/.test(x.message));
  t.equal(codeOf(r), 'PERMISSION_DENIED', 'a reader\'s call in the same burst is refused');

  t.same(await s.query('SELECT count(*)::int AS n FROM runs'), [{ n: 31 }], 'the refused calls made nothing');
  t.same(await s.query(`SELECT count(*)::int AS n FROM run_events WHERE detail = 'submitted'`), [{ n: 31 }], 'each run has its first event');
  t.same(await s.query(`SELECT count(*)::int AS n FROM events WHERE kind = 'run.submitted'`), [{ n: 31 }], 'and its line in the ML log');
});

// Issue 19: a key names a run within its project only. On main the key was global: B was refused
// PERMISSION_DENIED, which told B that some other project had used it.
t.test('an idempotency key another project used: each project gets its own run, and learns nothing of the other', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const token = async (project: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', 'member'])).token as string;
  const [tokA, tokB] = [await token('alpha'), await token('beta')];
  const [a, b] = [s.api(tokA), s.api(tokB)];
  t.teardown(() => { a.close(); b.close(); });
  for (const [tok, p] of [[tokA, 'alpha'], [tokB, 'beta']] as const) {
    t.equal((await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', `pkg-${p}`, '--token', tok])).code, 0);
    t.equal((await s.cli(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', `data-${p}`, '--token', tok])).code, 0);
  }
  // In flight together, and then one after the other: each project's call makes (or retries) its own run.
  const [ra, rb] = await Promise.all([
    a.submitRun({ package: 'pkg-alpha', dataset: 'data-alpha', idempotency_key: 'shared-key' }),
    b.submitRun({ package: 'pkg-beta', dataset: 'data-beta', idempotency_key: 'shared-key' }),
  ]);
  t.not(ra.id, rb.id, 'two runs');
  t.match([ra.project, ra.package], ['alpha', 'pkg-alpha'], 'A\'s run is A\'s');
  t.match([rb.project, rb.package], ['beta', 'pkg-beta'], 'B\'s run is B\'s');
  const [ra2, rb2] = [await a.submitRun({ package: 'pkg-alpha', dataset: 'data-alpha', idempotency_key: 'shared-key' }), await b.submitRun({ package: 'pkg-beta', dataset: 'data-beta', idempotency_key: 'shared-key' })];
  t.equal(ra2.id, ra.id, 'A retrying gets its run back');
  t.equal(rb2.id, rb.id, 'B retrying gets its own run back, not A\'s');
  // A third project, after both: a new run of its own; nothing says the key was used before.
  const tokC = await token('gamma');
  t.equal((await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', 'pkg-gamma', '--token', tokC])).code, 0);
  t.equal((await s.cli(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'data-gamma', '--token', tokC])).code, 0);
  const c = s.api(tokC);
  t.teardown(() => c.close());
  const rc = await c.submitRun({ package: 'pkg-gamma', dataset: 'data-gamma', idempotency_key: 'shared-key' });
  t.not(rc.id, ra.id, 'C gets its own run too');
  t.equal(rc.project, 'gamma');
  t.same(await s.query('SELECT project, count(*)::int AS n FROM runs GROUP BY project ORDER BY project'),
    [{ project: 'alpha', n: 1 }, { project: 'beta', n: 1 }, { project: 'gamma', n: 1 }], 'one run per project for the key');
});

// Postgres text holds no NUL byte: such a request used to reach a query and fail there, INTERNAL; in a
// group it would have failed every call of the group.
t.test('NUL bytes in a key, a selector or a GPU model: INVALID_ARGUMENT, naming the field', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await pushQuick(s);
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
