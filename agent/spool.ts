// An attempt's spool: one file beside its folder that holds the attempt's whole log in one order, and the
// run's exit status, so both outlive the agent (README, "Runs outlive their agent"). The run's supervisor
// (agent/harness/trainyard_supervisor.py) appends the run's output ("o TEXT", "e TEXT") and at the end its
// exit ("x JSON"); the agent appends its own lines ("a JSON", one write() each, O_APPEND like the
// supervisor's, so records never interleave). The agent ships the file, not what it wrote: a line's
// number is then its place in the file, and an agent that reads the file again after a restart, from the
// position the scheduler had acknowledged (the ".pos" file beside it), gives every line the number it had:
// appends are idempotent on (run, attempt, seq), so no line is lost or stored twice.
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import type { ProcessExit } from './process.js';

export type SpoolStream = 'stdout' | 'stderr' | 'system';

/** Where the scheduler had acknowledged the spool: the byte offset after a record, and the last seq it took. */
export interface SpoolPos { offset: number; seq: number }

/** How often the spool is read while it grows (its lines then wait up to the shipper's batch delay too). */
const POLL_MS = 50;
const READ_CHUNK = 256 * 1024;
/** How often the acknowledged position is written down (a restart re-sends at most what came since). */
const POS_EVERY_MS = 500;

export const posFile = (spool: string) => `${spool}.pos`;

export async function readPos(spool: string): Promise<SpoolPos> {
  try {
    const p = JSON.parse(await readFile(posFile(spool), 'utf8')) as Partial<SpoolPos>;
    if (Number.isSafeInteger(p.offset) && Number.isSafeInteger(p.seq) && p.offset! >= 0 && p.seq! >= 0) return { offset: p.offset!, seq: p.seq! };
  } catch { /* none yet: from the start */ }
  return { offset: 0, seq: 0 };
}

export interface SpoolOptions {
  file: string;
  /** Each record read, in order: the shipper numbers it (LogShipper.give). Returns the last seq given. */
  give: (stream: SpoolStream, text: string) => number;
  /** The run's exit record. */
  onExit?: (exit: ProcessExit) => void;
  /** A line of the run's (stdout or stderr) was read: the stall watch counts it. */
  onRunOutput?: (line: string) => void;
  onWarn?: (msg: string, err: unknown) => void;
}

export class Spool {
  readonly #o: SpoolOptions;
  #writeFd: number | null = null;
  #read: FileHandle | null = null;
  #offset = 0;
  #rest = Buffer.alloc(0);
  #timer: NodeJS.Timeout | null = null;
  #reading: Promise<void> | null = null;
  #stopped = false;
  /** [last seq given for a record, the offset after it], oldest first, until acknowledged. */
  #marks: [number, number][] = [];
  #pos: SpoolPos = { offset: 0, seq: 0 };
  #posWritten = 0;
  #posTimer: NodeJS.Timeout | null = null;
  /** One write of the position at a time; another asked for meanwhile follows it. */
  #posWriting: Promise<void> | null = null;
  #posDirty = false;
  #closed = false;
  /** The agent detaches (agent/detach.ts): no more polling; its own lines still go in, for the next agent. */
  #paused = false;
  exit: ProcessExit | null = null;

  constructor(o: SpoolOptions) { this.#o = o; }

  get file(): string { return this.#o.file; }

  /** A new attempt's spool: created empty (never following a link), and read from its start. */
  create(): void {
    this.#writeFd = openSync(this.#o.file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND | constants.O_NOFOLLOW, 0o600);
  }

  /** An adopted attempt's spool (agent/reattach.ts): read on from `pos`, appended to as before. */
  reopen(pos: SpoolPos): void {
    this.#writeFd = openSync(this.#o.file, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW);
    this.#offset = pos.offset;
    this.#pos = pos;
  }

  /** Appends one of the agent's own lines (any text: JSON keeps it one record); false once the spool is no longer read (give it directly). */
  write(stream: SpoolStream, text: string): boolean {
    if (this.#writeFd === null || this.#stopped) return false;
    try {
      writeSync(this.#writeFd, `a ${JSON.stringify({ s: stream, t: text })}\n`);
      return true;
    } catch (err) {
      this.#o.onWarn?.('could not write a line to the attempt\'s spool', err);
      return false;
    }
  }

  /** Starts reading what is appended, every POLL_MS, until stop(). */
  start(): void {
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped || this.#paused || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.readNow().finally(() => this.#schedule());
    }, POLL_MS);
  }

  /** Reads everything appended so far (one read at a time). */
  readNow(): Promise<void> {
    this.#reading ??= this.#readAll().catch((err: unknown) => this.#o.onWarn?.('could not read the attempt\'s spool', err)).finally(() => { this.#reading = null; });
    return this.#reading;
  }

  async #readAll(): Promise<void> {
    this.#read ??= await open(this.#o.file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const buf = Buffer.alloc(READ_CHUNK);
    for (;;) {
      const { bytesRead } = await this.#read.read(buf, 0, READ_CHUNK, this.#offset + this.#rest.length);
      if (bytesRead === 0) return;
      this.#rest = Buffer.concat([this.#rest, buf.subarray(0, bytesRead)]);
      let nl: number;
      while ((nl = this.#rest.indexOf(10)) >= 0) {
        const rec = this.#rest.subarray(0, nl);
        this.#rest = this.#rest.subarray(nl + 1);
        this.#offset += nl + 1;
        this.#record(rec);
      }
    }
  }

  #record(rec: Buffer): void {
    const tag = rec.subarray(0, 2).toString('latin1');
    const body = rec.subarray(2);
    let seq: number | null = null;
    if (tag === 'o ' || tag === 'e ') {
      const text = new TextDecoder('utf-8', { fatal: false }).decode(body);
      seq = this.#o.give(tag === 'o ' ? 'stdout' : 'stderr', text);
      this.#o.onRunOutput?.(text);
    } else if (tag === 'a ') {
      try {
        const a = JSON.parse(body.toString('utf8')) as { s: SpoolStream; t: string };
        seq = this.#o.give(a.s === 'stdout' || a.s === 'stderr' ? a.s : 'system', String(a.t));
      } catch { /* a torn record cannot happen (one write each); anything else is skipped */ }
    } else if (tag === 'x ') {
      try {
        const x = JSON.parse(body.toString('utf8')) as { code: number | null; signal: string | null };
        this.exit = { code: x.code, signal: x.signal as NodeJS.Signals | null };
        this.#o.onExit?.(this.exit);
      } catch { /* as above */ }
    }
    if (seq !== null) this.#marks.push([seq, this.#offset]);
  }

  /**
   * The shipper acknowledged every line up to `seq`: the offset after the last record wholly acknowledged
   * is written down (at most every POS_EVERY_MS), so a restarted agent re-sends only what came after.
   */
  acked(seq: number): void {
    let i = 0;
    while (i < this.#marks.length && this.#marks[i]![0] <= seq) i++;
    if (i === 0) return;
    const [s, offset] = this.#marks[i - 1]!;
    this.#marks.splice(0, i);
    this.#pos = { offset, seq: s };
    const wait = this.#posWritten + POS_EVERY_MS - Date.now();
    if (wait <= 0) this.#savePos();
    else this.#posTimer ??= setTimeout(() => { this.#posTimer = null; this.#savePos(); }, wait);
  }

  #savePos(): void {
    if (this.#closed) return;
    if (this.#posWriting) { this.#posDirty = true; return; }
    this.#posWriting = this.#writePos().finally(() => {
      this.#posWriting = null;
      if (this.#posDirty) { this.#posDirty = false; this.#savePos(); }
    });
  }

  async #writePos(): Promise<void> {
    this.#posWritten = Date.now();
    const tmp = `${posFile(this.#o.file)}.tmp`;
    await writeFile(tmp, JSON.stringify(this.#pos), { mode: 0o600 }).then(() => rename(tmp, posFile(this.#o.file)))
      .catch((err: unknown) => this.#o.onWarn?.('could not write the spool\'s position', err));
  }

  /**
   * The agent detaches: reads to the end of what is there now and stops polling. Lines appended from here
   * on (the run's, the agent's own) stay in the file, unread: the agent that takes the run over reads them.
   */
  async pause(): Promise<void> {
    this.#paused = true;
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    await this.#reading;
    await this.readNow();
  }

  /** Reads to the end of what is there, then stops reading (the agent's own lines still go in until close). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    await this.#reading;
    await this.readNow();
  }

  /** Closes the files; `remove`: the spool and its position go too (the attempt has ended here). */
  async close(remove: boolean): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#posTimer) { clearTimeout(this.#posTimer); this.#posTimer = null; }
    await this.#posWriting;
    // Kept for a restarted agent: the position acknowledged last is written down now, not POS_EVERY_MS later.
    if (!remove && !this.#closed) await this.#writePos();
    this.#closed = true;
    if (this.#writeFd !== null) { try { closeSync(this.#writeFd); } catch { /* closed */ } this.#writeFd = null; }
    await this.#read?.close().catch(() => {});
    this.#read = null;
    if (remove) for (const f of [this.#o.file, posFile(this.#o.file), `${posFile(this.#o.file)}.tmp`]) await rm(f, { force: true });
  }
}
