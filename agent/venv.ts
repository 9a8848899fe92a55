// One venv per distinct requirements, reused across runs. Built in a private folder and renamed into
// place, so a crash mid-build never leaves a half venv that later runs would trust; concurrent builds of
// the same requirements (two runs, or two agents sharing the cache) are deduplicated.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';
import { lineSplitter } from './log-shipper.js';

export interface VenvOptions {
  venvDir: string;
  python: string;
  pipIndexUrl: string;
  pipFindLinks: string;
}

export class PackagingError extends TrainyardError {
  constructor(message: string) {
    super(ErrorCodes.FailedPrecondition, message);
    this.name = 'PackagingError';
  }
}

const building = new Map<string, Promise<string>>();

export async function ensureVenv(o: VenvOptions, requirementsFile: string | null, log: (line: string) => void, signal: AbortSignal): Promise<string> {
  const requirements = requirementsFile && existsSync(requirementsFile) ? await readFile(requirementsFile, 'utf8') : '';
  const normalized = requirements.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).join('\n');
  const key = createHash('sha256').update(JSON.stringify([o.python, normalized, o.pipIndexUrl, o.pipFindLinks])).digest('hex').slice(0, 24);
  const dir = path.join(o.venvDir, key);
  if (existsSync(path.join(dir, '.trainyard-ready'))) {
    log(`[trainyard] reusing environment ${key}`);
    return dir;
  }
  let p = building.get(key);
  if (!p) {
    p = build(o, dir, normalized, requirementsFile, log, signal).finally(() => building.delete(key));
    building.set(key, p);
  } else {
    log(`[trainyard] waiting for environment ${key}, being built for another run`);
  }
  return p;
}

async function build(o: VenvOptions, dir: string, requirements: string, requirementsFile: string | null, log: (line: string) => void, signal: AbortSignal): Promise<string> {
  await mkdir(o.venvDir, { recursive: true });
  const tmp = `${dir}.building-${process.pid}-${Date.now()}`;
  log(`[trainyard] creating environment (${requirements ? requirements.split('\n').length + ' requirements' : 'no requirements'})`);
  try {
    await run(o.python, ['-m', 'venv', ...(requirements ? [] : ['--without-pip']), tmp], log, signal, 'python -m venv');
    if (requirements && requirementsFile) {
      const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-r', requirementsFile];
      if (o.pipIndexUrl) args.push('--index-url', o.pipIndexUrl);
      if (o.pipFindLinks) args.push('--find-links', o.pipFindLinks);
      await run(path.join(tmp, 'bin', 'python'), args, log, signal, 'pip install -r requirements.txt');
    }
    await writeFile(path.join(tmp, '.trainyard-ready'), new Date().toISOString());
    try {
      await rename(tmp, dir);
    } catch {
      // Another agent sharing the cache finished the same venv first; theirs is as good as ours.
      await rm(tmp, { recursive: true, force: true });
    }
    return dir;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

function run(cmd: string, args: string[], log: (line: string) => void, signal: AbortSignal, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const tail: string[] = [];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], signal, env: { ...process.env, PIP_NO_COLOR: '1', PYTHONUNBUFFERED: '1' } });
    const onLine = (l: string) => { log(l); tail.push(l); if (tail.length > 20) tail.shift(); };
    const out = lineSplitter(onLine);
    const errs = lineSplitter(onLine);
    child.stdout.on('data', (c: Buffer) => out.write(c));
    child.stderr.on('data', (c: Buffer) => errs.write(c));
    child.on('error', (err) => reject(new PackagingError(`${what}: ${err.message}`)));
    child.on('close', (code, sig) => {
      out.end(); errs.end();
      if (code === 0) return resolve();
      const errorLines = tail.filter((l) => /error/i.test(l));
      const detail = (errorLines.length ? errorLines : tail).slice(-3).join(' | ');
      reject(new PackagingError(`${what} failed (${sig ? `signal ${sig}` : `exit code ${code}`}): ${detail}`));
    });
  });
}
