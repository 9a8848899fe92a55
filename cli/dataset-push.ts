// What `trainyard dataset push` sends, message by message: the header, then each file's start and its
// bytes (proto/trainyard.proto, PushDatasetChunk). Profiled (issue 21), a 1 GiB push spent half of the
// CLI's CPU in garbage collection: each MiB was read into one buffer, copied by protobuf.js into a second
// and by grpc-js into a third. A data message is encoded here by hand instead, its bytes read from the
// file straight into the buffer that carries them (grpc-js's copy into its frame is the only one left),
// and small files are read several ahead, so a push of thousands waits on neither the disk nor the
// network one file at a time.
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { invalid } from '../shared/errors.js';

/** The most bytes of a file one data message carries; a file no larger is read whole, ahead of its turn. */
export const CHUNK_BYTES = 1024 * 1024;
/** Small files read ahead of the one being sent (so at most this many and one more CHUNK_BYTES held). */
const READ_AHEAD = 8;
/** Room before a chunk's bytes for its message's tag and length (a varint of up to 2^35). */
const HEADROOM = 6;
/** PushDatasetChunk's `bytes data = 3`: field 3, wire type 2 (length-delimited). */
const DATA_TAG = (3 << 3) | 2;

/** A message to send: the header or a file's start as an object, a data message already encoded. */
export type PushMessage = { header: { name: string; size_bytes: number } } | { file: { path: string; size_bytes: number; upload_id?: string } } | Buffer;

/** The files stored directly (cli/dataset-direct.ts): each one's upload, or null to send it here after all. */
export interface DirectFiles {
  uploadOf(rel: string): Promise<string | null>;
  handedOver(uploadId: string): void;
}

/**
 * The data message for the `n` bytes that sit in `buf` from HEADROOM on: its tag and length are written
 * just before them, and the message is that span of `buf` (nothing copied).
 */
export function dataMessage(buf: Buffer, n: number): Buffer {
  const len: number[] = [];
  let v = n;
  do { len.push((v % 128) | (v >= 128 ? 0x80 : 0)); v = Math.floor(v / 128); } while (v > 0);
  const start = HEADROOM - 1 - len.length;
  buf[start] = DATA_TAG;
  for (let i = 0; i < len.length; i++) buf[start + 1 + i] = len[i]!;
  return buf.subarray(start, HEADROOM + n);
}

/** `n` bytes of the file from `offset`, as a data message. */
async function chunkAt(fh: FileHandle, rel: string, size: number, offset: number, n: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(HEADROOM + n);
  for (let got = 0; got < n;) {
    const r = await fh.read(buf, HEADROOM + got, n - got, offset + got);
    if (r.bytesRead === 0) throw invalid(`dataset push: ${rel} shrank while it was pushed (${size} bytes when the push began)`);
    got += r.bytesRead;
  }
  return dataMessage(buf, n);
}

/** A file that still has bytes past `size` changed since the push measured it. */
async function checkEnd(fh: FileHandle, rel: string, size: number): Promise<void> {
  if ((await fh.read(Buffer.alloc(1), 0, 1, size)).bytesRead > 0) throw invalid(`dataset push: ${rel} grew while it was pushed (${size} bytes when the push began)`);
}

/** A small file's one data message (none for an empty file). */
async function smallFile(abs: string, rel: string, size: number): Promise<Buffer | null> {
  const fh = await open(abs, 'r');
  try {
    const msg = size > 0 ? await chunkAt(fh, rel, size, 0, size) : null;
    await checkEnd(fh, rel, size);
    return msg;
  } finally {
    await fh.close();
  }
}

/** A large file's data messages, each read when the one before it has been taken. */
async function* largeFile(abs: string, rel: string, size: number): AsyncGenerator<Buffer> {
  const fh = await open(abs, 'r');
  try {
    for (let offset = 0; offset < size; offset += CHUNK_BYTES) yield await chunkAt(fh, rel, size, offset, Math.min(CHUNK_BYTES, size - offset));
    await checkEnd(fh, rel, size);
  } finally {
    await fh.close();
  }
}

/**
 * Every message of a push of `files` (relative to `dir`), each with the file bytes it carries. Files in
 * `direct` are named by their upload once it is complete (put them last, so the others stream meanwhile).
 */
export async function* pushMessages(dir: string, name: string, files: readonly { rel: string; size: number }[], direct?: { files: ReadonlySet<string>; store: DirectFiles }): AsyncGenerator<{ message: PushMessage; bytes: number }> {
  yield { message: { header: { name, size_bytes: files.reduce((n, f) => n + f.size, 0) } }, bytes: 0 };
  const abs = (rel: string) => path.join(dir, ...rel.split('/'));
  const ahead = new Map<number, Promise<Buffer | null>>();
  let next = 0; // the next file to read ahead
  try {
    for (let i = 0; i < files.length; i++) {
      // Keep READ_AHEAD small files in flight past this one (a large file is read only in its turn).
      for (next = Math.max(next, i); next < files.length && next <= i + READ_AHEAD; next++) {
        const f = files[next]!;
        if (f.size > CHUNK_BYTES) continue;
        const p = smallFile(abs(f.rel), f.rel, f.size);
        p.catch(() => {}); // awaited in its turn; until then a failure must not go unhandled
        ahead.set(next, p);
      }
      const f = files[i]!;
      if (direct?.files.has(f.rel)) {
        const uploadId = await direct.store.uploadOf(f.rel);
        if (uploadId !== null) {
          yield { message: { file: { path: f.rel, size_bytes: f.size, upload_id: uploadId } }, bytes: 0 };
          direct.store.handedOver(uploadId);
          continue;
        }
      }
      yield { message: { file: { path: f.rel, size_bytes: f.size } }, bytes: 0 };
      const read = ahead.get(i);
      if (read) {
        ahead.delete(i);
        const msg = await read;
        if (msg) yield { message: msg, bytes: f.size };
      } else {
        let sent = 0;
        for await (const msg of largeFile(abs(f.rel), f.rel, f.size)) {
          const n = Math.min(CHUNK_BYTES, f.size - sent);
          sent += n;
          yield { message: msg, bytes: n };
        }
      }
    }
  } finally {
    // Stopped early (the call failed): the reads still going finish before their files are let go.
    await Promise.all([...ahead.values()].map((p) => p.catch(() => {})));
  }
}
