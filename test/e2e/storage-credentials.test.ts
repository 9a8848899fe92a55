// Issue 8, storage: agents hold no storage keys. ClaimAttempt hands the claiming agent STS credentials
// whose session policy allows one attempt: read its package zip and dataset folder, write its attempt
// prefix. Through the real scheduler (as the non-root MinIO user scripts/services.sh made) and real MinIO,
// a scripted agent claims a run and tries its credentials on everything else; the scheduler's own user is
// not MinIO's root either. RenewStorage answers only while the attempt is current, its read-only keys
// (for a pull of many files) read what the attempt reads and write nothing.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as Minio from 'minio';
import { status } from '@grpc/grpc-js';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { issueAttemptCredentials, sessionPolicy } from '../../scheduler/storage/attempt-credentials.js';
import { zipDir } from '../../shared/zip.js';
import { PART_BYTES, uploadFile } from '../../shared/storage.js';

const quick = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';
type Creds = { access_key: string; secret_key: string; session_token: string; expires_at_ms: string };
const codeOf = (e: unknown) => (e as { code?: string | number } | null)?.code;

function clientFor(s: Stack, c: Creds): Minio.Client {
  const u = new URL(s.minioEndpoint);
  // A 5 MiB part size: minio-js's own putObject of 6 MiB is then a multipart upload that lists uploads first.
  return new Minio.Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey: c.access_key, secretKey: c.secret_key, sessionToken: c.session_token, region: 'us-east-1', partSize: 5 * 1024 * 1024 });
}
async function read(m: Minio.Client, bucket: string, key: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await m.getObject(bucket, key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}
async function list(m: Minio.Client, bucket: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of m.listObjectsV2(bucket, prefix, true) as AsyncIterable<{ name: string }>) out.push(o.name);
  return out;
}

t.test('an attempt\'s credentials reach its package, its data and its prefix, and nothing else', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const pushed = await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'mine']);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick + '# other\n' }), '--name', 'victim']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'train/a.csv': 'mine\n', 'test/b.csv': 'held out\n' }), '--name', 'd']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'c.csv': 'another team\n' }), '--name', 'other']);
  const agent = await FakeAgent.start(s, 'one');
  t.teardown(() => agent.close());
  const run = await s.cliJson(['run', 'train', '--package', 'mine', '--dataset', 'd/train']);
  const d = await agent.nextDispatch();
  t.equal(d.run_id, run.id);
  const creds = d.storage as Creds;
  t.ok(creds?.access_key && creds.secret_key && creds.session_token, 'the claim carries temporary credentials (with a session token)');
  t.not(creds.access_key, process.env.TRAINYARD_MINIO_ACCESS_KEY, 'not the scheduler\'s own keys');
  t.ok(Number(creds.expires_at_ms) > Date.now() + 10 * 60_000, 'valid for a while (the scheduler\'s setting, at least 15 minutes)');
  t.match(d.package_sha256, /^[0-9a-f]{64}$/, 'and the package\'s SHA-256');
  t.equal(d.package_sha256, pushed.sha256, 'the one the push registered');

  const m = clientFor(s, creds);
  const [victimKey] = (await s.objects('packages/victim/'));
  const before = await s.minio.statObject(s.bucket, victimKey!);

  // Allowed: exactly this attempt's inputs and outputs.
  t.ok((await read(m, s.bucket, String(d.package_object_key))).length > 0, 'reads its package zip');
  t.same(await list(m, s.bucket, String(d.dataset_prefix)), ['datasets/d/train/a.csv'], 'lists its dataset folder');
  t.equal(await read(m, s.bucket, 'datasets/d/train/a.csv'), 'mine\n', 'reads its data');
  await m.putObject(s.bucket, `${d.output_prefix}artifacts/x.txt`, Buffer.from('out'));
  // Larger than a part, the way the agent uploads (shared/storage.ts): in parts, by its own upload id.
  const bigFile = path.join(tempDir(), 'big.bin');
  writeFileSync(bigFile, Buffer.alloc(PART_BYTES + 1024 * 1024, 1));
  await uploadFile(m, s.bucket, `${d.output_prefix}big.bin`, bigFile, { retries: 0 });
  t.equal((await s.minio.statObject(s.bucket, `${d.output_prefix}big.bin`)).size, PART_BYTES + 1024 * 1024, 'writes under its prefix, a multipart upload (more than one part) too');

  // Denied: everything else (AccessDenied from MinIO itself).
  const denied = async (what: string, op: () => Promise<unknown>) => {
    const err = await op().then(() => null, (e: unknown) => e);
    t.equal(codeOf(err), 'AccessDenied', `denied: ${what}`);
  };
  await denied('another package', () => read(m, s.bucket, victimKey!));
  await denied('another folder of its own dataset', () => read(m, s.bucket, 'datasets/d/test/b.csv'));
  await denied('listing that folder', () => list(m, s.bucket, 'datasets/d/test/'));
  await denied('another dataset', () => read(m, s.bucket, 'datasets/other/c.csv'));
  await denied('listing the datasets', () => list(m, s.bucket, 'datasets/'));
  await denied('listing the bucket', () => list(m, s.bucket, ''));
  await denied('writing under packages/', () => m.putObject(s.bucket, 'packages/mine/planted/package.zip', Buffer.from('x')));
  await denied('overwriting another package', () => m.putObject(s.bucket, victimKey!, Buffer.from('x')));
  await denied('deleting another package', () => m.removeObject(s.bucket, victimKey!));
  await denied('writing another attempt', () => m.putObject(s.bucket, `runs/${run.id}/attempt-2/package.zip`, Buffer.from('x')));
  await denied('writing another run', () => m.putObject(s.bucket, 'runs/run_zzzzzzzzzzzzzz/attempt-1/package.zip', Buffer.from('x')));
  await denied('writing a dataset', () => m.putObject(s.bucket, 'datasets/d/train/a.csv', Buffer.from('poisoned')));
  await denied('a multipart upload elsewhere', () => uploadFile(m, s.bucket, 'datasets/d/big.bin', bigFile, { retries: 0 }).catch((e: unknown) => { throw (e as { cause?: unknown }).cause ?? e; }));
  // In-progress uploads are named by key: another project's (begun by the scheduler's own user) stay unseen.
  const theirs = 'packages/victim/in-progress/package.zip';
  const uploadId = await s.minio.initiateNewMultipartUpload(s.bucket, theirs, {});
  t.teardown(() => s.minio.abortMultipartUpload(s.bucket, theirs, uploadId).catch(() => {}));
  await denied('listing the bucket\'s multipart uploads', () => m.listIncompleteUploadsQuery(s.bucket, '', '', '', ''));
  await denied('listing another package\'s multipart uploads', () => m.listIncompleteUploadsQuery(s.bucket, 'packages/', '', '', ''));
  await denied('minio-js\'s own multipart put (it lists uploads first)', () => m.putObject(s.bucket, `${d.output_prefix}big2.bin`, Buffer.alloc(6 * 1024 * 1024, 1)));
  // The scheduler's own files in its prefix: written when the run commits, never by the attempt.
  await denied('writing its _results.json', () => m.putObject(s.bucket, `${d.output_prefix}_results.json`, Buffer.from('{}')));
  await denied('writing its _lineage.json', () => m.putObject(s.bucket, `${d.output_prefix}_lineage.json`, Buffer.from('{}')));
  await denied('making a bucket', () => m.makeBucket(`${s.bucket}-x`, 'us-east-1'));
  // Issue 22: its checkpoints' folder (d.checkpoint_prefix) is its own to write and to replace; no other
  // attempt's or run's, and it reads none but the one its claim resumes from (none here).
  t.equal(d.checkpoint_prefix, `runs/${run.id}/checkpoints/attempt-1/`, 'the dispatch names its checkpoints\' folder');
  await m.putObject(s.bucket, `${d.checkpoint_prefix}000001/state.json`, Buffer.from('{}'));
  await m.putObject(s.bucket, `${d.checkpoint_prefix}latest.json`, Buffer.from('{}'));
  await m.removeObject(s.bucket, `${d.checkpoint_prefix}000001/state.json`);
  t.pass('writes, and removes, its own checkpoints');
  await s.minio.putObject(s.bucket, 'runs/run_zzzzzzzzzzzzzz/checkpoints/attempt-1/000001/state.json', Buffer.from('theirs'));
  await denied('writing another attempt\'s checkpoints', () => m.putObject(s.bucket, `runs/${run.id}/checkpoints/attempt-2/latest.json`, Buffer.from('{}')));
  await denied('writing another run\'s checkpoint pointer', () => m.putObject(s.bucket, 'runs/run_zzzzzzzzzzzzzz/checkpoints/attempt-1/latest.json', Buffer.from('{}')));
  await denied('reading another run\'s checkpoint', () => read(m, s.bucket, 'runs/run_zzzzzzzzzzzzzz/checkpoints/attempt-1/000001/state.json'));
  await denied('deleting another run\'s checkpoint', () => m.removeObject(s.bucket, 'runs/run_zzzzzzzzzzzzzz/checkpoints/attempt-1/000001/state.json'));
  await denied('deleting its own outputs', () => m.removeObject(s.bucket, `${d.output_prefix}artifacts/x.txt`));
  const after = await s.minio.statObject(s.bucket, victimKey!);
  t.equal(after.etag, before.etag, 'the victim package is unchanged');
  t.equal(await read(s.minio, s.bucket, 'datasets/d/train/a.csv'), 'mine\n', 'the data is unchanged');

  // RenewStorage: for the attempt on its agent only, and only while it is current.
  const fresh = await agent.call<Creds>('RenewStorage', { run_id: run.id, lease: d.lease });
  t.ok(fresh.session_token && fresh.access_key !== creds.access_key, 'renewal gives new credentials');
  // Read-only keys (asked for a pull of many files, agent/data-cache.ts): the attempt's reads, nothing else.
  const ro = clientFor(s, await agent.call<Creds>('RenewStorage', { run_id: run.id, lease: d.lease, read_only: true }));
  t.equal(await read(ro, s.bucket, 'datasets/d/train/a.csv'), 'mine\n', 'read-only keys read its data');
  t.same(await list(ro, s.bucket, String(d.dataset_prefix)), ['datasets/d/train/a.csv'], 'and list its dataset folder');
  t.ok((await read(ro, s.bucket, String(d.package_object_key))).length > 0, 'and read its package zip');
  await denied('read-only keys: writing under its prefix', () => ro.putObject(s.bucket, `${d.output_prefix}artifacts/y.txt`, Buffer.from('out')));
  await denied('read-only keys: writing its checkpoints', () => ro.putObject(s.bucket, `${d.checkpoint_prefix}latest.json`, Buffer.from('{}')));
  await denied('read-only keys: another folder of its dataset', () => read(ro, s.bucket, 'datasets/d/test/b.csv'));
  await denied('read-only keys: another dataset', () => read(ro, s.bucket, 'datasets/other/c.csv'));
  await denied('read-only keys: writing a dataset', () => ro.putObject(s.bucket, 'datasets/d/train/a.csv', Buffer.from('poisoned')));
  const other = await FakeAgent.start(s, 'two');
  t.teardown(() => other.close());
  const stolen = await other.call('RenewStorage', { run_id: run.id, lease: d.lease }).catch((e: unknown) => e);
  t.equal(codeOf(stolen), status.ABORTED, 'another agent with the right lease gets none');
  const stolenRo = await other.call('RenewStorage', { run_id: run.id, lease: d.lease, read_only: true }).catch((e: unknown) => e);
  t.equal(codeOf(stolenRo), status.ABORTED, 'nor read-only ones');
  await agent.call('FinishAttempt', { run_id: run.id, lease: d.lease, outcome: 'failed', reason: 'test ends it' });
  const late = await agent.call('RenewStorage', { run_id: run.id, lease: d.lease }).catch((e: unknown) => e);
  t.equal(codeOf(late), status.ABORTED, 'none once the attempt has ended');
  const lateRo = await agent.call('RenewStorage', { run_id: run.id, lease: d.lease, read_only: true }).catch((e: unknown) => e);
  t.equal(codeOf(lateRo), status.ABORTED, 'read-only ones neither');
});

t.test('the scheduler\'s MinIO user (scripts/services.sh) is not root: no admin API, no other bucket', async (t) => {
  const access = process.env.TRAINYARD_MINIO_ACCESS_KEY;
  const secret = process.env.TRAINYARD_MINIO_SECRET_KEY;
  t.ok(access && secret, 'test.sh exports the user services.sh made (minio-users.env)');
  if (!access || !secret) return;
  t.not(access, 'minioadmin', 'a user of its own, not the root user');
  const mc = process.env.TRAINYARD_MC_BIN ?? path.join(os.homedir(), '.cache', 'trainyard', 'bin', 'mc');
  const u = new URL(process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000');
  const asScheduler = spawnSync(mc, ['admin', 'user', 'list', 'ty'], {
    env: { PATH: process.env.PATH, MC_CONFIG_DIR: tempDir(), MC_HOST_ty: `http://${access}:${secret}@${u.host}` }, encoding: 'utf8',
  });
  t.not(asScheduler.status, 0, 'the admin API refuses it');
  t.match(asScheduler.stderr + asScheduler.stdout, /denied|not allowed/i, `with access denied (${(asScheduler.stderr || asScheduler.stdout).trim().slice(0, 160)})`);
  const m = new Minio.Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey: access, secretKey: secret, region: 'us-east-1' });
  const err = await m.makeBucket(`elsewhere-${process.pid}`, 'us-east-1').then(() => null, (e: unknown) => e);
  t.equal(codeOf(err), 'AccessDenied', 'a bucket outside trainyard* is refused');
});

t.test('the session policy stays within MinIO\'s limit, or the claim says why', async (t) => {
  const scope = { bucket: 'trainyard', readObjects: [`packages/p/${'a'.repeat(64)}/package.zip`], readPrefixes: ['datasets/d/sub/'], writePrefix: 'runs/run_0123456789abcd/attempt-1/' };
  const policy = JSON.parse(sessionPolicy(scope));
  t.ok(policy.Statement.length >= 3, 'a policy of several statements');
  t.throws(() => sessionPolicy({ ...scope, readPrefixes: [`datasets/${'x'.repeat(2100)}/`] }), /2048/, 'too long: refused naming the limit');
  t.throws(() => sessionPolicy({ ...scope, writePrefix: 'runs/x' }), /not a folder/, 'a prefix that is not a folder is refused');
});

t.test('a run that evaluates on the dataset it trains on gets its keys: each folder named once (MinIO refuses a duplicate)', async (t) => {
  // A full pipeline's evaluation dataset may be its dataset: the scope names the folder twice. MinIO's STS
  // refused such a policy ("duplicate value found"), and the run's claim failed at every placement, for ever.
  const scope = { bucket: 'trainyard', readObjects: ['packages/p/x/package.zip'], readPrefixes: ['datasets/d/', 'datasets/d/'], writePrefix: 'runs/run_0123456789abcd/attempt-1/' };
  const policy = JSON.parse(sessionPolicy(scope)) as { Statement: { Resource: string[]; Condition?: { StringLike: { 's3:prefix': string[] } } }[] };
  t.same(policy.Statement[0]!.Resource, ['arn:aws:s3:::trainyard/packages/p/x/package.zip', 'arn:aws:s3:::trainyard/datasets/d/*'], 'the folder once among what may be read');
  t.same(policy.Statement.find((x) => x.Condition)?.Condition?.StringLike['s3:prefix'], ['datasets/d/*'], 'and among what may be listed');
  const keys = await issueAttemptCredentials({
    minioEndpoint: process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000', accessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', secretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '', durationSeconds: 900,
  }, scope);
  t.ok(keys.access_key && keys.session_token, 'MinIO issues the keys');
});

t.test('a package zip replaced in the bucket is refused by the agent before anything is extracted or run', async (t) => {
  const s = await Stack.create(t);
  const canary = path.join(tempDir(), 'ran');
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'p']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const [key] = await s.objects('packages/p/');
  // Someone with write access to the bucket swaps in other code under the registered key.
  const evil = path.join(tempDir(), 'evil.zip');
  await zipDir(writeTree(tempDir(), { 'train.py': `open(${JSON.stringify(canary)}, "w").write("ran")\n${quick}` }), evil);
  await s.minio.fPutObject(s.bucket, key!, evil, {});
  const run = await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'd']);
  const end = await s.waitForStatus(run.id, ['Successful', 'Failed', 'Killed'], 120_000);
  t.equal(end.status, 'Failed', 'the run fails');
  t.match(end.failure_reason, /has SHA-256 [0-9a-f]{64}, not the registered [0-9a-f]{64}; nothing was run/, `saying why (${end.failure_reason})`);
  t.notOk(existsSync(canary), 'the replaced code never ran');
});
