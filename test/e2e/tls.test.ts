// gRPC over TLS (shared/tls.ts), with certificates made here by openssl: a CA, a server certificate for
// 127.0.0.1 (SAN), client certificates. A run goes end to end over TLS; a client without the CA is refused
// with a clear error; with --tls-client-ca an agent (or CLI) without a client certificate is refused.
import t, { type Test } from 'tap';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Stack, tempDir, writeTree, type CliResult } from '../helpers/stack.js';
import { root } from '../helpers/stack.js';
import { makePki } from '../helpers/pki.js';

const trainPy = 'class Main:\n    def train(self, d):\n        print("trained over tls")\n    def save(self):\n        open("model.txt", "w").write("m")\n';

/** The CLI with TLS settings of its own (the stack's cli() dials plaintext). */
function cli(s: Stack, args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(root, 'bin', 'trainyard.js'), ...args, '--scheduler', s.schedulerAddress], { env: s.env(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = ''; let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const pki = makePki();

/** The stack's own client (test/helpers/stack.ts, in this process) dials with the TRAINYARD_TLS_* variables. */
function dialWith(t: Test, env: Record<string, string>): void {
  const keys = ['TRAINYARD_TLS_CA', 'TRAINYARD_TLS_CLIENT_CERT', 'TRAINYARD_TLS_CLIENT_KEY'];
  const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
  for (const k of keys) { if (env[k]) process.env[k] = env[k]; else delete process.env[k]; }
  t.teardown(() => { for (const k of keys) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; } });
}

t.test('a run end to end over TLS; a client without the CA is refused', async (t) => {
  dialWith(t, { TRAINYARD_TLS_CA: pki.ca });
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_TLS_CERT: pki.cert, TRAINYARD_TLS_KEY: pki.key } });
  const scheduler = s.daemons.find((d) => d.name === 'scheduler1')!;
  const listening = await scheduler.waitFor((l) => l.msg === 'listening');
  t.equal(listening.tls, true, 'the scheduler says it serves TLS');
  await s.startAgent('tls-agent', { env: { TRAINYARD_TLS_CA: pki.ca } });
  const tls = { TRAINYARD_TLS_CA: pki.ca };

  const pushed = await cli(s, ['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'quick', '--json'], tls);
  t.equal(pushed.code, 0, `package push over TLS (${pushed.stderr})`);
  t.notMatch(pushed.stderr, /DEP0123|Warning/, 'no warning about the IP address as TLS ServerName');
  const ds = await cli(s, ['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1\n' }), '--name', 'd', '--json'], tls);
  t.equal(ds.code, 0, `dataset push over TLS (${ds.stderr})`);
  const run = await cli(s, ['run', 'train', '--package', 'quick', '--dataset', 'd', '--wait', '--json'], tls);
  t.equal(run.code, 0, `run train --wait over TLS succeeds (${run.stderr})`);
  const id = (JSON.parse(run.stdout) as { id: string }).id;
  const row = await s.waitForStatus(id, ['Successful', 'Failed', 'Killed']);
  t.equal(row.status, 'Successful', 'the run is Successful');

  const plain = await cli(s, ['agents', '--json'], {});
  t.equal(plain.code, 1, 'a CLI without the CA exits 1');
  t.match(plain.stderr, new RegExp(`${s.schedulerAddress.replace(/\./g, '\\.')}.*TLS|TLS.*${s.schedulerAddress.replace(/\./g, '\\.')}`, 's'), `the error names the address and TLS (${plain.stderr.trim()})`);
  const wrong = await cli(s, ['agents', '--json'], { TRAINYARD_TLS_CA: pki.otherCa });
  t.equal(wrong.code, 1, 'a CLI trusting another CA exits 1');
  t.match(wrong.stderr, /TLS|certificate/i, `and says why (${wrong.stderr.trim()})`);
});

t.test('with --tls-client-ca, callers without a client certificate are refused', async (t) => {
  const mtls = { TRAINYARD_TLS_CA: pki.ca, TRAINYARD_TLS_CLIENT_CERT: pki.clientCert, TRAINYARD_TLS_CLIENT_KEY: pki.clientKey };
  dialWith(t, mtls);
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_TLS_CERT: pki.cert, TRAINYARD_TLS_KEY: pki.key, TRAINYARD_TLS_CLIENT_CA: pki.ca } });
  await s.startAgent('with-cert', { env: mtls });
  const bare = await s.startAgent('without-cert', { env: { TRAINYARD_TLS_CA: pki.ca }, waitForRegistered: false, expectExit: 'any' });
  await bare.waitFor((l) => l.msg === 'scheduler unreachable; retrying registration', 30_000);
  t.pass('the agent without a client certificate cannot register (it keeps retrying)');

  const agents = await cli(s, ['agents', '--json'], mtls);
  t.equal(agents.code, 0, `a CLI with a client certificate is served (${agents.stderr})`);
  const names = (JSON.parse(agents.stdout) as { name: string }[]).map((a) => a.name);
  t.same(names, ['with-cert'], 'only the agent with a certificate registered');
  const noCert = await cli(s, ['agents', '--json'], { TRAINYARD_TLS_CA: pki.ca });
  t.equal(noCert.code, 1, 'a CLI without a client certificate exits 1');
  t.notOk(bare.lines.some((l) => l.includes('"msg":"registered"')), 'the agent without a certificate never registered');
});
