// How uv builds a venv (issue 21), and which builds may use the agent's shared uv cache.
//
// The shared cache (<venv dir>/.uv-cache, the agent's alone, mode 0700) is what makes a build take
// seconds: uv hard-links the unpacked wheels it holds into each venv instead of downloading and unzipping
// them again. A cache every run's uid could write would let one run (or project) change what another
// run's venv gets, so only the agent writes it, and only with wheels: the agent itself runs
// `uv pip install --no-build` (uv then runs no code of any package: no setup.py, no build backend; a
// wheel is unpacked, never executed), for requirements that name only packages of an index by name and
// version (`sharedCacheEligible`: no local file or folder, no `-e`, no `-r`, no URL of a file). uv keys
// what it caches by the index URL (or the wheel's URL) it came from, so a wheel of an index one package's
// requirements name is never what another package gets from PyPI. Everything else (an sdist to build, a
// local wheel, `-e .`) is built as the run's uid, as with pip, with a uv cache of its own in the build's
// private home, removed with it: what a build as a run uid makes never reaches the shared cache.
import path from 'node:path';
import { requirementLines } from './venv-key.js';

/** Index options whose value must be an http(s) URL (a local folder would be read by the agent). */
const URL_OPTIONS = new Set(['-i', '--index-url', '--extra-index-url', '-f', '--find-links']);
/** A requirement by name: extras, version specifiers, environment markers; no path, URL or `@`. */
const BY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]*\])?\s*([<>=!~]{1,3}\s*[A-Za-z0-9.*+!_-]+\s*(,\s*[<>=!~]{1,3}\s*[A-Za-z0-9.*+!_-]+\s*)*)?(;[^/@:\\]*)?$/;
const HASH = /\s--hash[= ]sha256:[0-9a-fA-F]{64}/g;

/**
 * Whether every line of the requirements asks only for packages of an index by name (so the agent may
 * install them, wheels only, through the shared cache). Conservative: any other line sends the build to
 * the run's uid.
 */
export function sharedCacheEligible(requirementsText: string): boolean {
  for (const raw of requirementLines(requirementsText)) {
    const line = raw.replace(HASH, '').trim();
    if (line === '--no-index') continue;
    const opt = /^(-[a-zA-Z]|--[a-z-]+)(?:[= ]\s*(\S+))?$/.exec(line);
    if (opt) {
      if (!URL_OPTIONS.has(opt[1]!) || !/^https?:\/\/[^\s]+$/.test(opt[2] ?? '')) return false;
      continue;
    }
    if (!BY_NAME.test(line)) return false;
  }
  return true;
}

export interface UvCommand { command: string; args: string[] }

/** `uv venv` of the base Python into `dir` (no pip in it: uv installs, and the venv is sealed read-only). */
export function uvVenv(uv: string, python: string, dir: string, cacheDir: string): UvCommand {
  return { command: uv, args: ['venv', '--no-config', '--no-python-downloads', '--cache-dir', cacheDir, '--python', python, dir] };
}

/**
 * `uv pip install -r` into the venv at `dir`. `wheelsOnly`: `--no-build`, for the agent's own installs
 * through the shared cache. Hard links from the cache (same file system: the cache is in the venv dir).
 */
export function uvInstall(uv: string, o: { dir: string; requirementsFile: string; cacheDir: string; pipIndexUrl: string; pipFindLinks: string; wheelsOnly: boolean }): UvCommand {
  const args = ['pip', 'install', '--no-config', '--no-python-downloads', '--cache-dir', o.cacheDir, '--link-mode', 'hardlink',
    '--python', path.join(o.dir, 'bin', 'python'), '-r', o.requirementsFile];
  if (o.wheelsOnly) args.push('--no-build');
  if (o.pipIndexUrl) args.push('--index-url', o.pipIndexUrl);
  if (o.pipFindLinks) args.push('--find-links', o.pipFindLinks);
  return { command: uv, args };
}

/** The shared cache: in the venv dir, so its files can be hard-linked into venvs (one file system). */
export const sharedCacheDir = (venvDir: string) => path.join(venvDir, '.uv-cache');
