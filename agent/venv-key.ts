// The venv cache's key: everything `pip install -r requirements.txt` reads. The requirements text alone is
// not enough: `--find-links wheels`, `./x.whl`, `-e .` or `-r other.txt` name files of the package, and two
// packages with the same text but other wheels must not share a venv (the second would run the first's
// code, a `.pth` say). So every word of the requirements that names an existing file or folder, relative
// to the requirements file's folder (pip's working directory for the build) or absolute, is hashed into
// the key with its contents, recursively for -r and -c files; plus the Python (its path and version), the
// index and find-links settings. Erring towards more words hashed costs only a rebuild, never a wrong venv.
import { createHash, type Hash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { PackagingError } from './packaging-error.js';

/** Bounds on what one key may hash: a requirement naming `/` must not read the whole disk. */
const MAX_BYTES = 2 * 1024 * 1024 * 1024;
const MAX_FILES = 100_000;
const MAX_DEPTH = 8;

export interface VenvKeyInput {
  python: string;
  pythonVersion: string;
  pipIndexUrl: string;
  pipFindLinks: string;
  /** Absolute; null or missing: no requirements. */
  requirementsFile: string | null;
}

/** The requirements' lines as pip reads them: comments dropped, `\` continuations joined. */
export function requirementLines(text: string): string[] {
  return text.replace(/\\\r?\n/g, ' ').split(/\r?\n/).map((l) => l.replace(/(^|\s)#.*$/, '').trim()).filter(Boolean);
}

/** The words of a line that could name a file: options' values (`--find-links=x` too), `file:` URLs, `name @ path`. */
function words(line: string): { word: string; nested: boolean }[] {
  const out: { word: string; nested: boolean }[] = [];
  const parts = line.split(/\s+/);
  for (let i = 0; i < parts.length; i++) {
    let w = parts[i]!;
    let nested = false;
    const eq = /^(-[a-zA-Z]|--[a-z-]+)=(.*)$/.exec(w);
    if (eq) { nested = /^(-r|-c|--requirement|--constraint)$/.test(eq[1]!); w = eq[2]!; }
    else if (/^(-r|-c|--requirement|--constraint)$/.test(w)) { nested = true; continue; }
    if (i > 0 && /^(-r|-c|--requirement|--constraint)$/.test(parts[i - 1]!)) nested = true;
    w = w.replace(/^file:(\/\/)?/, '').replace(/[;,]$/, '');
    if (w && w !== '@' && !w.startsWith('-')) out.push({ word: w, nested });
  }
  return out;
}

/** The key: 24 hex digits of SHA-256 over the inputs and every local file they name. */
export async function venvKey(k: VenvKeyInput): Promise<{ key: string; requirements: string }> {
  const h = createHash('sha256');
  h.update(JSON.stringify(['venv-key-2', k.python, k.pythonVersion, k.pipIndexUrl, k.pipFindLinks]));
  let requirements = '';
  if (k.requirementsFile) {
    const text = await readFile(k.requirementsFile, 'utf8').catch(() => null);
    if (text !== null) {
      requirements = requirementLines(text).join('\n');
      const budget = { bytes: 0, files: 0 };
      await hashRequirements(h, k.requirementsFile, path.dirname(k.requirementsFile), budget, 0, new Set());
      // pip --find-links from the agent's own settings is a folder too.
      if (k.pipFindLinks && path.isAbsolute(k.pipFindLinks)) await hashPath(h, k.pipFindLinks, '/', budget);
    }
  }
  return { key: h.digest('hex').slice(0, 24), requirements };
}

async function hashRequirements(h: Hash, file: string, base: string, budget: Budget, depth: number, seen: Set<string>): Promise<void> {
  if (depth > MAX_DEPTH || seen.has(file)) return;
  seen.add(file);
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return;
  h.update(`requirements\0${requirementLines(text).join('\n')}\0`);
  for (const line of requirementLines(text)) {
    for (const { word, nested } of words(line)) {
      // Relative to the file that names it (pip's rule for -r, -c and --find-links) and to the build's
      // working directory, the package folder (pip's rule for a plain path): both, when they differ.
      const candidates = path.isAbsolute(word) ? [word] : [...new Set([path.resolve(path.dirname(file), word), path.resolve(base, word)])];
      for (const p of candidates) {
        const st = await lstat(p).catch(() => null);
        if (!st) continue;
        h.update(`word\0${word}\0${where(p, base)}\0`);
        if (nested && st.isFile()) await hashRequirements(h, p, base, budget, depth + 1, seen);
        else await hashPath(h, p, base, budget);
      }
    }
  }
}

type Budget = { bytes: number; files: number };

/** A path as the key sees it: relative to the package folder when inside it (each attempt has its own copy). */
function where(p: string, base: string): string {
  const rel = path.relative(base, p);
  return rel.startsWith('..') || path.isAbsolute(rel) ? p : `./${rel}`;
}

/** A file's contents, a link's target text, or a folder's names and contents (links never followed). */
async function hashPath(h: Hash, p: string, base: string, budget: Budget): Promise<void> {
  const st = await lstat(p).catch(() => null);
  const at = where(p, base);
  if (!st) { h.update(`missing\0${at}\0`); return; }
  if (++budget.files > MAX_FILES) throw new PackagingError(`the requirements name more than ${MAX_FILES} local files (around ${p}); name fewer`);
  if (st.isSymbolicLink()) {
    h.update(`link\0${at}\0${await readlink(p)}\0`);
  } else if (st.isDirectory()) {
    h.update(`dir\0${at}\0`);
    for (const e of (await readdir(p)).sort()) await hashPath(h, path.join(p, e), base, budget);
  } else if (st.isFile()) {
    budget.bytes += st.size;
    if (budget.bytes > MAX_BYTES) throw new PackagingError(`the requirements name more than ${MAX_BYTES} bytes of local files (around ${p}); name fewer`);
    h.update(`file\0${at}\0${st.size}\0`);
    h.update(await readFile(p));
  } else {
    h.update(`other\0${at}\0${st.mode}\0`);
  }
}
