// NATS's transport and credentials end to end (shared/nats.ts), each against a nats-server of the test's
// own: over TLS (`tls {}`, certificates made here by openssl, the usual two users) and in operator mode
// (JWTs made here, users with the permissions scripts/services.sh gives). In both, a scheduler and an agent
// run a training to Successful; a dispatch reaches an agent only by NATS, so that proves the doorbell
// went over that transport. What must be refused is refused, each with its own error.
import t from 'tap';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeys, type NatsConnection } from 'nats';
import { Stack, root, tempDir, type CliResult } from '../helpers/stack.js';
import { pushQuick } from '../helpers/packages.js';
import { makePki } from '../helpers/pki.js';

/** Resolves with the exit code, or rejects when the process is still there after `ms` (a hang is a failure). */
function exitWithin(exited: Promise<number | null>, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms); });
  return Promise.race([exited, late]).finally(() => clearTimeout(timer));
}

const lastLines = (text: string) => text.trim().split('\n').filter((l) => l.trim()).slice(-3).join(' | ');

/**
 * Connects in the clear, reads the server's INFO, sends `text` and collects what comes back until the server
 * closes the connection or two seconds pass.
 */
function speakPlaintext(port: number, text: string): Promise<{ info: Record<string, unknown>; after: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    let info: Record<string, unknown> | null = null;
    const done = (closed: boolean) => { clearTimeout(timer); sock.destroy(); resolve({ info: info ?? {}, after: buf, closed }); };
    const timer = setTimeout(() => done(false), 2000);
    sock.on('error', (err) => { if (!info) { clearTimeout(timer); reject(err); } });
    sock.on('close', () => done(true));
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n');
      if (info || end < 0) return;
      info = JSON.parse(buf.slice(0, end).replace(/^INFO /, '')) as Record<string, unknown>;
      buf = buf.slice(end + 2);
      sock.write(text);
    });
  });
}

/** `trainyard ARGS` with only these variables (and PATH, HOME): its exit code and output, or a failure after 30 s. */
function trainyard(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'bin', 'trainyard.js'), ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = ''; let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`trainyard ${args.join(' ')} was still running after 30 s: ${stderr}`)); }, 30_000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

// NATS JWTs, as github.com/nats-io/jwt/v2 writes them: base64url(header).base64url(claims).base64url(the
// issuer's ed25519 signature of the two), the claims' jti being the base32 SHA-512/256 of the standard
// claims without it. nats exports nkeys.js untyped; these are the calls used here.
interface KeyPair { getPublicKey(): string; getSeed(): Uint8Array; sign(data: Uint8Array): Uint8Array }
const nk = nkeys as { createOperator(): KeyPair; createAccount(): KeyPair; createUser(): KeyPair };

function base32(bytes: Uint8Array): string {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0; let value = 0; let out = '';
  for (const b of bytes) {
    value = (value << 8) | b; bits += 8;
    while (bits >= 5) { out += abc[(value >>> (bits - 5)) & 31]; bits -= 5; }
  }
  return bits > 0 ? out + abc[(value << (5 - bits)) & 31] : out;
}

function encodeJwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const std = { iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), name, sub: subject };
  const jti = base32(createHash('sha512-256').update(JSON.stringify(std)).digest());
  const signed = `${b64({ typ: 'JWT', alg: 'ed25519-nkey' })}.${b64({ jti, ...std, nats: { ...nats, version: 2 } })}`;
  return `${signed}.${Buffer.from(issuer.sign(new TextEncoder().encode(signed))).toString('base64url')}`;
}

const unlimited = { subs: -1, data: -1, payload: -1 };

/**
 * An operator with one account: `serverConf` is what nats.conf needs to trust them (the account preloaded
 * in a memory resolver), and user() writes a .creds file for a user of that account with these permissions.
 */
function operator(): { serverConf: string; user(name: string, perms: { pub: Record<string, string[]>; sub: Record<string, string[]> }): string } {
  const dir = tempDir('ty-nats-creds-');
  const op = nk.createOperator();
  const account = nk.createAccount();
  // The server's own account (JetStream, which the stack's servers run, needs one in operator mode).
  const system = nk.createAccount();
  const opJwt = encodeJwt(op, op.getPublicKey(), 'trainyard-test', { type: 'operator', system_account: system.getPublicKey() });
  const accountJwt = (a: KeyPair, name: string) => encodeJwt(op, a.getPublicKey(), name, {
    type: 'account', limits: { ...unlimited, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 },
  });
  return {
    serverConf: `operator: ${opJwt}\nsystem_account: ${system.getPublicKey()}\nresolver: MEMORY
resolver_preload: { ${account.getPublicKey()}: ${accountJwt(account, 'trainyard')}, ${system.getPublicKey()}: ${accountJwt(system, 'SYS')} }`,
    user(name, perms) {
      const u = nk.createUser();
      const jwt = encodeJwt(account, u.getPublicKey(), name, { type: 'user', ...perms, ...unlimited });
      const file = path.join(dir, `${name}.creds`);
      // The layout nsc writes (nats.js's credsAuthenticator reads the two fenced blocks).
      writeFileSync(file, `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.\n\n-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(u.getSeed())}\n------END USER NKEY SEED------\n\n*************************************************************\n`, { mode: 0o600 });
      return file;
    },
  };
}

/** Pushes the quick package and a dataset, trains it and waits: the run's final status. */
async function trainToEnd(s: Stack): Promise<string> {
  await pushQuick(s);
  const run = await s.cliJson(['run', 'train', '--package', 'p', '--dataset', 'd']);
  return String((await s.waitForStatus(run.id as string, ['Successful', 'Failed', 'Killed'], 120_000)).status);
}

t.test('over TLS: a run succeeds; no CA, the wrong CA or plaintext is refused', async (t) => {
  const pki = makePki();
  const s = await Stack.create(t, { agents: [], privateNats: { tls: { cert: pki.cert, key: pki.key } }, schedulerEnv: { TRAINYARD_NATS_CA: pki.ca } });
  t.match(s.natsUrl, /^tls:\/\/127\.0\.0\.1:\d+$/, 'the daemons are given a tls:// URL');
  const agent = await s.startAgent('tls-agent', { env: { TRAINYARD_NATS_CA: pki.ca } });
  t.equal(await trainToEnd(s), 'Successful', 'a run with the scheduler and agent on NATS over TLS is Successful');
  t.ok(agent.lines.some((l) => l.includes('"msg":"dispatch received"')), 'the agent got its dispatch (only NATS brings one)');

  const agentUser = s.natsUsers.agent!;
  const asAgent = { servers: s.natsUrl, user: agentUser.user, pass: agentUser.password, reconnect: false };
  const ok = await connect({ ...asAgent, tls: { caFile: pki.ca } });
  t.pass('a client with the CA connects (the control for what follows)');
  await ok.close();
  await t.rejects(connect(asAgent), /certificate/i, 'a client with only the system CAs is refused: the certificate is not trusted');

  // nats.js upgrades to TLS by itself whatever the URL says, so plaintext is spoken here by hand: the server
  // announces that TLS is required and drops a client that sends the protocol in the clear.
  const plain = await speakPlaintext(s.natsPort, `CONNECT ${JSON.stringify({ verbose: true, user: agentUser.user, pass: agentUser.password })}\r\nPING\r\n`);
  t.match(plain.info, { tls_required: true }, 'the server says TLS is required');
  t.notMatch(plain.after, /PONG|\+OK/, `a plaintext client gets no answer (${JSON.stringify(plain.after)})`);
  t.ok(plain.closed, 'and the server closes its connection');

  const wrong = await s.startAgent('wrong-ca', { env: { TRAINYARD_NATS_CA: pki.otherCa }, waitForRegistered: false, expectExit: 1 });
  t.equal(await exitWithin(wrong.exited, 30_000), 1, 'an agent trusting another CA exits 1');
  const log = s.logOf('wrong-ca');
  t.match(log, `error: NATS ${s.natsUrl}: cannot connect:`, `its error names NATS and where (${lastLines(log)})`);
  t.match(log, /cannot connect: [^\n]*certificate[^\n]*--nats-ca/, 'and says the certificate is not trusted, and what to check');
  t.notOk(wrong.lines.some((l) => l.includes('"msg":"registered"')), 'it never registered');
});

t.test('operator mode with .creds files: a run succeeds; the agent user may not publish; no creds is refused', async (t) => {
  const op = operator();
  const scheduler = op.user('trainyard-scheduler', { pub: { allow: ['>'] }, sub: { allow: ['*.kick', '*.run.*', '_INBOX.>'] } });
  const agentCreds = op.user('trainyard-agent', { pub: { deny: ['>'] }, sub: { allow: ['*.agent.*.dispatch', '*.agent.*.control'] } });
  const s = await Stack.create(t, { agents: [], privateNats: { auth: op.serverConf }, schedulerEnv: { TRAINYARD_NATS_CREDS: scheduler } });
  t.same(s.natsEnv('agent'), {}, 'the daemons are given no NATS user or password, only their creds');
  const agent = await s.startAgent('creds-agent', { env: { TRAINYARD_NATS_CREDS: agentCreds } });
  t.equal(await trainToEnd(s), 'Successful', 'a run with the scheduler and agent connected by .creds files is Successful');
  t.ok(agent.lines.some((l) => l.includes('"msg":"dispatch received"')), 'the agent got its dispatch (only NATS brings one)');

  const conns: NatsConnection[] = [];
  t.teardown(() => Promise.all(conns.map((c) => c.close())));
  const as = async (file: string) => { const c = await connect({ servers: s.natsUrl, reconnect: false, authenticator: credsAuthenticator(readFileSync(file)) }); conns.push(c); return c; };
  const subject = `${s.prefix}.agent.creds-agent.dispatch`;
  const listener = await as(agentCreds);
  const got: string[] = [];
  listener.subscribe(subject, { callback: (_err, m) => got.push(new TextDecoder().decode(m.data)) });
  await listener.flush();
  const forger = await as(agentCreds);
  const violations: string[] = [];
  void (async () => { for await (const st of forger.status()) if (st.type === 'error') violations.push(String(st.data)); })();
  forger.publish(subject, JSON.stringify({ run_id: 'run_bbbbbbbbbbbbbb', attempt: 1 }));
  await forger.flush();
  // The control: the scheduler's creds reach the same subscription (and the agent, which refuses the run).
  const ringer = await as(scheduler);
  ringer.publish(subject, JSON.stringify({ run_id: 'run_cccccccccccccc', attempt: 1 }));
  await ringer.flush();
  await agent.waitFor((l) => l.msg === 'dispatch refused' && l.run === 'run_cccccccccccccc', 20_000);
  await listener.flush();
  t.same(got.map((m) => (JSON.parse(m) as { run_id: string }).run_id), ['run_cccccccccccccc'], 'only the scheduler user\'s dispatch arrived');
  t.ok(violations.some((v) => /PERMISSIONS_VIOLATION/.test(v)), `the agent user's publish was a permissions violation (${violations.join('; ')})`);
  t.notOk(agent.lines.some((l) => l.includes('run_bbbbbbbbbbbbbb')), 'the agent never heard of the forged dispatch');

  await t.rejects(connect({ servers: s.natsUrl, reconnect: false }), { code: 'AUTHORIZATION_VIOLATION' }, 'a client without creds is refused');
  const stranger = operator().user('stranger', { pub: { allow: ['>'] }, sub: { allow: ['>'] } });
  await t.rejects(as(stranger), { code: 'AUTHORIZATION_VIOLATION' }, 'so is one whose creds another operator\'s account signed');
});

t.test('--nats-creds with --nats-user is refused at start-up', async (t) => {
  const creds = operator().user('u', { pub: { allow: ['>'] }, sub: { allow: ['>'] } });
  // Services that are not there: a daemon that got past its NATS settings fails otherwise (and touches nothing).
  const dir = tempDir();
  const nowhere = {
    TRAINYARD_DATABASE_URL: 'postgres://nobody:none@127.0.0.1:1/none', TRAINYARD_MINIO_ENDPOINT: 'http://127.0.0.1:1', TRAINYARD_NATS_URL: 'nats://127.0.0.1:1',
    TRAINYARD_SCHEDULER: '127.0.0.1:1', TRAINYARD_HTTP_LISTEN: '', TRAINYARD_TOKEN_FILE: path.join(dir, 'token'), TRAINYARD_WORK_DIR: path.join(dir, 'work'),
  };
  for (const daemon of ['scheduler', 'agent']) {
    const r = await trainyard([daemon, '--nats-creds', creds, '--nats-user', 'someone', '--nats-password', 'pw'], nowhere);
    t.equal(r.code, 2, `trainyard ${daemon} exits 2 (a usage error)`);
    t.match(r.stderr, /--nats-creds and --nats-user are alternatives; set one/, `and says why (${r.stderr.trim()})`);
  }
  t.notOk(existsSync(nowhere.TRAINYARD_WORK_DIR) || existsSync(nowhere.TRAINYARD_TOKEN_FILE), 'before either made anything (the agent\'s work dir, the scheduler\'s token file)');
});
