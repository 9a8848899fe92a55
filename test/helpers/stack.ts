// A real Trainyard for a test file: its own database (created on the shared Postgres), bucket and NATS
// subject prefix, a scheduler and agents as real processes, and the CLI run as a user would run it.
// Everything is torn down when the test file ends, and teardown checks that no process was left behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, createWriteStream, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../shared/proto.js';
import { customAlphabet } from 'nanoid';
import pg from 'pg';
import * as Minio from 'minio';
import type { Test } from 'tap';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { Api } from '../../cli/client.js';

// Found by walking up to proto/, so this works from test/ (tap) and from dist/ (the soak test).
export const root = projectRoot();
const bin = path.join(root, 'bin', 'trainyard.js');
const id = customAlphabet('abcdefghijklmnopqrstuvwxyz0123456789', 10);
/**
 * The services' admin role (CREATEDB, CREATEROLE, no superuser), which makes and drops a database per test
 * file: scripts/test.sh exports it from services.sh's postgres.env, whose password is made there; without
 * test.sh (`npm run soak`), it is read from that file.
 */
const adminUrl = (): string => {
  let url = process.env.TRAINYARD_TEST_DATABASE_URL;
  if (!url) {
    const file = path.join(process.env.TRAINYARD_SERVICES_DIR ?? path.join(os.homedir(), '.local', 'share', 'trainyard', 'services'), 'postgres.env');
    try { url = /^TRAINYARD_TEST_DATABASE_URL=(.+)$/m.exec(readFileSync(file, 'utf8'))?.[1]; } catch { /* said below */ }
    if (!url) throw new Error(`TRAINYARD_TEST_DATABASE_URL is not set and ${file} does not give it: run npm run services first`);
  }
  return url;
};
export const minioEndpoint = process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000';
const natsUrl = process.env.TRAINYARD_NATS_URL ?? 'nats://127.0.0.1:4222';
/** NATS users of the shared server (scripts/test.sh exports them from services.sh's nats-users.env). */
export interface NatsUser { user: string; password: string }
const sharedNatsUsers = (): { scheduler: NatsUser | null; agent: NatsUser | null } => {
  const e = process.env;
  const u = (user?: string, password?: string) => (user ? { user, password: password ?? '' } : null);
  return { scheduler: u(e.TRAINYARD_NATS_SCHEDULER_USER, e.TRAINYARD_NATS_SCHEDULER_PASSWORD), agent: u(e.TRAINYARD_NATS_AGENT_USER, e.TRAINYARD_NATS_AGENT_PASSWORD) };
};
// Venvs are shared across test files: the same requirements build once per machine.
const venvDir = path.join(os.homedir(), '.cache', 'trainyard', 'test-venvs');

export interface CliResult { code: number; stdout: string; stderr: string }

/**
 * How a test expects a daemon to end. 'clean' (the default): it is still running when the stack is torn
 * down and exits 0 on the stop signals, or it exits 0 on its own (a drained agent). 'any': the test
 * expects it to fail or takes care of it itself, so nothing is checked. A number: it must exit with that
 * code (an agent refused at start-up). kill9() marks a daemon 'any': the test chose how it ended.
 */
export type ExpectedExit = 'clean' | 'any' | number;

export class Daemon {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  #expected: ExpectedExit = 'clean';
  /** Set when stop() had to SIGKILL it after its grace: a hung shutdown the test must not hide. */
  #forced: string | null = null;
  constructor(readonly name: string, readonly child: ChildProcess, readonly logFile: string, o: { expectExit?: ExpectedExit } = {}) {
    if (o.expectExit !== undefined) this.#expected = o.expectExit;
    // Appended: a daemon restarted under the same name (a fault test, the soak) keeps its earlier log.
    const log = createWriteStream(logFile, { flags: 'a' });
    let rest = '';
    child.stdout!.on('data', (c: Buffer) => {
      log.write(c);
      rest += c.toString();
      const parts = rest.split('\n');
      rest = parts.pop()!;
      this.lines.push(...parts);
      this.#check();
    });
    child.stderr!.on('data', (c: Buffer) => log.write(c));
    this.exited = new Promise((resolve) => child.on('exit', (code) => {
      log.end();
      // Nothing more will be logged: fail whoever still waits, with what the process said.
      for (const w of this.#waiters.splice(0)) w.reject(new Error(`${name} exited (${code ?? child.signalCode}) before the awaited log line; see ${logFile}`));
      resolve(code);
    }));
  }
  #waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  #check() {
    for (const w of [...this.#waiters]) {
      for (const line of this.lines) {
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          if (w.match(j)) { this.#waiters.splice(this.#waiters.indexOf(w), 1); w.resolve(j); break; }
        } catch { /* not JSON */ }
      }
    }
  }
  /** Resolves with the first log record (already seen or to come) that matches. */
  waitFor(match: (l: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: no matching log line within ${timeoutMs} ms`)), timeoutMs);
      const w = { match, resolve: (l: Record<string, unknown>) => { clearTimeout(t); resolve(l); }, reject: (e: Error) => { clearTimeout(t); reject(e); } };
      this.#waiters.push(w);
      this.#check();
      if (this.#waiters.includes(w) && !this.alive) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.reject(new Error(`${this.name} has exited; the awaited log line never came`));
      }
    });
  }
  get alive(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }
  /** The test expects this daemon to end otherwise than cleanly (see ExpectedExit); say so before it does. */
  expectExit(expected: ExpectedExit): this { this.#expected = expected; return this; }
  /**
   * Sends the signal, sends it again after `againAfterMs` if the process is still there (the daemons' second
   * signal means "stop now"), and SIGKILLs it after `graceMs`. A SIGKILL is recorded: problems() reports it.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000, o: { againAfterMs?: number } = {}): Promise<number | null> {
    if (!this.alive) return this.child.exitCode;
    // A test may have frozen it (SIGSTOP); a stopped process handles no signal until it is continued.
    this.child.kill('SIGCONT');
    this.child.kill(signal);
    const again = o.againAfterMs === undefined ? undefined : setTimeout(() => { if (this.alive) this.child.kill(signal); }, o.againAfterMs);
    const t = setTimeout(() => {
      if (!this.alive) return;
      this.#forced = `${this.name} did not exit within ${graceMs} ms of ${signal} and was SIGKILLed; see ${this.logFile}`;
      this.child.kill('SIGKILL');
    }, graceMs);
    const code = await this.exited;
    clearTimeout(t);
    clearTimeout(again);
    return code;
  }
  /** kill -9 on purpose: however it ends now is what the test asked for. */
  kill9(): Promise<number | null> { this.#expected = 'any'; this.child.kill('SIGKILL'); return this.exited; }
  /** Why this daemon's end is not what the test expected (empty when it is); call once it has exited. */
  problems(): string[] {
    if (this.#expected === 'any') return [];
    if (this.alive) return [`${this.name} is still running (pid ${this.child.pid})`];
    if (this.#forced) return [this.#forced];
    const { exitCode, signalCode } = this.child;
    const want = this.#expected === 'clean' ? 0 : this.#expected;
    if (exitCode === want) return [];
    const how = exitCode === null ? `was killed by ${signalCode}` : `exited ${exitCode}`;
    return [`${this.name} ${how}, expected exit ${want}; see ${this.logFile}`];
  }
}

/** The problems of every daemon that did not end as expected, as one error (or null when there are none). */
export function teardownError(daemons: Daemon[]): Error | null {
  const problems = daemons.flatMap((d) => d.problems());
  return problems.length ? new Error(`teardown: ${problems.join('; ')}`) : null;
}

/** A free loopback port (bind to 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, host, () => { sock.destroy(); resolve(true); });
      sock.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const minioBin = process.env.TRAINYARD_MINIO_BIN ?? path.join(os.homedir(), '.cache', 'trainyard', 'bin', 'minio');

export interface AgentOptions {
  netns?: string;
  /** The fake nvidia-smi's records, "index, uuid, name, memory MiB" (see fakeGpus). */
  gpus?: string[];
  labels?: string; cpus?: number; env?: Record<string, string>; killGraceMs?: number;
  /** How the test expects this agent to end (default: cleanly, exit 0); see ExpectedExit. */
  expectExit?: ExpectedExit;
  /** Wait for the agent to register (default true); false for an agent the test expects to be refused. */
  waitForRegistered?: boolean;
}

/**
 * Records for the fake nvidia-smi (test/fixtures/bin/nvidia-smi): `count` GPUs of one model, with UUIDs
 * made from `tag` so that two agents never report the same GPU.
 */
export function fakeGpus(count: number, tag: string, o: { model?: string; memoryMb?: number } = {}): string[] {
  const model = o.model ?? 'NVIDIA H100 80GB HBM3';
  return Array.from({ length: count }, (_, i) => `${i}, GPU-${tag}-${i}, ${model}, ${o.memoryMb ?? 81559}`);
}

/**
 * A private nats-server other than the stack's usual one (users with passwords, plaintext), for the tests of
 * NATS's transport and credentials (nats-transport.test.ts).
 */
export interface PrivateNats {
  /** Serve clients over TLS only (nats.conf `tls {}` with this certificate): the stack's URL becomes tls://. */
  tls?: { cert: string; key: string };
  /**
   * nats.conf's authentication instead of the stack's two users (operator mode: `operator`, `resolver`,
   * `resolver_preload`). The stack then gives its daemons no NATS user: the test gives them credentials.
   */
  auth?: string;
}

export class Stack {
  readonly prefix = `ty${id()}`;
  readonly dbName = this.prefix;
  // Under the services' bucket pattern (trainyard*), which is all the scheduler's MinIO user may use.
  readonly bucket = `trainyard-${this.prefix}`;
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'trainyard-test-'));
  /**
   * The stack's own token file (TRAINYARD_TOKEN_FILE for every daemon and CLI it starts): its first
   * scheduler writes the bootstrap admin token there, so the CLI in tests acts as admin unless told otherwise.
   */
  readonly tokenFile = path.join(this.dir, 'config', 'token');
  /** A join token its agents register with (made once the first scheduler is up). */
  joinToken = '';
  databaseUrl = '';
  schedulerAddress = '';
  /** Where the first scheduler serves /healthz and /readyz (each scheduler picks a free port). */
  httpAddress = '';
  readonly daemons: Daemon[] = [];
  /** How long destroy() lets each daemon stop before it SIGKILLs it and fails the test. */
  stopGraceMs = 15_000;
  pool: pg.Pool;
  /** The database role the daemons connect as when the stack was made with `plainRole` (dropped with it). */
  plainRole = '';
  minio: Minio.Client;
  #admin = new pg.Pool({ connectionString: adminUrl(), max: 1 });

  constructor() {
    const u = new URL(adminUrl());
    u.pathname = `/${this.dbName}`;
    this.databaseUrl = u.toString();
    this.pool = new pg.Pool({ connectionString: this.databaseUrl, max: 3 });
    this.pool.on('error', () => {});
    const m = new URL(minioEndpoint);
    // The scheduler's user on the shared MinIO (its buckets are trainyard*, as the stack's is): never root.
    this.minio = new Minio.Client({ endPoint: m.hostname, port: Number(m.port || 80), useSSL: false, accessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', secretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '' });
  }
  /** A private MinIO's root user: a password of its own per stack, like the shared one's. */
  readonly #privateMinioRoot = { user: 'trainyard-root', password: randomBytes(18).toString('hex') };

  natsUrl = natsUrl;
  /** Which NATS user schedulers and agents connect as (null: anonymous, for a server without users). */
  natsUsers = sharedNatsUsers();
  /** TRAINYARD_NATS_USER/_PASSWORD for a daemon of this role. */
  natsEnv(role: 'scheduler' | 'agent'): Record<string, string> {
    const u = this.natsUsers[role];
    return u ? { TRAINYARD_NATS_USER: u.user, TRAINYARD_NATS_PASSWORD: u.password } : {};
  }
  /** nats.js connect options as that role (tests that talk to NATS themselves). */
  natsOptions(role: 'scheduler' | 'agent'): { servers: string; user?: string; pass?: string } {
    const u = this.natsUsers[role];
    return u ? { servers: this.natsUrl, user: u.user, pass: u.password } : { servers: this.natsUrl };
  }
  minioEndpoint = minioEndpoint;
  natsPort = 0;
  minioPort = 0;
  nats: Daemon | null = null;
  minioDaemon: Daemon | null = null;

  /**
   * Fault tests get their own nats-server and MinIO (so killing them disturbs no other test file);
   * everything else shares the ones scripts/services.sh started.
   */
  /** Where the private services and the schedulers listen (a veth address for partition tests). */
  host = '127.0.0.1';

  /** A statement as the services' admin role, for what only it may do (ALTER DATABASE, ending backends). */
  async adminQuery<T extends pg.QueryResultRow = Record<string, any>>(text: string, params: unknown[] = []): Promise<T[]> {
    return (await this.#admin.query<T>(text, params)).rows;
  }

  /**
   * `plainRole`: the database is owned by a role of its own with no superuser, CREATEDB or CREATEROLE
   * rights, and every daemon connects as it (what the README says a scheduler needs).
   */
  static async create(t: Test, o: { agents?: (AgentOptions & { name?: string })[]; schedulerEnv?: Record<string, string>; privateNats?: boolean | PrivateNats; privateMinio?: boolean; host?: string; plainRole?: boolean } = {}): Promise<Stack> {
    const s = new Stack();
    if (o.host) s.host = o.host;
    if (o.plainRole) {
      s.plainRole = `${s.prefix}_app`;
      const password = id();
      await s.#admin.query(`CREATE ROLE ${s.plainRole} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${password}'`);
      // The admin role is no superuser: it may give a database to a role, and later drop it, as its member.
      await s.#admin.query(`GRANT ${s.plainRole} TO current_user`);
      await s.#admin.query(`CREATE DATABASE ${s.dbName} OWNER ${s.plainRole}`);
      const u = new URL(s.databaseUrl);
      u.username = s.plainRole;
      u.password = password;
      s.databaseUrl = u.toString();
      await s.pool.end();
      s.pool = new pg.Pool({ connectionString: s.databaseUrl, max: 3 });
      s.pool.on('error', () => {});
    } else {
      await s.#admin.query(`CREATE DATABASE ${s.dbName}`);
    }
    t.teardown(() => s.destroy());
    if (o.privateNats) {
      s.natsPort = await freePort();
      const custom = typeof o.privateNats === 'object' ? o.privateNats : {};
      s.natsUrl = `${custom.tls ? 'tls' : 'nats'}://${s.host}:${s.natsPort}`;
      await s.startNats(custom);
    }
    if (o.privateMinio) {
      s.minioPort = await freePort();
      s.minioEndpoint = `http://${s.host}:${s.minioPort}`;
      s.minio = new Minio.Client({ endPoint: s.host, port: s.minioPort, useSSL: false, accessKey: s.#privateMinioRoot.user, secretKey: s.#privateMinioRoot.password });
      await s.startMinio();
    }
    await s.startScheduler(o.schedulerEnv);
    for (const [i, a] of (o.agents ?? [{}]).entries()) await s.startAgent(a.name ?? `agent${i + 1}`, a);
    return s;
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8',
      TRAINYARD_DATABASE_URL: this.databaseUrl, TRAINYARD_BUCKET: this.bucket, TRAINYARD_SUBJECT_PREFIX: this.prefix,
      TRAINYARD_NATS_URL: this.natsUrl, TRAINYARD_MINIO_ENDPOINT: this.minioEndpoint, TRAINYARD_SCHEDULER: this.schedulerAddress,
      TRAINYARD_LOG_LEVEL: 'debug', NO_COLOR: '1', TRAINYARD_TOKEN_FILE: this.tokenFile,
      ...extra,
    };
  }

  async startNats(custom: PrivateNats = {}): Promise<Daemon> {
    const dir = path.join(this.dir, 'nats');
    mkdirSync(dir, { recursive: true });
    // The same users and permissions as scripts/services.sh gives the shared server, with passwords of its own.
    // Made once per stack: a restarted server (outages.test.ts) takes back the daemons already connected.
    const conf = path.join(this.dir, 'nats.conf');
    if (!existsSync(conf)) {
      const scheduler = { user: 'trainyard-scheduler', password: randomBytes(18).toString('hex') };
      const agent = { user: 'trainyard-agent', password: randomBytes(18).toString('hex') };
      this.natsUsers = custom.auth ? { scheduler: null, agent: null } : { scheduler, agent };
      const tls = custom.tls ? `tls { cert_file: ${JSON.stringify(custom.tls.cert)}, key_file: ${JSON.stringify(custom.tls.key)} }\n` : '';
      writeFileSync(conf, `listen: "${this.host}:${this.natsPort}"\njetstream { store_dir: ${JSON.stringify(dir)} }\n${tls}${custom.auth ?? `authorization { users = [
  { user: "${scheduler.user}", password: "${scheduler.password}", permissions: { publish: { allow: [">"] }, subscribe: { allow: ["*.kick", "*.run.*", "_INBOX.>"] } } }
  { user: "${agent.user}", password: "${agent.password}", permissions: { publish: { deny: [">"] }, subscribe: { allow: ["*.agent.*.dispatch", "*.agent.*.control"] } } }
] }`}\n`, { mode: 0o600 });
    }
    const child = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.nats = new Daemon('nats', child, path.join(this.dir, 'nats.log'));
    this.daemons.push(this.nats);
    await waitForPort(this.natsPort, 20_000, this.host);
    return this.nats;
  }

  async startMinio(): Promise<Daemon> {
    const dir = path.join(this.dir, 'minio');
    mkdirSync(dir, { recursive: true });
    const console = await freePort();
    const child = spawn(minioBin, ['server', dir, '--quiet', '--address', `${this.host}:${this.minioPort}`, '--console-address', `127.0.0.1:${console}`], {
      env: { ...process.env, MINIO_ROOT_USER: this.#privateMinioRoot.user, MINIO_ROOT_PASSWORD: this.#privateMinioRoot.password }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.minioDaemon = new Daemon('minio', child, path.join(this.dir, 'minio.log'));
    this.daemons.push(this.minioDaemon);
    const end = Date.now() + 30_000;
    while (!(await fetch(`${this.minioEndpoint}/minio/health/ready`).then((r) => r.ok, () => false))) {
      if (Date.now() > end) throw new Error('private MinIO did not become ready');
      await new Promise((r) => setTimeout(r, 200));
    }
    return this.minioDaemon;
  }

  /**
   * The scheduler's storage keys: on the shared MinIO, the non-root user scripts/services.sh made (its
   * minio-users.env, which test.sh exports); on a private MinIO, its root user. Agents get none.
   */
  minioSchedulerEnv(): Record<string, string> {
    const shared = !this.minioDaemon && process.env.TRAINYARD_MINIO_ACCESS_KEY && process.env.TRAINYARD_MINIO_SECRET_KEY;
    return shared
      ? { TRAINYARD_MINIO_ACCESS_KEY: process.env.TRAINYARD_MINIO_ACCESS_KEY!, TRAINYARD_MINIO_SECRET_KEY: process.env.TRAINYARD_MINIO_SECRET_KEY! }
      : { TRAINYARD_MINIO_ACCESS_KEY: this.#privateMinioRoot.user, TRAINYARD_MINIO_SECRET_KEY: this.#privateMinioRoot.password };
  }

  /** `args`: more flags (they come last, so they win over the stack's own, e.g. `--http-listen ''`). */
  async startScheduler(extra: Record<string, string> = {}, listen = `${this.host}:0`, args: string[] = []): Promise<Daemon> {
    const n = this.daemons.filter((d) => d.name.startsWith('scheduler')).length + 1;
    // Port 0: many schedulers run at once across test files; each logs the address it got.
    const child = spawn(process.execPath, [bin, 'scheduler', '--listen', listen, '--http-listen', `${this.host}:0`, ...args], {
      env: this.env({ ...this.natsEnv('scheduler'), ...this.minioSchedulerEnv(), TRAINYARD_HEARTBEAT_INTERVAL_MS: '500', TRAINYARD_AGENT_LOST_AFTER_MS: '4000', ...extra }), stdio: ['ignore', 'pipe', 'pipe'],
    });
    const d = new Daemon(`scheduler${n}`, child, path.join(this.dir, `scheduler${n}.log`));
    this.daemons.push(d);
    const line = await d.waitFor((l) => l.msg === 'listening', 30_000);
    if (!this.schedulerAddress) this.schedulerAddress = String(line.address);
    if (!this.httpAddress) this.httpAddress = String(line.http);
    if (!this.joinToken) {
      const api = this.api();
      try { this.joinToken = (await api.createJoinToken({ name: 'test agents', expires_in_seconds: 86_400 })).token; } finally { api.close(); }
    }
    return d;
  }

  async startAgent(name: string, o: AgentOptions = {}): Promise<Daemon> {
    const work = path.join(this.dir, `work-${name}`);
    mkdirSync(work, { recursive: true });
    const env = this.env({
      TRAINYARD_AGENT_NAME: name, TRAINYARD_WORK_DIR: work, TRAINYARD_VENV_DIR: venvDir,
      TRAINYARD_NVIDIA_SMI: path.join(root, 'test', 'fixtures', 'bin', 'nvidia-smi'),
      FAKE_NVIDIA_SMI_GPUS: (o.gpus ?? []).join(';'),
      TRAINYARD_LABELS: o.labels ?? '', TRAINYARD_CPUS: String(o.cpus ?? 4), TRAINYARD_KILL_GRACE_MS: String(o.killGraceMs ?? 2000),
      ...this.natsEnv('agent'),
      TRAINYARD_JOIN_TOKEN: this.joinToken,
      // Test agents run as root in private temp folders that run uids could not enter: runs keep the
      // agent's uid unless a test gives a pool (contain.test.ts, run-uids.test.ts).
      TRAINYARD_RUN_UIDS: 'none', TRAINYARD_SHARED_UID: '1',
      // pip, as before issue 21: no test file fetches uv from PyPI unless it tests uv (venv-uv.test.ts).
      TRAINYARD_INSTALLER: 'pip',
      ...o.env,
    });
    // In a namespace, `ip netns exec` execs node in place, so signals still reach the agent itself.
    const child = o.netns
      ? spawn('ip', ['netns', 'exec', o.netns, process.execPath, bin, 'agent'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [bin, 'agent'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new Daemon(name, child, path.join(this.dir, `${name}.log`), { expectExit: o.expectExit });
    this.daemons.push(d);
    if (o.waitForRegistered !== false) await d.waitFor((l) => l.msg === 'registered', 30_000);
    return d;
  }

  /** The bootstrap admin token its first scheduler wrote. */
  get adminToken(): string { return readFileSync(this.tokenFile, 'utf8').trim(); }

  /** An in-process client of this stack's scheduler, calling with `token` (default: the admin token). */
  api(token = this.adminToken, address = this.schedulerAddress): Api { return new Api(address, { token }); }

  /** Runs the CLI against this stack's scheduler. */
  cli(args: string[], o: { timeoutMs?: number } = {}): Promise<CliResult> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [bin, ...args, '--scheduler', this.schedulerAddress], { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
      const t = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 240_000);
      child.on('close', (code) => { clearTimeout(t); resolve({ code: code ?? -1, stdout, stderr }); });
    });
  }

  async cliJson<T = Record<string, any>>(args: string[]): Promise<T> {
    const r = await this.cli([...args, '--json']);
    if (r.code !== 0) throw new Error(`trainyard ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  async query<T extends pg.QueryResultRow = Record<string, any>>(text: string, params: unknown[] = []): Promise<T[]> {
    return (await this.pool.query<T>(text, params)).rows;
  }

  async objects(prefix = ''): Promise<string[]> {
    const out: string[] = [];
    if (!(await this.minio.bucketExists(this.bucket))) return out;
    for await (const o of this.minio.listObjectsV2(this.bucket, prefix, true) as AsyncIterable<{ name: string }>) out.push(o.name);
    return out.sort();
  }

  async objectText(key: string): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of await this.minio.getObject(this.bucket, key)) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Polls Postgres until the run reaches one of the statuses (the test's own wait, not the product's). */
  async waitForStatus(runId: string, statuses: string[], timeoutMs = 180_000): Promise<Record<string, any>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const [row] = await this.query('SELECT * FROM runs WHERE id = $1', [runId]);
      if (row && statuses.includes(row.status)) return row;
      if (Date.now() > end) throw new Error(`run ${runId} is ${row?.status}, not ${statuses.join('|')}, after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  logOf(name: string): string {
    try { return readFileSync(path.join(this.dir, `${name}.log`), 'utf8'); } catch { return ''; }
  }

  /**
   * Stops everything and removes the database and bucket. Agents stop first (they may still report to a
   * scheduler), then schedulers, then the private services; each gets SIGTERM, a second SIGTERM a moment
   * later ("stop now", so a run left going does not make the agent wait out its drain), and a SIGKILL only
   * after its grace. Then it throws, failing the test, if any daemon had to be SIGKILLed or exited other
   * than the test said it would (Daemon.expectExit, kill9).
   */
  async destroy(): Promise<void> {
    const services = [this.nats, this.minioDaemon].filter((d): d is Daemon => d !== null);
    const stop = (ds: Daemon[]) => Promise.all(ds.map((d) => d.stop('SIGTERM', this.stopGraceMs, { againAfterMs: 1000 })));
    await stop(this.daemons.filter((d) => !services.includes(d) && !d.name.startsWith('scheduler')));
    await stop(this.daemons.filter((d) => d.name.startsWith('scheduler')));
    const error = teardownError(this.daemons.filter((d) => !services.includes(d)));
    await this.pool.end().catch(() => {});
    // Another connection may linger for a moment after the scheduler exits.
    await this.#admin.query(`DROP DATABASE IF EXISTS ${this.dbName} WITH (FORCE)`).catch(() => {});
    if (this.plainRole) await this.#admin.query(`DROP ROLE IF EXISTS ${this.plainRole}`).catch(() => {});
    await this.#admin.end();
    try {
      const keys = await this.objects();
      for (let i = 0; i < keys.length; i += 1000) await this.minio.removeObjects(this.bucket, keys.slice(i, i + 1000));
      if (await this.minio.bucketExists(this.bucket)) await this.minio.removeBucket(this.bucket);
    } catch { /* best effort */ }
    // nats-server exits 1 on SIGTERM and 0 on SIGINT; a service that hangs is still caught (SIGKILL).
    await Promise.all(services.map((d) => d.stop(d === this.nats ? 'SIGINT' : 'SIGTERM', this.stopGraceMs)));
    const serviceError = teardownError(services);
    if (error || serviceError) throw new Error([error?.message, serviceError?.message].filter(Boolean).join('; '));
  }
}

/** Makes a package folder from a map of file name to content. */
export function writeTree(dir: string, files: Record<string, string | Buffer>): string {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
  return dir;
}

export function tempDir(prefix = 'ty-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A migrated database of its own, for tests of the scheduler's SQL without daemons. */
export async function testDatabase(t: Test): Promise<{ db: import('../../scheduler/db/database.js').Db; url: string }> {
  const { createDb } = await import('../../scheduler/db/database.js');
  const { migrate } = await import('../../scheduler/db/migrate.js');
  const name = `ty${id()}`;
  const admin = new pg.Pool({ connectionString: adminUrl(), max: 1 });
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(adminUrl());
  u.pathname = `/${name}`;
  const { db, pool } = createDb(u.toString(), 3);
  await migrate(pool);
  t.teardown(async () => {
    await db.destroy();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await admin.end();
  });
  return { db, url: u.toString() };
}
