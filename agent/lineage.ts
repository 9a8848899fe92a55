// What an attempt can say about its own inputs, for the run's lineage (the scheduler adds what it knows
// and writes _lineage.json): a manifest of the data made local, every file with its size and SHA-256, and
// the venv's Python and packages. Two runs of one version on the same data give the same manifest hash.
import { existsSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';

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

export interface VenvInfo { python: string; packages: string[] }

/**
 * The installed distributions as `pip freeze` lists them: NAME==VERSION, case-insensitively sorted, less
 * what pip freeze leaves out (pip/_internal/commands/freeze.py _dev_pkgs): pip itself and, on Python
 * before 3.12, the build tools a venv came with (setuptools, distribute, wheel), by canonical name.
 */
const FREEZE = `import sys, json, re
from importlib.metadata import distributions
skip = {"pip"} | ({"setuptools", "distribute", "wheel"} if sys.version_info < (3, 12) else set())
canonical = lambda name: re.sub(r"[-_.]+", "-", name).lower()
names = {"%s==%s" % (d.metadata["Name"], d.version) for d in distributions() if d.metadata["Name"] and canonical(d.metadata["Name"]) not in skip}
print(json.dumps({"python": sys.version.split()[0], "packages": sorted(names, key=str.lower)}))`;

/**
 * The venv's Python version and installed packages (what `pip freeze` lists), read once per venv and kept
 * in it: a venv is made for one requirements.txt and never changes after, and runs cannot write it. The
 * cache's name changes with what FREEZE lists, so a venv read by an older agent is read again.
 */
export async function venvInfo(venv: string): Promise<VenvInfo> {
  const cache = path.join(venv, '.trainyard-freeze-2.json');
  if (existsSync(cache)) {
    try { return JSON.parse(await readFile(cache, 'utf8')) as VenvInfo; } catch { /* rewritten below */ }
  }
  const out = await new Promise<string>((resolve, reject) => {
    execFile(path.join(venv, 'bin', 'python'), ['-I', '-c', FREEZE], { timeout: 60_000, maxBuffer: 8 << 20, env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' } },
      (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  const info = JSON.parse(out) as VenvInfo;
  const tmp = `${cache}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(info));
  await rename(tmp, cache);
  return info;
}
