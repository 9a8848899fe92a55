// What an agent accepts (agent/claim.ts): a doorbell names only a run id of the right shape, and a claimed
// dispatch is refused unless every field fits this agent and the bucket layout.
import t from 'tap';
import { parseDoorbell, validateDispatch, DispatchRefused } from '../../agent/claim.js';
import type { Dispatch__Output } from '../../shared/proto.js';

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const runId = 'run_0123456789abcd';
const good: Dispatch__Output = {
  run_id: runId, lease: 7, attempt: 2, package: 'iris', version: '1.0', project: 'vision',
  package_object_key: `packages/iris/${'ab'.repeat(32)}/package.zip`, dataset: 'iris/train', dataset_prefix: 'datasets/iris/train/',
  env: { artifacts_directory: 'artifacts', save_training_data: 'false', GREETING: 'hi' }, gpu_indices: [1],
  timeout_seconds: 0, output_prefix: `runs/${runId}/attempt-2/`, bucket: 'b',
  package_sha256: 'cd'.repeat(32), secrets: { API_KEY: 'sekrit-value' },
  storage: { access_key: 'AK', secret_key: 'SK', session_token: 'ST', expires_at_ms: String(Date.now() + 3_600_000) as never },
};
const opts = { doorbell: { runId, attempt: 2 }, bucket: 'b', gpuIndices: [0, 1] };

t.test('doorbells', async (t) => {
  t.same(parseDoorbell(enc({ run_id: runId, attempt: 3 })), { runId, attempt: 3, packageSha256: '' });
  t.same(parseDoorbell(enc({ run_id: runId })), { runId, attempt: 0, packageSha256: '' }, 'the attempt is optional');
  const sha = 'ab'.repeat(32);
  t.same(parseDoorbell(enc({ run_id: runId, attempt: 1, package_sha256: sha })).packageSha256, sha, 'the package digest hint is kept');
  for (const hint of ['../x', 'AB'.repeat(32), 'ab'.repeat(31), 42, null]) {
    t.equal(parseDoorbell(enc({ run_id: runId, attempt: 1, package_sha256: hint })).packageSha256, '', `a hint that is not a digest is dropped: ${JSON.stringify(hint)}`);
  }
  for (const bad of [
    { run_id: '../../..' }, { run_id: 'run_../../../etc' }, { run_id: `${runId}/x` }, { run_id: 'run_0123456789ABCD' },
    { run_id: 42 }, { run_id: runId, attempt: -1 }, { run_id: runId, attempt: 1.5 }, { run_id: runId, attempt: '1; rm' }, null, [],
  ]) {
    t.throws(() => parseDoorbell(enc(bad)), DispatchRefused, `refused: ${JSON.stringify(bad)}`);
  }
  t.throws(() => parseDoorbell(new TextEncoder().encode('{nope')), DispatchRefused, 'unreadable JSON');
});

t.test('a well-formed dispatch passes, with its env compiled', async (t) => {
  const d = validateDispatch(good, opts);
  t.equal(d.run_id, runId);
  t.equal(d.lease, 7);
  t.same(d.gpu_indices, [1]);
  t.equal(d.env!.GREETING, 'hi');
  t.same(d.secrets, { API_KEY: 'sekrit-value' }, 'the secrets come through');
  t.equal(d.storage!.session_token, 'ST', 'and the attempt\'s storage credentials');
  const fromRun = validateDispatch({ ...good, package_object_key: 'runs/run_zzzzzzzzzzzzzz/attempt-1/package.zip' }, opts);
  t.equal(fromRun.package_object_key, 'runs/run_zzzzzzzzzzzzzz/attempt-1/package.zip', 'a version a run made');
  t.ok(validateDispatch({ ...good, dataset: 'iris', dataset_prefix: 'datasets/iris/' }, opts), 'a whole dataset');
  t.ok(validateDispatch(good, { ...opts, doorbell: { runId, attempt: 0 } }), 'a doorbell without an attempt');
  t.equal(validateDispatch({ ...good, dataset_generation: '12' as never }, opts).dataset_generation, 12, 'the dataset\'s generation, as a number');
  t.equal(validateDispatch(good, opts).dataset_generation, 0, 'none from a scheduler before generations: 0, list it');
});

t.test('each wrong field is refused, naming it', async (t) => {
  const cases: [string, Partial<Dispatch__Output>, RegExp][] = [
    ['run id with ../', { run_id: '../../..' }, /run_id/],
    ['another run than the one claimed', { run_id: 'run_zzzzzzzzzzzzzz', output_prefix: 'runs/run_zzzzzzzzzzzzzz/attempt-2/' }, /claimed/],
    ['another attempt than the doorbell', { attempt: 3, output_prefix: `runs/${runId}/attempt-3/` }, /attempt/],
    ['lease 0', { lease: 0 }, /lease/],
    ['another bucket', { bucket: 'other' }, /bucket/],
    ['package name with a slash', { package: '../x' }, /package/],
    ['version not MAJOR.MINOR', { version: '1.0/../..' }, /version/],
    ['package key of another package', { package_object_key: `packages/victim/${'ab'.repeat(32)}/package.zip` }, /package key/],
    ['package key outside packages/ and runs/', { package_object_key: 'datasets/iris/x.zip' }, /package key/],
    ['package key with ..', { package_object_key: `packages/iris/../victim/${'ab'.repeat(32)}/package.zip` }, /package key/],
    ['dataset prefix of another dataset', { dataset_prefix: 'datasets/secret/' }, /dataset prefix/],
    ['dataset prefix at the bucket root', { dataset_prefix: '' }, /dataset prefix/],
    ['dataset with ..', { dataset: 'iris/../secret', dataset_prefix: 'datasets/iris/../secret/' }, /\.\./],
    ['output prefix over a package', { output_prefix: 'packages/victim/' }, /output prefix/],
    ['output prefix of another attempt', { output_prefix: `runs/${runId}/attempt-1/` }, /output prefix/],
    ['output prefix without the slash', { output_prefix: `runs/${runId}/attempt-2` }, /output prefix/],
    ['a GPU this agent lacks', { gpu_indices: [5] }, /GPUs/],
    ['one GPU twice', { gpu_indices: [1, 1] }, /GPUs/],
    ['a reserved env name', { env: { LD_PRELOAD: '/tmp/x.so' } }, /reserved/],
    ['an absolute artifacts folder', { env: { artifacts_directory: '/etc' } }, /artifacts_directory/],
    ['a negative timeout', { timeout_seconds: -1 }, /timeout/],
    ['no package digest', { package_sha256: '' }, /package_sha256/],
    ['a package digest that is not one', { package_sha256: '../../etc/passwd' }, /package_sha256/],
    ['no storage credentials', { storage: null }, /storage credentials/],
    ['storage credentials without a session token', { storage: { ...good.storage!, session_token: '' } }, /storage credentials/],
    ['expired storage credentials', { storage: { ...good.storage!, expires_at_ms: String(Date.now() - 1000) as never } }, /expire/],
    ['a reserved secret name', { secrets: { LD_PRELOAD: 'x' } }, /reserved/],
    ['a secret named like an env variable', { secrets: { GREETING: 'hello' } }, /also given/],
    ['a negative dataset generation', { dataset_generation: -3 as never }, /dataset generation/],
    ['a dataset generation that is not a number', { dataset_generation: 'x' as never }, /dataset generation/],
  ];
  for (const [what, patch, re] of cases) {
    t.throws(() => validateDispatch({ ...good, ...patch }, opts), re, what);
  }
});

t.test('--accept-projects: a dispatch of another project is refused by the agent itself', async (t) => {
  const only = { ...opts, acceptProjects: ['alpha'] };
  t.ok(validateDispatch({ ...good, project: 'alpha' }, only), 'an accepted project\'s run passes');
  t.throws(() => validateDispatch({ ...good, project: 'beta' }, only), /project "beta" is not one this agent accepts \(--accept-projects alpha\)/, 'another project\'s is refused');
  t.throws(() => validateDispatch({ ...good, project: '' }, only), /is not one this agent accepts/, 'and one that names none');
  t.ok(validateDispatch({ ...good, project: 'beta' }, { ...opts, acceptProjects: [] }), 'without the flag every project\'s passes');
});
