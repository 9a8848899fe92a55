// Package zips: a safe reader (entries must stay under the root, no links, size and count limits against
// zip bombs) and a deterministic writer. The scheduler inspects every pushed zip; the agent extracts with
// the same rules, so a zip that slipped past one side still cannot escape on the other.
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as yauzl from 'yauzl';
import * as yazl from 'yazl';
import { invalidPackage, TrainyardError } from './errors.js';
import { bytesOf, walkFiles } from './local-files.js';
import type { AnchoredDir, AnchoredFile } from './anchored-dir.js';

export interface ZipLimits {
  maxUnzippedBytes: number;
  maxEntries: number;
}

export interface ZipFileEntry {
  name: string;       // as stored
  rel: string;        // relative to the package root
  size: number;
  isDirectory: boolean;
}

export interface ZipInspection {
  root: string;       // '' or 'folder/' when everything sits under one top folder
  entries: ZipFileEntry[];
  unzippedBytes: number;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: false }, (err, zip) =>
      err ? reject(explainYauzl(err)) : resolve(zip),
    );
  });
}

function explainYauzl(err: Error): TrainyardError {
  const m = /^(invalid relative path|absolute path|invalid characters in fileName): (.*)$/.exec(err.message);
  if (m) {
    const reason = m[1] === 'absolute path' ? 'is an absolute path' : m[1] === 'invalid relative path' ? "leaves the package root ('..')" : 'contains a backslash';
    return invalidPackage(`zip entry "${m[2]}" ${reason}; every entry must stay inside the package folder`);
  }
  return invalidPackage(`not a readable zip file: ${err.message}`);
}

async function forEachEntry(zip: yauzl.ZipFile, fn: (e: yauzl.Entry) => Promise<void>): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    zip.on('error', (err: Error) => reject(explainYauzl(err)));
    zip.on('end', () => resolve());
    zip.on('entry', (e: yauzl.Entry) => {
      fn(e).then(() => zip.readEntry(), reject);
    });
    zip.readEntry();
  });
}

function isSymlink(e: yauzl.Entry): boolean {
  return ((e.externalFileAttributes >>> 16) & S_IFMT) === S_IFLNK;
}

/** Reads the central directory and checks it; never extracts. */
export async function inspectZip(file: string, limits: ZipLimits): Promise<ZipInspection> {
  const zip = await openZip(file);
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw invalidPackage(`zip has ${zip.entryCount} entries; the limit is ${limits.maxEntries}`);
    }
    const raw: { name: string; size: number; isDirectory: boolean }[] = [];
    let total = 0;
    await forEachEntry(zip, async (e) => {
      if (isSymlink(e)) throw invalidPackage(`zip entry "${e.fileName}" is a symbolic link; links are not allowed in a package`);
      if (e.isEncrypted()) throw invalidPackage(`zip entry "${e.fileName}" is encrypted`);
      total += e.uncompressedSize;
      if (total > limits.maxUnzippedBytes) {
        throw invalidPackage(`zip unpacks to more than ${limits.maxUnzippedBytes} bytes (the configured limit); refusing it as a possible zip bomb`);
      }
      raw.push({ name: e.fileName, size: e.uncompressedSize, isDirectory: e.fileName.endsWith('/') });
    });
    const root = findRoot(raw.map((r) => r.name));
    const entries = raw
      .filter((r) => !r.name.startsWith('__MACOSX/'))
      .map((r) => ({ ...r, rel: r.name.slice(root.length) }))
      .filter((r) => r.rel !== '');
    return { root, entries, unzippedBytes: total };
  } finally {
    zip.close();
  }
}

/** Accept train.py at the top, or inside one single top folder (what zipping a folder by hand gives). */
function findRoot(names: string[]): string {
  const files = names.filter((n) => !n.startsWith('__MACOSX/'));
  if (files.includes('train.py')) return '';
  const tops = new Set(files.map((n) => n.split('/')[0] + (n.includes('/') ? '/' : '')));
  if (tops.size === 1) {
    const [top] = [...tops];
    if (top && top.endsWith('/') && files.includes(`${top}train.py`)) return top;
  }
  return '';
}

/** Extracts into dest (which must not exist yet), applying the same checks as inspectZip. */
export async function extractZip(file: string, dest: string, limits: ZipLimits): Promise<ZipInspection> {
  const info = await inspectZip(file, limits);
  const zip = await openZip(file);
  const tmp = `${dest}.partial`;
  const base = path.resolve(tmp);
  let written = 0;
  try {
    await mkdir(tmp, { recursive: true });
    await forEachEntry(zip, async (e) => {
      if (e.fileName.startsWith('__MACOSX/') || !e.fileName.startsWith(info.root)) return;
      const rel = e.fileName.slice(info.root.length);
      if (rel === '') return;
      const target = path.resolve(base, ...rel.split('/'));
      if (target !== base && !target.startsWith(base + path.sep)) throw invalidPackage(`zip entry "${e.fileName}" leaves the package root`);
      if (e.fileName.endsWith('/')) {
        await mkdir(target, { recursive: true });
        return;
      }
      await mkdir(path.dirname(target), { recursive: true });
      const stream = await zip.openReadStreamPromise(e);
      // Counts real bytes too: the central directory's sizes are checked by yauzl, this is belt and braces.
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          written += chunk.length;
          if (written > limits.maxUnzippedBytes) cb(invalidPackage(`zip unpacks to more than ${limits.maxUnzippedBytes} bytes`));
          else cb(null, chunk);
        },
      });
      await pipeline(stream, counter, createWriteStream(target, { mode: 0o644 }));
    });
  } catch (err) {
    // Nothing half-extracted stays behind (a full disk mid-extraction, a bad entry): the caller removes
    // only `dest`, which is never made.
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw err;
  } finally {
    zip.close();
  }
  await rename(tmp, dest);
  return info;
}

/**
 * Zips a folder deterministically (sorted paths, fixed mtime); symlinks are skipped, never followed.
 * `inMemoryUpTo`: when the files come to at most this many bytes, the zip is returned as `buffer` and no
 * file is written (a small package version then goes to storage, and is hashed, without a file written
 * and read back twice); otherwise it is written to `outFile`. For a user's own folder (the CLI's push).
 */
export async function zipDir(dir: string, outFile: string, exclude: (rel: string) => boolean = () => false, o: { inMemoryUpTo?: number } = {}): Promise<{ files: number; buffer?: Buffer }> {
  const files = await walkFiles(dir, exclude);
  return writeZip(files, (zip, f, opts) => zip.addFile(path.join(dir, ...f.rel.split('/')), f.rel, opts), outFile, o);
}

/**
 * zipDir over a folder a run could still change (the agent's new package version): the files
 * AnchoredDir.files() found, each read from a descriptor opened from `dir` down, none of the path followed
 * (shared/anchored-dir.ts), and of exactly the size that was found (yazl checks it).
 */
export async function zipAnchored(dir: AnchoredDir, files: readonly AnchoredFile[], outFile: string, o: { inMemoryUpTo?: number } = {}): Promise<{ files: number; buffer?: Buffer }> {
  return writeZip(files, addAnchored(dir), outFile, o);
}

/** Adds a file found by AnchoredDir.files(), read from its own descriptor when yazl comes to it. */
function addAnchored(dir: AnchoredDir) {
  return (zip: yazl.ZipFile, f: AnchoredFile, opts: { mtime: Date; mode: number }) => zip.addReadStreamLazy(f.rel, { ...opts, size: f.size }, (cb) => {
    dir.openFile(f).then((fh) => cb(null, bytesOf(fh, f.size, { autoClose: true })), (err: Error) => cb(err, undefined as never));
  });
}

/**
 * zipAnchored as a stream, nothing written locally: the agent sends a large new package version straight
 * to the bucket (shared/stream-upload.ts). The same bytes zipAnchored writes (the zip is deterministic).
 */
export function zipAnchoredStream(dir: AnchoredDir, files: readonly AnchoredFile[]): Readable {
  return buildZip(files, addAnchored(dir));
}

function buildZip<F extends { rel: string; size: number }>(files: readonly F[], add: (zip: yazl.ZipFile, f: F, opts: { mtime: Date; mode: number }) => void): Readable {
  const zip = new yazl.ZipFile();
  // A file that could not be read (or changed size) fails the zip: the output stream ends with that error.
  zip.on('error', (err: Error) => (zip.outputStream as Readable).destroy(err));
  const mtime = new Date('2000-01-01T00:00:00Z');
  for (const f of files) add(zip, f, { mtime, mode: 0o100644 });
  zip.end();
  return zip.outputStream as Readable;
}

async function writeZip<F extends { rel: string; size: number }>(
  files: readonly F[], add: (zip: yazl.ZipFile, f: F, opts: { mtime: Date; mode: number }) => void, outFile: string, o: { inMemoryUpTo?: number },
): Promise<{ files: number; buffer?: Buffer }> {
  const out = buildZip(files, add);
  if (o.inMemoryUpTo !== undefined && files.reduce((n, f) => n + f.size, 0) <= o.inMemoryUpTo) {
    const chunks: Buffer[] = [];
    for await (const c of out) chunks.push(c as Buffer);
    return { files: files.length, buffer: Buffer.concat(chunks) };
  }
  await mkdir(path.dirname(outFile), { recursive: true });
  await pipeline(out, createWriteStream(outFile));
  return { files: files.length };
}

/** Reads one entry's bytes (at most maxBytes) without extracting anything else. */
export async function readZipEntry(file: string, name: string, maxBytes: number): Promise<Buffer | null> {
  const zip = await openZip(file);
  let found: Buffer | null = null;
  try {
    await forEachEntry(zip, async (e) => {
      if (e.fileName !== name || found) return;
      if (e.uncompressedSize > maxBytes) throw invalidPackage(`${name} is larger than ${maxBytes} bytes`);
      const chunks: Buffer[] = [];
      for await (const c of await zip.openReadStreamPromise(e)) chunks.push(c as Buffer);
      found = Buffer.concat(chunks);
    });
  } finally {
    zip.close();
  }
  return found;
}
