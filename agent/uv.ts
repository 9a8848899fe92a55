// Where the agent's `uv` comes from (issue 21): the one in the agent's own PATH, else the one it installed
// before in <work dir>/tools/uv, else it is installed there now, once per agent process, with the base
// Python's pip from the index the agent uses (--pip-index-url, --pip-find-links) and `--only-binary :all:`:
// uv is a wheel holding a binary, so installing it runs no code of anyone's. Root runs uv (it fills the
// shared cache, agent/venv.ts), so a root agent's uv must be root's and writable by nobody else, the file
// and every folder above it (agent/run-as.ts checkRootOwned), like every helper root executes. When none
// can be had, null: venvs are built with pip, as before, and the agent says why once.
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { exec, checkRootOwned } from './run-as.js';
import { pipEnv } from './run-env.js';
import { invalid } from '../shared/errors.js';

export type Installer = 'uv' | 'pip';

/** `--installer`: uv (the default) or pip; anything else is refused at the agent's start. */
export function parseInstaller(text: string): Installer {
  if (text === 'uv' || text === 'pip') return text;
  throw invalid(`--installer "${text}": expected uv or pip`);
}

export interface FindUvOptions {
  workDir: string;
  /** The base interpreter whose pip installs uv (the agent's --python, resolved). */
  python: string;
  pipIndexUrl: string;
  pipFindLinks: string;
  /** A root agent: the uv it runs must be root's alone. */
  checkOwner: boolean;
  log: Logger;
  /** The agent's PATH (tests pass one without uv). */
  pathEnv?: string;
}

/** The uv binary, by absolute path, or null (pip builds the venvs). */
export async function findUv(o: FindUvOptions): Promise<string | null> {
  const check = (p: string) => (o.checkOwner ? checkRootOwned('uv', p) : Promise.resolve(p));
  for (const dir of (o.pathEnv ?? process.env.PATH ?? '').split(':').filter((d) => path.isAbsolute(d))) {
    const p = path.join(dir, 'uv');
    if (!existsSync(p)) continue;
    try {
      return await check(p);
    } catch (err) {
      o.log.warn({ uv: p, err: (err as Error).message }, 'the uv in PATH is not root\'s alone; not used');
    }
  }
  const tools = path.join(o.workDir, 'tools');
  const installed = path.join(tools, 'uv', 'bin', 'uv');
  if (!existsSync(installed)) {
    await mkdir(tools, { recursive: true, mode: 0o755 });
    const partial = path.join(tools, `uv.partial-${process.pid}`);
    await rm(partial, { recursive: true, force: true });
    const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--only-binary', ':all:', '--no-deps', '--target', partial, 'uv'];
    if (o.pipIndexUrl) args.push('--index-url', o.pipIndexUrl);
    if (o.pipFindLinks) args.push('--find-links', o.pipFindLinks);
    const r = await exec(o.python, args, pipEnv());
    if (r.code !== 0 || !existsSync(path.join(partial, 'bin', 'uv'))) {
      await rm(partial, { recursive: true, force: true });
      o.log.warn({ err: (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ') }, 'uv is not in PATH and could not be installed from the package index; venvs are built with pip');
      return null;
    }
    // Atomic: another agent sharing the work dir may have put one there first; either is whole.
    await rename(partial, path.join(tools, 'uv')).catch(() => rm(partial, { recursive: true, force: true }));
    o.log.info({ uv: installed }, 'uv installed into the agent\'s tools folder');
  }
  try {
    return await check(installed);
  } catch (err) {
    o.log.warn({ uv: installed, err: (err as Error).message }, 'the installed uv is not root\'s alone; venvs are built with pip');
    return null;
  }
}
