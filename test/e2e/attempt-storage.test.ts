// Issue 19, storage: an attempt's credentials live on for up to their lifetime after the attempt ended.
// Nothing they can do then may change a registered version, what `package lineage` says, or what
// `run outputs` returns; and the scheduler registers a version by the SHA-256 MinIO verified (or that it
// hashed itself), never by the agent's word. A scripted agent (test/helpers/fake-agent.ts) claims a real
// run, uploads as the agent does, reports, and then attacks with the credentials the claim gave it.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import * as Minio from 'minio';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent, type FakeDispatch } from '../helpers/fake-agent.js';
import { PART_BYTES, uploadBuffer, uploadFile } from '../../shared/storage.js';
import { zipDir } from '../../shared/zip.js';

const quick = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';
type Creds = { access_key: string; secret_key: string; session_token: string };
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const codeOf = (e: unknown) => (e as { code?: string } | null)?.code;

function clientFor(s: Stack, c: Creds): Minio.Client {
  const u = new URL(s.minioEndpoint);
  return new Minio.Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey: c.access_key, secretKey: c.secret_key, sessionToken: c.session_token, region: 'us-east-1' });
}
async function read(m: Minio.Client, bucket: string, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await m.getObject(bucket, key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
/** Every file under dir, relative path → content. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = readFileSync(path.join(e.parentPath, e.name), 'utf8');
  }
  return out;
}

async function setUp(t: Test) {
  const s = await Stack.create(t, { agents: [] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'p']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const agent = await FakeAgent.start(s, 'scripted');
  t.teardown(() => agent.close());
  /** A run of `version`, claimed and Running, with the credentials its claim gave. */
  const attempt = async (version = '1.0'): Promise<{ d: FakeDispatch; m: Minio.Client }> => {
    await s.cliJson(['run', 'train', '--package', 'p', '--version', version, '--dataset', 'd']);
    const d = await agent.nextDispatch();
    for (const status of ['Packaging', 'Running']) await agent.call('ReportStatus', { run_id: d.run_id, lease: d.lease, status });
    return { d, m: clientFor(s, d.storage as Creds) };
  };
  const finish = (d: FakeDispatch, zip: { sha256: string; size: number }) => agent.call<{ status: string; output_version: string }>('FinishAttempt', {
    run_id: d.run_id, lease: d.lease, attempt: d.attempt, outcome: 'succeeded', reason: '', start_at: 1, end_at: 2, package_sha256: zip.sha256, package_size_bytes: zip.size,
  });
  const zipOf = async (code: string) => {
    const { buffer } = await zipDir(writeTree(tempDir(), { 'train.py': code }), path.join(tempDir(), 'package.zip'), () => false, { inMemoryUpTo: 1 << 20 });
    return buffer!;
  };
  return { s, agent, attempt, finish, zipOf };
}

t.test('after the run ended, its credentials change no version, no lineage and no output that is served', async (t) => {
  const { s, attempt, finish, zipOf } = await setUp(t);
  const { d, m } = await attempt();
  const zip = await zipOf(`${quick}# trained\n`);
  // As the agent uploads: the zip with its SHA-256 (MinIO checks it), then an artifact.
  await uploadBuffer(m, s.bucket, `${d.output_prefix}package.zip`, zip, { retries: 0 }, { sha256: sha256(zip) });
  await uploadBuffer(m, s.bucket, `${d.output_prefix}artifacts/model.txt`, Buffer.from('the real model'), { retries: 0 });
  t.same(await finish(d, { sha256: sha256(zip), size: zip.length }), { status: 'Successful', output_version: '1.1' });

  const outputsBefore = tempDir();
  await s.cliJson(['run', 'outputs', d.run_id, '--to', outputsBefore]);
  const before = tree(outputsBefore);
  t.same(Object.keys(before).sort(), ['_lineage.json', '_results.json', 'artifacts/model.txt', 'package.zip'], 'run outputs: what the attempt left, and the scheduler\'s two files');
  const lineageBefore = await s.cliJson(['package', 'lineage', 'p', '1.1']);
  const [version] = await s.query("SELECT object_key, sha256, size_bytes FROM package_versions WHERE package = 'p' AND major = 1 AND minor = 1");
  t.equal(version!.sha256, sha256(zip), 'the version is registered with the zip\'s digest');
  t.equal(version!.object_key, `packages/p/${sha256(zip)}/package.zip`, 'at a copy under packages/, which no attempt may write');
  t.not(version!.object_key.startsWith(d.output_prefix), true);

  // The attack: the attempt is over, its credentials are not.
  const forged = Buffer.from(JSON.stringify({ run_summary: { outputs: { version: '9.9' } }, forged: true }));
  const denied = async (what: string, key: string) => {
    const err = await m.putObject(s.bucket, key, forged).then(() => null, (e: unknown) => e);
    t.equal(codeOf(err), 'AccessDenied', `denied: overwriting ${what}`);
  };
  await denied('_results.json', `${d.output_prefix}_results.json`);
  await denied('_lineage.json', `${d.output_prefix}_lineage.json`);
  await denied('the registered copy', version!.object_key);
  const evil = await zipOf(`import os\nos.system("echo pwned")\n${quick}`);
  await m.putObject(s.bucket, `${d.output_prefix}package.zip`, evil);
  await m.putObject(s.bucket, `${d.output_prefix}artifacts/model.txt`, Buffer.from('forged model'));
  await m.putObject(s.bucket, `${d.output_prefix}artifacts/extra.txt`, Buffer.from('forged extra'));
  t.pass('its own package.zip and artifacts it can still overwrite, and add to');

  // What anyone reads afterwards is unchanged.
  t.same(await s.cliJson(['package', 'lineage', 'p', '1.1']), lineageBefore, 'package lineage is unchanged');
  t.equal(sha256(await read(s.minio, s.bucket, version!.object_key)), sha256(zip), 'the registered zip is the one uploaded');
  t.equal(await s.objectText(`${d.output_prefix}_results.json`), before['_results.json'], '_results.json is the scheduler\'s');
  t.equal(await s.objectText(`${d.output_prefix}_lineage.json`), before['_lineage.json'], '_lineage.json is the scheduler\'s');
  const outputsAfter = tempDir();
  const r = await s.cli(['run', 'outputs', d.run_id, '--to', outputsAfter]);
  t.not(r.code, 0, 'run outputs refuses a replaced output');
  t.match(r.stderr, /artifacts\/model\.txt" is not the object its attempt left/, `naming it (${r.stderr.trim().slice(0, 200)})`);
  const after = tree(outputsAfter);
  t.notOk(Object.values(after).some((v) => v.includes('forged')), 'nothing forged is served');
  t.notOk(existsSync(path.join(outputsAfter, 'artifacts', 'extra.txt')), 'an object added after the end is not an output');
  for (const [k, v] of Object.entries(after)) t.equal(v, before[k], `${k}: as before`);

  // A later run of the new version gets the registered zip, whatever sits in the old attempt's prefix.
  const next = await attempt('1.1');
  t.equal(next.d.package_object_key, version!.object_key, 'a later run of 1.1 is given the registered copy');
  t.equal(next.d.package_sha256, sha256(zip), 'and its digest');
  t.equal(sha256(await read(next.m, s.bucket, String(next.d.package_object_key))), sha256(zip), 'and reads the zip that was uploaded, not the overwrite');
});

t.test('a failed run\'s outputs are what its attempt left when it ended', async (t) => {
  const { s, agent, attempt } = await setUp(t);
  const { d, m } = await attempt();
  await uploadBuffer(m, s.bucket, `${d.output_prefix}artifacts/log.txt`, Buffer.from('what went wrong'), { retries: 0 });
  await agent.call('FinishAttempt', { run_id: d.run_id, lease: d.lease, attempt: d.attempt, outcome: 'failed', reason: 'boom' });
  t.equal((await s.waitForStatus(d.run_id, ['Failed'], 10_000)).status, 'Failed');
  await m.putObject(s.bucket, `${d.output_prefix}artifacts/log.txt`, Buffer.from('forged'));
  await m.putObject(s.bucket, `${d.output_prefix}artifacts/added.txt`, Buffer.from('forged'));
  const out = tempDir();
  const r = await s.cli(['run', 'outputs', d.run_id, '--to', out]);
  t.not(r.code, 0, 'the replaced file is refused');
  t.match(r.stderr, /artifacts\/log\.txt" is not the object its attempt left/);
  t.notOk(existsSync(path.join(out, 'artifacts', 'added.txt')), 'a file added after the end is not an output');
  t.notOk(Object.values(tree(out)).some((v) => v.includes('forged')), 'nothing forged is served');
});

t.test('a version is registered by the zip in the bucket, not by the digest the agent reports', async (t) => {
  const { s, attempt, finish, zipOf } = await setUp(t);
  const zip = await zipOf(`${quick}# v\n`);

  // A put whose bytes do not match the checksum sent with it is refused by MinIO itself.
  const { d, m } = await attempt();
  const wrongSum = await uploadBuffer(m, s.bucket, `${d.output_prefix}package.zip`, zip, { retries: 0 }, { sha256: sha256(Buffer.from('other')) }).then(() => null, (e: unknown) => e);
  t.match(String(wrongSum), /XAmzContentChecksumMismatch|checksum/i, 'MinIO refuses a zip that does not hash to the checksum sent with it');

  // The zip is there, the report names another digest: the run fails, no version.
  await uploadBuffer(m, s.bucket, `${d.output_prefix}package.zip`, zip, { retries: 0 }, { sha256: sha256(zip) });
  const lie = sha256(Buffer.from('what the agent says'));
  t.equal((await finish(d, { sha256: lie, size: zip.length })).status, 'Failed', 'a report with a digest that is not the zip\'s fails the run');
  const failed = await s.waitForStatus(d.run_id, ['Failed'], 10_000);
  t.match(failed.failure_reason, `has SHA-256 ${sha256(zip)}, not the ${lie} the agent reported; no version was registered`, failed.failure_reason);
  t.same(await s.query("SELECT minor FROM package_versions WHERE package = 'p' AND minor > 0"), [], 'no version registered');

  // Uploaded in parts (no checksum MinIO could keep): the scheduler hashes the zip itself.
  const big = path.join(tempDir(), 'big.zip');
  const bytes = Buffer.alloc(PART_BYTES + 4096, 7);
  writeFileSync(big, bytes);
  const e = await attempt();
  await uploadFile(e.m, s.bucket, `${e.d.output_prefix}package.zip`, big, { retries: 0 });
  t.equal((await finish(e.d, { sha256: lie, size: bytes.length })).status, 'Failed', 'a multipart zip with a wrong digest: Failed');
  const f = await attempt();
  await uploadFile(f.m, s.bucket, `${f.d.output_prefix}package.zip`, big, { retries: 0 });
  t.same(await finish(f.d, { sha256: sha256(bytes), size: bytes.length }), { status: 'Successful', output_version: '1.1' }, 'with the right one: registered');
  const [v] = await s.query("SELECT object_key, sha256 FROM package_versions WHERE package = 'p' AND minor = 1");
  t.same(v, { object_key: `packages/p/${sha256(bytes)}/package.zip`, sha256: sha256(bytes) });
});
