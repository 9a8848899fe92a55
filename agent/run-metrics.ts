// An attempt's metrics, from train.py to the scheduler. train.py's `import trainyard` (agent/harness/lib)
// buffers points in its own process and appends them, a JSON line per flush, to a file this agent made
// for the attempt (TRAINYARD_METRICS_FILE); this reads the file's new whole lines every READ_MS, checks each
// point, packs them into numbered records and ships those with a LogShipper of their own: the same
// one-batch-at-a-time order, the same retries while the scheduler is away, the same memory bound and spill
// file on the agent's disk, so a point is stored once and in order (AppendMetrics is idempotent on the
// record number) or said to be lost. The agent's own samples of the run (system metrics) go the same way.
//
// The file is made and opened by the agent before any of the run's code runs, and read through that one
// descriptor: whatever the run later does to the path (a link, a FIFO, a swap) does not change what is read.
import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { LogShipper, type LogShipperOptions } from './log-shipper.js';
import { MAX_LINE } from './lines.js';
import { encodeValue, toMetricPoint } from '../shared/metric-points.js';

const READ_MS = 250;
/** Bytes read from the file per look: a run that logs faster is read over several looks. */
const READ_CHUNK = 4 * 1024 * 1024;
/** A line longer than this is not train.py's module (it writes at most a flush's worth per line). */
const MAX_FILE_LINE = 256 * 1024 * 1024;

export interface RunMetricsOptions extends Omit<LogShipperOptions, 'redact' | 'maxMemoryBytes'> {
  /** Problems with what the run wrote: said once per kind in the run's own log. */
  onRunWarning: (msg: string) => void;
}

export class RunMetrics {
  readonly #shipper: LogShipper;
  readonly #o: RunMetricsOptions;
  #fh: FileHandle | null = null;
  #offset = 0;
  #rest = Buffer.alloc(0);
  #timer: NodeJS.Timeout | null = null;
  #reading: Promise<void> | null = null;
  #record: string[] = [];
  #recordChars = 2;
  #badPoints = 0;
  #warned = new Set<string>();
  /** Points handed to the shipper (for tests and the attempt's end line). */
  points = 0;

  constructor(o: RunMetricsOptions) {
    this.#o = o;
    // Points are small and many: more of them wait in memory than log lines do.
    this.#shipper = new LogShipper({ ...o, maxMemoryBytes: 16 * 1024 * 1024 });
  }

  /**
   * Makes the attempt's metrics file (empty, the run's user's when it has one, so train.py can append) and
   * opens it for reading. Before the run's code runs.
   */
  async create(file: string, owner: { uid: number; gid: number } | null): Promise<void> {
    // A process set up again (one called off before it started) keeps the file made the first time.
    if (this.#fh) return;
    const made = await open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    try {
      if (owner) await made.chown(owner.uid, owner.gid);
    } finally {
      await made.close();
    }
    this.#fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  }

  /** Starts reading as the run's process starts. */
  start(): void {
    if (!this.#fh || this.#timer) return;
    this.#timer = setInterval(() => { void this.#look(); }, READ_MS);
  }

  /** One system sample (the agent's own points, named "sys/..."), on the run's step axis for that name. */
  sample(values: Record<string, number>, t = Date.now() / 1000): void {
    for (const [name, v] of Object.entries(values)) this.#add(JSON.stringify([name, null, encodeValue(v), t]));
    this.#seal();
  }

  /** The run's process is gone: the rest of the file is read and handed to the shipper. */
  async finish(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#look();
    while (this.#fh && await this.#readOnce()) { /* until the end of the file */ }
    this.#seal();
    await this.#fh?.close().catch(() => null);
    this.#fh = null;
  }

  /** Resolves true once every record handed over is stored, false if the agent gave up first. */
  flush(): Promise<boolean> { return this.#shipper.flush(); }

  stats() { return { points: this.points, badPoints: this.#badPoints, ...this.#shipper.stats() }; }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    void this.#fh?.close().catch(() => null);
    this.#fh = null;
    this.#shipper.close();
  }

  #look(): Promise<void> {
    // One read at a time: the offset moves only forward, in order.
    this.#reading ??= (async () => {
      try {
        await this.#readOnce();
        this.#seal();
      } finally {
        this.#reading = null;
      }
    })();
    return this.#reading;
  }

  /** Reads up to READ_CHUNK new bytes; true when it read a full chunk (more may wait). */
  async #readOnce(): Promise<boolean> {
    const fh = this.#fh;
    if (!fh) return false;
    let bytesRead = 0;
    let buf: Buffer;
    try {
      // Only what is there is read, into a buffer of that size: a 4 MiB buffer zeroed at every look of
      // every run (most find nothing new) cost a burst of short runs 5 ms of the agent's thread per run.
      // Not zeroed: only the bytes read are used.
      const { size } = await fh.stat();
      if (size <= this.#offset) return false;
      buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - this.#offset));
      ({ bytesRead } = await fh.read(buf, 0, buf.length, this.#offset));
    } catch (err) {
      this.#warnRun('read', `[trainyard] metrics: could not read the metrics file: ${(err as Error).message}`);
      return false;
    }
    if (!bytesRead) return false;
    this.#offset += bytesRead;
    let data = Buffer.concat([this.#rest, buf.subarray(0, bytesRead)]);
    let nl: number;
    while ((nl = data.indexOf(0x0a)) >= 0) {
      this.#line(data.subarray(0, nl).toString('utf8'));
      data = data.subarray(nl + 1);
    }
    if (data.length > MAX_FILE_LINE) {
      this.#warnRun('long', '[trainyard] metrics: a line of the metrics file was too long; it was dropped');
      data = Buffer.alloc(0);
    }
    this.#rest = Buffer.from(data);
    return bytesRead === READ_CHUNK;
  }

  /** One flush of train.py's module: a JSON array of points. */
  #line(text: string): void {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      this.#warnRun('json', '[trainyard] metrics: a line of the metrics file is not JSON; it was dropped');
      return;
    }
    if (!Array.isArray(raw)) return this.#warnRun('json', '[trainyard] metrics: a line of the metrics file is not a list of points; it was dropped');
    for (const x of raw) {
      const p = toMetricPoint(x);
      // sys/ names are the agent's: the run cannot write into them.
      if (!p || (!p.summary && p.name.startsWith('sys/'))) {
        this.#badPoints++;
        this.#warnRun('point', `[trainyard] metrics: dropped a point that is not [name, step, value, time]: ${JSON.stringify(x).slice(0, 200)}`);
        continue;
      }
      this.#add(JSON.stringify([p.summary ? `=${p.name}` : p.name, p.step, encodeValue(p.value), p.t]));
    }
  }

  /** Adds an encoded point to the record being filled; a full record goes to the shipper. */
  #add(point: string): void {
    // A record is one shipped "line", which the shipper cuts at MAX_LINE characters: it must stay below.
    if (this.#recordChars + point.length + 1 > MAX_LINE) this.#seal();
    this.#record.push(point);
    this.#recordChars += point.length + 1;
    this.points++;
  }

  #seal(): void {
    if (!this.#record.length) return;
    this.#shipper.line('stdout', `[${this.#record.join(',')}]`);
    this.#record = [];
    this.#recordChars = 2;
  }

  #warnRun(kind: string, msg: string): void {
    if (this.#warned.has(kind)) return;
    this.#warned.add(kind);
    this.#o.onRunWarning(msg);
  }
}
