// A first-in first-out queue of log lines on disk, for the lines that do not fit in memory while the
// scheduler is away: appended as JSON lines, read back in order from a byte cursor, and truncated once
// read to the end. Writes are synchronous so a line is on disk (or counted as lost) before line() returns,
// and buffered so a chatty train.py costs one write per WRITE_CHUNK, not one per line. The file holds at
// most `maxBytes` (--log-spill-mb): a run that prints gigabytes while the scheduler is away must
// not fill the agent's disk (and fail every other run on it); lines past the cap are lost and counted.
import { appendFileSync, mkdirSync, rmSync, truncateSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { ShippedLine } from './lines.js';

const WRITE_CHUNK = 256 * 1024;

/** The spill is at its cap: the lines that did not fit are lost (counted in `lost`). */
export class LogSpillFull extends Error {}

export class LogSpill {
  #pending: string[] = [];
  #pendingBytes = 0;
  #written = 0; // bytes in the file
  #read = 0; // bytes of the file already read back
  #lost = 0;

  constructor(readonly file: string, private readonly onError: (err: unknown) => void = () => {}, private readonly maxBytes = Infinity) {}

  /** Lines on disk (or about to be) that have not been read back. */
  get empty(): boolean { return this.#pendingBytes === 0 && this.#read >= this.#written; }
  /** Bytes not yet read back. */
  get bytes(): number { return this.#written - this.#read + this.#pendingBytes; }
  /** Lines that could not be written (the agent's disk is full): they are gone. */
  get lost(): number { return this.#lost; }

  push(line: ShippedLine): void {
    const s = JSON.stringify(line) + '\n';
    this.#pending.push(s);
    this.#pendingBytes += Buffer.byteLength(s);
    if (this.#pendingBytes >= WRITE_CHUNK) this.#writePending();
  }

  #writePending(): void {
    if (!this.#pending.length) return;
    const data = this.#pending.join('');
    const lines = this.#pending.length;
    this.#pending = [];
    this.#pendingBytes = 0;
    const size = Buffer.byteLength(data);
    if (this.#written + size > this.maxBytes) {
      this.#lost += lines;
      this.onError(new LogSpillFull(`the log spill holds its cap of ${this.maxBytes} bytes (--log-spill-mb); ${lines} line(s) dropped`));
      return;
    }
    try {
      if (this.#written === 0) mkdirSync(path.dirname(this.file), { recursive: true });
      appendFileSync(this.file, data);
      this.#written += size;
    } catch (err) {
      this.#lost += lines;
      this.onError(err);
    }
  }

  /** Reads back the oldest lines, about maxBytes of them (at least one when any are left). */
  async take(maxBytes: number): Promise<ShippedLine[]> {
    this.#writePending();
    if (this.#read >= this.#written) return [];
    const chunk = await this.#readLines(maxBytes);
    // The cursor moves only now, after the last await: until the caller has these lines, the spill must
    // not look empty, or a line given meanwhile would go to memory ahead of them (out of order).
    this.#read += chunk.length;
    const lines = chunk.subarray(0, chunk.length - 1).toString('utf8').split('\n').map((l) => JSON.parse(l) as ShippedLine);
    if (this.#read >= this.#written && !this.#pending.length) this.#reset();
    return lines;
  }

  /** The whole lines (with their final newline) from the read cursor, about maxBytes of them. */
  async #readLines(maxBytes: number): Promise<Buffer> {
    const fh = await open(this.file, 'r');
    try {
      let size = Math.min(maxBytes, this.#written - this.#read);
      for (;;) {
        const buf = Buffer.alloc(size);
        const { bytesRead } = await fh.read(buf, 0, size, this.#read);
        const end = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
        if (end >= 0) return buf.subarray(0, end + 1);
        // One line longer than maxBytes: read further rather than never making progress.
        if (size >= this.#written - this.#read) throw new Error(`log spill ${this.file} ends without a newline`);
        size = Math.min(size * 2, this.#written - this.#read);
      }
    } finally {
      await fh.close();
    }
  }

  /** Everything was read back: start the file over so it does not grow for the whole attempt. */
  #reset(): void {
    try { truncateSync(this.file, 0); } catch { /* removed already */ }
    this.#written = 0;
    this.#read = 0;
  }

  remove(): void {
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#written = 0;
    this.#read = 0;
    rmSync(this.file, { force: true });
  }
}
