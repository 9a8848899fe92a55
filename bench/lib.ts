// What the benchmarks share: a database and bucket of their own, a real scheduler process, and medians.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { customAlphabet } from 'nanoid';
import pg from 'pg';
import { status as grpcStatus } from '@grpc/grpc-js';
import { projectRoot } from '../shared/proto.js';
import type * as P from '../shared/proto.js';
import { Api as ApiClient, streamOf, unaryCall, type Api } from '../cli/client.js';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';
import { createMinioClient, removePrefix } from '../shared/storage.js';
import type { Stack } from '../test/helpers/stack.js';
import { connect, type NatsConnection } from 'nats';
import { Link } from '../agent/link.js';

/**
 * The services' admin role (CREATEDB, no superuser; `npm run services` keeps its password in postgres.env),
 * which makes and drops each bench's database; the bench's scheduler connects to that database with it.
 */
const adminUrl = process.env.TRAINYARD_TEST_DATABASE_URL ?? servicesEnv('postgres.env').TRAINYARD_TEST_DATABASE_URL ?? '';
const id = customAlphabet('abcdefghijklmnopqrstuvwxyz0123456789', 8);

export interface BenchEnv { name: string; databaseUrl: string; env: NodeJS.ProcessEnv; drop(): Promise<void> }

export async function benchEnv(extra: Record<string, string> = {}): Promise<BenchEnv> {
  if (!adminUrl) throw new Error('no TRAINYARD_TEST_DATABASE_URL and no postgres.env in the services dir: run npm run services first');
  const name = `tybench${id()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    name,
    databaseUrl: u.toString(),
    env: {
      ...process.env,
      TRAINYARD_DATABASE_URL: u.toString(), TRAINYARD_BUCKET: `trainyard-${name}`, TRAINYARD_SUBJECT_PREFIX: name,
      // Its own token file: the bench's scheduler bootstraps an admin token there, never in the user's.
      TRAINYARD_TOKEN_FILE: path.join(os.tmpdir(), name, 'token'),
      TRAINYARD_LOG_LEVEL: 'warn', ...extra,
    },
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
      // And its bucket: hundreds of left-over buckets (thousands of objects) cost MinIO CPU in the
      // background (its scanner), which later bench runs on this machine would pay.
      const keys = benchMinio();
      const minio = createMinioClient({ minioEndpoint: process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000', minioAccessKey: keys.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: keys.TRAINYARD_MINIO_SECRET_KEY ?? '' });
      const bucket = `trainyard-${name}`;
      if (await minio.bucketExists(bucket).catch(() => false)) {
        await removePrefix(minio, bucket, '', { retries: 2 });
        await minio.removeBucket(bucket);
      }
    },
  };
}

/** The admin token the bench's scheduler wrote to the bench's token file. */
export function benchAdminToken(b: BenchEnv): string {
  return readFileSync(b.env.TRAINYARD_TOKEN_FILE!, 'utf8').trim();
}

export interface Proc { child: ChildProcess; lines: string[]; waitFor(re: RegExp, timeoutMs?: number): Promise<string>; stop(): Promise<void> }

/**
 * A trainyard daemon. `nodeArgs` go to node itself (`--cpu-prof`: NODE_OPTIONS refuses it), and so do
 * BENCH_NODE_ARGS (space-separated), to profile what any bench measures:
 * BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" writes each daemon's CPU profile on exit.
 */
export function startTrainyard(args: string[], env: NodeJS.ProcessEnv, nodeArgs: string[] = []): Proc {
  nodeArgs = [...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), ...nodeArgs];
  const child = spawn(process.execPath, [...nodeArgs, path.join(projectRoot(), 'bin', 'trainyard.js'), ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let rest = '';
  child.stdout!.on('data', (c: Buffer) => {
    rest += c.toString();
    const parts = rest.split('\n');
    rest = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      for (const w of [...waiters]) if (w.re.test(l)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(l); }
    }
  });
  return {
    child, lines,
    waitFor(re, timeoutMs = 60_000) {
      const seen = lines.find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}`)), timeoutMs);
        waiters.push({ re, resolve: (l) => { clearTimeout(t); resolve(l); } });
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** What the scheduler's invariant check says (`trainyard doctor`, the Doctor rpc), flattened for a summary. */
export interface DoctorResult {
  available: boolean;
  /** Why the check could not be made (the rpc is not implemented, the scheduler did not answer). */
  error?: string;
  via?: 'cli' | 'rpc';
  /** "kind run agent: detail", one per violation found by this check. */
  current: string[];
  /** Every violation the sweep has recorded since the database was created. */
  recordedTotal: number;
  recordedByKind: Record<string, number>;
  recent: string[];
}

interface ViolationLike { kind?: string; run_id?: string; agent?: string; detail?: string; repaired?: boolean }
interface ReportLike { current?: ViolationLike[]; recorded_total?: number | string; recorded_by_kind?: { kind?: string; count?: number | string }[]; recent?: ViolationLike[] }

function flatten(report: ReportLike, via: 'cli' | 'rpc'): DoctorResult {
  const line = (v: ViolationLike) => `${v.kind ?? '?'} ${v.run_id || '-'} ${v.agent || '-'}: ${v.detail ?? ''}${v.repaired ? ' (repaired)' : ''}`;
  return {
    available: true, via,
    current: (report.current ?? []).map(line),
    recordedTotal: Number(report.recorded_total ?? 0),
    recordedByKind: Object.fromEntries((report.recorded_by_kind ?? []).map((k) => [k.kind ?? '?', Number(k.count ?? 0)])),
    recent: (report.recent ?? []).map(line),
  };
}

const looksLikeReport = (x: unknown): x is ReportLike =>
  typeof x === 'object' && x !== null && Array.isArray((x as ReportLike).current) && 'recorded_total' in x;

/**
 * Asks the scheduler for its invariant check: `trainyard doctor --json` when the CLI has the verb and
 * prints the DoctorReport's fields, else the Doctor rpc itself. UNIMPLEMENTED (or any other error) comes
 * back as available: false, which a caller must count as a failure: no check is not a passed check.
 */
export async function doctorCheck(s: Stack, api: Api): Promise<DoctorResult> {
  const cli = await s.cli(['doctor', '--json'], { timeoutMs: 60_000 });
  try {
    const parsed: unknown = JSON.parse(cli.stdout);
    if (looksLikeReport(parsed)) return flatten(parsed, 'cli');
  } catch { /* no such verb yet, or not JSON: ask the rpc */ }
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const report = await unaryCall<P.DoctorRequest, P.DoctorReport__Output>(api.client, api.client.Doctor as never, { repair: false });
      return flatten(report, 'rpc');
    } catch (err) {
      const e = err instanceof TrainyardError ? err : null;
      if (e?.code === ErrorCodes.Unavailable && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 500)); continue; }
      const grpcCode = (e?.cause as { code?: number } | undefined)?.code;
      const why = grpcCode === grpcStatus.UNIMPLEMENTED ? 'the scheduler does not implement Doctor' : e?.message ?? String(err);
      return { available: false, error: why, current: [], recordedTotal: 0, recordedByKind: {}, recent: [] };
    }
  }
}

/**
 * TRAINYARD_NATS_USER/_PASSWORD for a daemon of this role, from the users `npm run services` made
 * (its nats-users.env), so benchmarks run against the shared NATS as the demo does. Empty if none.
 */
/** KEY=VALUE lines of a file in the services dir (`npm run services` writes them); empty if it is not there. */
function servicesEnv(file: string): Record<string, string> {
  let text = '';
  try { text = readFileSync(path.join(process.env.TRAINYARD_SERVICES_DIR ?? path.join(os.homedir(), '.local/share/trainyard/services'), file), 'utf8'); } catch { return {}; }
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** The scheduler's MinIO user `npm run services` made (minio-users.env); agents get none. Empty if none. */
export function benchMinio(): Record<string, string> {
  const vars = servicesEnv('minio-users.env');
  return vars.TRAINYARD_MINIO_ACCESS_KEY ? { TRAINYARD_MINIO_ACCESS_KEY: vars.TRAINYARD_MINIO_ACCESS_KEY, TRAINYARD_MINIO_SECRET_KEY: vars.TRAINYARD_MINIO_SECRET_KEY ?? '' } : {};
}

export function benchNats(role: 'scheduler' | 'agent'): Record<string, string> {
  const vars = servicesEnv('nats-users.env');
  const R = role.toUpperCase();
  return vars[`TRAINYARD_NATS_${R}_USER`] ? { TRAINYARD_NATS_USER: vars[`TRAINYARD_NATS_${R}_USER`]!, TRAINYARD_NATS_PASSWORD: vars[`TRAINYARD_NATS_${R}_PASSWORD`] ?? '' } : {};
}

/** A scheduler (and, unless `agent` is null, one agent with these settings) serving one package, `noop`, and one dataset, `tiny`. */
export interface NoopTrainyard { bench: BenchEnv; scheduler: Proc; agent: Proc | null; address: string; api: ApiClient; stop(): Promise<void> }

/**
 * What the latency benches share: a real scheduler and agent on the services, a package whose train()
 * prints `ENTERED <time.time()>` as its first statement (enteredAt reads it back), and a one-file dataset.
 */
export async function startNoopTrainyard(o: { agent: Record<string, string> | null; runUids?: boolean }): Promise<NoopTrainyard> {
  const bench = await benchEnv({ TRAINYARD_SCHEDULER_LISTEN: '127.0.0.1:0', TRAINYARD_HTTP_LISTEN: '' });
  const scheduler = startTrainyard(['scheduler'], { ...bench.env, ...benchNats('scheduler'), ...benchMinio(), TRAINYARD_LOG_LEVEL: 'info' });
  const address = JSON.parse(await scheduler.waitFor(/"msg":"listening"/)).address as string;
  const api = new ApiClient(address, { token: benchAdminToken(bench) });
  const work = mkdtempSync(path.join(os.tmpdir(), 'tybench-'));
  // runUids: a root agent's default, a uid per run; its runs enter the work dir and read their venv there.
  if (o.runUids) chmodSync(work, 0o755);
  let agent: Proc | null = null;
  if (o.agent) {
    const joinToken = (await api.createJoinToken({ name: 'bench', expires_in_seconds: 3600 })).token;
    agent = startTrainyard(['agent'], {
      ...bench.env, ...benchNats('agent'), TRAINYARD_LOG_LEVEL: 'info', TRAINYARD_SCHEDULER: address, TRAINYARD_AGENT_NAME: 'bench-agent',
      TRAINYARD_JOIN_TOKEN: joinToken, TRAINYARD_WORK_DIR: path.join(work, 'work'),
      // Unless runUids: runs share the agent's uid, as the README's figures were measured before run uids
      // (a root agent's default), and the venvs stay under root's home, where no run uid could enter.
      ...(o.runUids
        ? { TRAINYARD_RUN_UIDS: '61000-61063', TRAINYARD_SHARED_UID: '0', TRAINYARD_VENV_DIR: path.join(work, 'venvs') }
        : { TRAINYARD_RUN_UIDS: 'none', TRAINYARD_SHARED_UID: '1', TRAINYARD_VENV_DIR: path.join(os.homedir(), '.cache', 'trainyard', 'bench-venvs') }),
      ...o.agent,
    });
    await agent.waitFor(/"msg":"registered"/);
  }
  const pkg = path.join(work, 'pkg');
  const data = path.join(work, 'data');
  mkdirSync(pkg, { recursive: true });
  mkdirSync(data, { recursive: true });
  writeFileSync(path.join(pkg, 'train.py'), 'import time\nclass Main:\n    def train(self, d):\n        print("ENTERED %.6f" % time.time(), flush=True)\n    def save(self):\n        pass\n');
  writeFileSync(path.join(data, 'x.csv'), '1\n');
  for (const args of [['package', 'push', pkg, '--name', 'noop'], ['dataset', 'push', data, '--name', 'tiny']]) {
    const r = spawnSync(process.execPath, [path.join(projectRoot(), 'bin', 'trainyard.js'), ...args, '--scheduler', address], { env: bench.env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`trainyard ${args.join(' ')}: ${r.stderr}`);
  }
  return {
    bench, scheduler, agent, address, api,
    async stop() {
      api.close();
      await agent?.stop();
      await scheduler.stop();
      // BENCH_LOG_DIR: keep the daemons' JSON logs (where each run's time went: the agent's "attempt finished" steps).
      const logDir = process.env.BENCH_LOG_DIR;
      if (logDir) {
        mkdirSync(logDir, { recursive: true });
        writeFileSync(path.join(logDir, 'scheduler.log'), scheduler.lines.join('\n') + '\n');
        if (agent) writeFileSync(path.join(logDir, 'agent.log'), agent.lines.join('\n') + '\n');
      }
      await bench.drop();
      // The agent's data cache, venvs and work dirs: a data bench leaves gigabytes here otherwise.
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * Polls until the run has ended; its last state. `everyMs`: between polls (20 by default, for a latency
 * figure read off the clock; a burst, whose figure is the runs' own end times, polls seldom so that the
 * bench's own calls do not take the CPU the runs need).
 */
export async function waitEnded(api: ApiClient, id: string, everyMs = 20): Promise<P.Run__Output> {
  for (;;) {
    const r = await api.getRun(id);
    if (['Successful', 'Failed', 'Killed'].includes(r.status)) return r;
    await new Promise((res) => setTimeout(res, everyMs));
  }
}

/** When the noop package's train() was entered (ms since the epoch), from the run's log, read after the run. */
export async function enteredAt(api: ApiClient, id: string): Promise<number> {
  let entered = 0;
  for await (const l of streamOf(api.client.StreamLogs({ run_id: id, follow: false }))) {
    const m = /^ENTERED (\d+\.\d+)$/.exec(l.text);
    if (m) entered = Number(m[1]) * 1000;
  }
  if (!entered) throw new Error(`run ${id}: no ENTERED line in its log`);
  return entered;
}

/**
 * A fleet of simulated agents for the placement benches: a real scheduler process on a database of its
 * own; `agents` agents registered over gRPC as real ones register (25 at a time), which never run
 * anything; a NATS subscription on every agent's dispatch subject (`onDispatch` hears each doorbell, as
 * the agent's name and the run's id); and `kick()`, the placer's doorbell rung as a scheduler rings it.
 * Runs are inserted by the bench as queued rows (`databaseUrl`), which measures placement, not submission.
 */
export interface SimulatedFleet { bench: BenchEnv; scheduler: Proc; kick(): Promise<void>; stop(): Promise<void> }

export async function startSimulatedFleet(o: { agents: number; gpusPerAgent: number; cpusPerAgent: number; nodeArgs?: string[];
  onDispatch(agent: string, runId: string): void }): Promise<SimulatedFleet> {
  const natsUrl = process.env.TRAINYARD_NATS_URL ?? 'nats://127.0.0.1:4222';
  const bench = await benchEnv({ TRAINYARD_AGENT_LOST_AFTER_MS: '3600000', TRAINYARD_DISPATCH_ACK_TIMEOUT_MS: '3600000', TRAINYARD_SCHEDULER_LISTEN: '127.0.0.1:0' });
  const scheduler = startTrainyard(['scheduler', '--log-level', 'info'], { ...bench.env, ...benchNats('scheduler'), ...benchMinio() }, o.nodeArgs);
  let nc: NatsConnection | null = null;
  let bell: NatsConnection | null = null;
  const stop = async () => {
    await nc?.close();
    await bell?.close();
    await scheduler.stop();
    await bench.drop();
  };
  try {
    const listening = JSON.parse(await scheduler.waitFor(/"msg":"listening"/));
    await scheduler.waitFor(/now places runs/);
    const admin = new ApiClient(listening.address as string, { token: benchAdminToken(bench) });
    const join = (await admin.createJoinToken({ name: 'bench', expires_in_seconds: 3600 })).token;
    admin.close();
    const link = new Link(listening.address as string);
    link.authenticateAs('bench', join, { joining: true });
    const signal = new AbortController().signal;
    // 25 registrations at once listen on it (agent/link.ts): not a leak, so no MaxListenersExceededWarning.
    setMaxListeners(50, signal);
    for (let i = 0; i < o.agents; i += 25) {
      await Promise.all(Array.from({ length: Math.min(25, o.agents - i) }, (_, j) => link.register({
        name: `sim${i + j}`, hostname: 'bench', cpus: o.cpusPerAgent, memory_mb: 256_000, labels: { zone: (i + j) % 2 ? 'a' : 'b' }, version: 'bench', held: [],
        gpus: Array.from({ length: o.gpusPerAgent }, (_, g) => ({ index: g, uuid: `GPU-${i + j}-${g}`, name: 'NVIDIA H100 80GB HBM3', memory_mb: 81559, run_id: '' })),
      }, signal)));
    }
    link.close();
    // The simulated agents listen as the agents' NATS user; the doorbell is rung as a scheduler's (the
    // agents' user may publish nothing, so a kick sent as it never arrives).
    const agentUser = benchNats('agent');
    const schedulerUser = benchNats('scheduler');
    nc = await connect({ servers: natsUrl, user: agentUser.TRAINYARD_NATS_USER, pass: agentUser.TRAINYARD_NATS_PASSWORD });
    bell = await connect({ servers: natsUrl, user: schedulerUser.TRAINYARD_NATS_USER, pass: schedulerUser.TRAINYARD_NATS_PASSWORD });
    const subjectAgent = new RegExp(`^${bench.name}\\.agent\\.(.+)\\.dispatch$`);
    nc.subscribe(`${bench.name}.agent.*.dispatch`, { callback: (_err, m) => {
      o.onDispatch(subjectAgent.exec(m.subject)?.[1] ?? '', (m.json() as { run_id: string }).run_id);
    } });
    await nc.flush();
  } catch (err) {
    await stop();
    throw err;
  }
  const b = bell;
  return {
    bench, scheduler, stop,
    async kick() {
      b.publish(`${bench.name}.kick`);
      await b.flush();
    },
  };
}
