// What the benchmarks share: a database and bucket of their own, a real scheduler process, and medians.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { customAlphabet } from 'nanoid';
import pg from 'pg';
import { projectRoot } from '../shared/proto.js';

const adminUrl = process.env.TRAINYARD_DATABASE_URL ?? 'postgres://trainyard:trainyard@127.0.0.1:5432/trainyard';
const id = customAlphabet('abcdefghijklmnopqrstuvwxyz0123456789', 8);

export interface BenchEnv { name: string; databaseUrl: string; env: NodeJS.ProcessEnv; drop(): Promise<void> }

export async function benchEnv(extra: Record<string, string> = {}): Promise<BenchEnv> {
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
      TRAINYARD_DATABASE_URL: u.toString(), TRAINYARD_BUCKET: `tybench-${name.slice(7)}`, TRAINYARD_SUBJECT_PREFIX: name,
      TRAINYARD_LOG_LEVEL: 'warn', ...extra,
    },
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export interface Proc { child: ChildProcess; lines: string[]; waitFor(re: RegExp, timeoutMs?: number): Promise<string>; stop(): Promise<void> }

export function startTrainyard(args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [path.join(projectRoot(), 'bin', 'trainyard.js'), ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
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
