// What an attempt can say about its own inputs, for the run's lineage (the scheduler adds what it knows
// and writes _lineage.json): a manifest of the data made local, every file with its size and SHA-256, and
// the venv's Python and packages. Two runs of one version on the same data give the same manifest hash.
import { existsSync } from 'node:fs';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { mapBounded } from '../shared/bounded.js';
import { hashFile } from '../shared/hash-thread.js';
import { walkFiles } from '../shared/local-files.js';

export interface ManifestEntry { path: string; size: number; sha256: string }
export interface DataManifest { sha256: string; files: number; bytes: number; entries: ManifestEntry[]; truncated: boolean }

/** The manifest keeps at most this many entries (its hash always covers every file). */
export const MAX_MANIFEST_ENTRIES = 20_000;
/**
 * And entries of at most about this many bytes in JSON: the lineage travels in the end report, whose gRPC
 * message may not pass 16 MiB with its last log lines (up to 8 MiB) and up to two manifests (issue 20: 20,000
 * long paths made a report grpc-js refused, retried for ever). `truncated` says some were left out.
 */
export const MAX_MANIFEST_BYTES = 3 * 1024 * 1024;
/** An entry's JSON beside its path: the keys, the size and the SHA-256. */
const ENTRY_OVERHEAD = 110;

/** Folder-tree order, as shared/storage.ts walkFiles lists a folder: by name within each folder, a folder's files where its name sorts. */
function byTreeOrder(a: ManifestEntry, b: ManifestEntry): number {
  const x = a.path.split('/');
  const y = b.path.split('/');
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  return x.length - y.length;
}

/**
 * The manifest of these files (in any order; hashed by whoever wrote them, agent/data-cache.ts as it
 * makes them local): the same as walking a folder holding exactly them and hashing each file would give
 * (test/unit/agent-data-cache.test.ts checks that).
 */
export function manifestOf(files: readonly ManifestEntry[]): DataManifest {
  const sorted = [...files].sort(byTreeOrder);
  const whole = createHash('sha256');
  let bytes = 0;
  // One line per file, so the hash depends on names, sizes and contents, and on nothing else.
  for (const f of sorted) {
    whole.update(`${f.path}\t${f.size}\t${f.sha256}\n`);
    bytes += f.size;
  }
  let kept = 0;
  for (let budget = MAX_MANIFEST_BYTES; kept < Math.min(sorted.length, MAX_MANIFEST_ENTRIES); kept++) {
    budget -= Buffer.byteLength(JSON.stringify(sorted[kept]!.path)) + ENTRY_OVERHEAD;
    if (budget < 0) break;
  }
  const entries = sorted.slice(0, kept);
  return { sha256: whole.digest('hex'), files: sorted.length, bytes, entries, truncated: sorted.length > entries.length };
}

/**
 * The manifest of a data folder the agent made and the run cannot write (links to the cache's entries, a
 * run uid's data), each file hashed from disk on the file hasher's thread: for a run taken over by a
 * restarted agent before the hashes of its pull were in (agent/data-cache.ts, deferred hashes), and where
 * a hash after the pull failed. The same manifest as manifestOf of the files made local there.
 */
export async function manifestOfFolder(dir: string): Promise<DataManifest> {
  const files = await walkFiles(dir);
  const entries = await mapBounded(files, 4, async (f) => ({ path: f.rel, size: f.size, sha256: (await hashFile(path.join(dir, f.rel))).sha256 }));
  return manifestOf(entries);
}

export interface VenvInfo { python: string; packages: string[] }

/** pip freeze leaves these out (pip/_internal/commands/freeze.py _dev_pkgs), by canonical name: pip, and before 3.12 the build tools a venv came with. */
const freezeSkips = (version: string): Set<string> => {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return new Set(['pip', ...(major === 3 && minor < 12 ? ['setuptools', 'distribute', 'wheel'] : [])]);
};
const canonical = (name: string) => name.replace(/[-_.]+/g, '-').toLowerCase();

/** The headers of a METADATA or PKG-INFO file (RFC 822 style, up to the first blank line). */
function headers(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    if (line === '') break;
    const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (m && !out.has(m[1]!.toLowerCase())) out.set(m[1]!.toLowerCase(), m[2]!.trim());
  }
  return out;
}

/**
 * The venv's Python version and installed packages (what `pip freeze` lists: NAME==VERSION,
 * case-insensitively sorted), read as data: pyvenv.cfg's `version` (`version_info` in a venv uv made), and the Name and Version of each
 * `*.dist-info/METADATA` (or `*.egg-info/PKG-INFO`) in its site-packages. Never by running the venv's
 * Python: that would run, as root, every `.pth` file a requirement brought. Read once per venv and kept
 * in it (a venv never changes once built, and runs cannot write it).
 */
export async function venvInfo(venv: string): Promise<VenvInfo> {
  const cache = path.join(venv, '.trainyard-freeze-3.json');
  if (existsSync(cache)) {
    try { return JSON.parse(await readFile(cache, 'utf8')) as VenvInfo; } catch { /* rewritten below */ }
  }
  const cfg = await readFile(path.join(venv, 'pyvenv.cfg'), 'utf8');
  const python = /^\s*version(?:_info)?\s*=\s*([0-9][^\s]*)\s*$/m.exec(cfg)?.[1] ?? '';
  const skip = freezeSkips(python);
  const names = new Set<string>();
  const lib = path.join(venv, 'lib');
  for (const pyDir of await readdir(lib).catch(() => [] as string[])) {
    const site = path.join(lib, pyDir, 'site-packages');
    for (const e of await readdir(site).catch(() => [] as string[])) {
      const meta = e.endsWith('.dist-info') ? 'METADATA' : e.endsWith('.egg-info') ? 'PKG-INFO' : null;
      if (!meta) continue;
      const h = headers(await readFile(path.join(site, e, meta), 'utf8').catch(() => ''));
      const name = h.get('name');
      const version = h.get('version');
      if (name && version && !skip.has(canonical(name))) names.add(`${name}==${version}`);
    }
  }
  const info: VenvInfo = { python, packages: [...names].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0)) };
  const tmp = `${cache}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(info));
  await rename(tmp, cache);
  return info;
}
