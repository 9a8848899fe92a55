// Ships an attempt's output to the scheduler: every line gets the next sequence number and batches go out
// one at a time, in order, each retried until the scheduler acknowledges it (appends are idempotent on
// (run, attempt, seq)), so each line lands exactly once and in order.
//
// While the scheduler is away, one loop retries with capped, jittered backoff (a few tries a minute, not
// thousands a second), the oldest lines wait in memory up to a bound, and the lines past it go to a spill
// file that is read back in order once the scheduler answers again: memory stays flat for any outage and
// no line is dropped (unless the agent's own disk is full too, which is said in the log).
import { errorMessage } from '../shared/errors.js';
import { retry } from '../shared/retry.js';
import { LogSpill } from './log-spill.js';
import { MAX_LINE, type ShippedLine } from './lines.js';


const MAX_BATCH = 500;

export interface LogSink {
  /**
   * Appends a batch; `stop` says the attempt is no longer current (or is to stop); `taken: false`, that the
   * scheduler stored none of it (the attempt had ended or been taken back). The signal cancels a call in flight.
   */
  append(lines: ShippedLine[], signal: AbortSignal): Promise<{ stop: boolean; taken?: boolean }>;
}

export interface LogShipperOptions {
  sink: LogSink;
  /** Where lines past the memory bound wait. Created when first needed; removed by close(). */
  spillFile: string;
  /** Fires when the agent gives up shipping (it is stopping): what is not shipped by then stays unshipped. */
  signal: AbortSignal;
  /** The scheduler said the attempt is no longer current. */
  onStop: () => void;
  /** Problems worth a line in the agent's log (retries, lines that could not be kept). */
  onWarn?: (msg: string, err?: unknown) => void;
  /** Whether a failed append is worth another try; a permanent refusal drops that batch. Default: all are. */
  isRetryable?: (err: unknown) => boolean;
  /** The most bytes the spill file holds unread (agent/log-spill.ts); absent: no cap. */
  maxSpillBytes?: number;
  /** Bytes of line text kept in memory before lines go to the spill file. Default 4 MiB. */
  maxMemoryBytes?: number;
  /** The backoff between tries of one batch. Defaults: 250 ms doubling to 10 s, ±50 %. */
  baseMs?: number;
  capMs?: number;
  /** How long a line waits for company before a batch goes out. Default 100 ms. */
  batchDelayMs?: number;
  /** Applied to every line before it is kept anywhere (agent/secrets.ts masks the run's secrets). */
  redact?: (text: string) => string;
  /** Told each sequence number up to which every line is acknowledged (agent/spool.ts writes its position down). */
  onAcked?: (seq: number) => void;
}

/** What a line costs in memory, roughly: UTF-16 text plus the record around it. */
const cost = (l: ShippedLine) => 2 * l.text.length + 120;

export class LogShipper {
  readonly #o: LogShipperOptions;
  readonly #signal: AbortSignal;
  readonly #closed = new AbortController();
  readonly #spill: LogSpill;
  #seq = 0;
  #acked = 0;
  // Unsent lines, oldest first: #memory, then (once memory was full) #spill. New lines go to the spill
  // while it holds any, so the order never changes.
  #memory: ShippedLine[] = [];
  #memoryBytes = 0;
  #pump: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #waiters: { seq: number; resolve: (shipped: boolean) => void }[] = [];
  #sends = 0;
  /** The scheduler answered a batch without storing it: this attempt is no longer current there. */
  #notCurrent = false;
  #lostReported = 0;
  /** takeRest() is waiting for the batch in flight: no other starts. */
  #taking = false;

  constructor(o: LogShipperOptions) {
    this.#o = o;
    this.#signal = AbortSignal.any([o.signal, this.#closed.signal]);
    this.#spill = new LogSpill(o.spillFile, (err) => o.onWarn?.('could not spill log lines to disk; they are lost', err), o.maxSpillBytes);
    this.#signal.addEventListener('abort', () => {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      for (const w of this.#waiters.splice(0)) w.resolve(false);
    }, { once: true });
  }

  /** The last sequence number given out. */
  get lastSeq(): number { return this.#seq; }
  /** The last sequence number the scheduler acknowledged (or refused for good). */
  get ackedSeq(): number { return this.#acked; }

  /** For tests and diagnostics. */
  stats() {
    return { memoryLines: this.#memory.length, memoryBytes: this.#memoryBytes, spilledBytes: this.#spill.bytes, sends: this.#sends, lost: this.#spill.lost };
  }

  /**
   * Where line() sends a line first, when set (agent/spool.ts: the attempt's spool file, read back in one
   * order and given here); returning false gives it here at once (the spool no longer reads).
   */
  tee: ((stream: 'stdout' | 'stderr' | 'system', raw: string) => boolean) | null = null;

  /** An adopted attempt (agent/reattach.ts): the scheduler holds every line up to `seq`; numbering goes on from there. */
  resumeAt(seq: number): void {
    this.#seq = Math.max(this.#seq, seq);
    this.#acked = Math.max(this.#acked, seq);
  }

  line(stream: 'stdout' | 'stderr' | 'system', raw: string): void {
    if (this.tee?.(stream, raw)) return;
    this.give(stream, raw);
  }

  /** Numbers a line and queues it for shipping (line() without the spool). */
  give(stream: 'stdout' | 'stderr' | 'system', raw: string): void {
    if (this.#closed.signal.aborted) return;
    const text = this.#o.redact ? this.#o.redact(raw) : raw;
    const maxMemory = this.#o.maxMemoryBytes ?? 4 * 1024 * 1024;
    for (let i = 0; i === 0 || i < text.length; i += MAX_LINE) {
      const l: ShippedLine = { seq: ++this.#seq, stream, text: text.slice(i, i + MAX_LINE), at: new Date().toISOString() };
      if (this.#spill.empty && this.#memoryBytes + cost(l) <= maxMemory) {
        this.#memory.push(l);
        this.#memoryBytes += cost(l);
      } else {
        this.#spill.push(l);
      }
    }
    if (this.#signal.aborted) return;
    if (this.#memory.length >= MAX_BATCH) this.#kick();
    else this.#timer ??= setTimeout(() => { this.#timer = null; this.#kick(); }, this.#o.batchDelayMs ?? 100);
  }

  /**
   * Resolves true once every line given so far is acknowledged, false if the shipper gave up first (the
   * agent is stopping).
   */
  flush(): Promise<boolean> {
    if (this.#acked >= this.#seq) return Promise.resolve(true);
    if (this.#signal.aborted) return Promise.resolve(false);
    const p = new Promise<boolean>((resolve) => this.#waiters.push({ seq: this.#seq, resolve }));
    this.#kick();
    return p;
  }

  /**
   * The lines not shipped yet, for the attempt's end report to carry (one call instead of a last batch
   * and then the report), once no batch is in flight (so the order holds): all of them if they wait in
   * memory and fit one batch; null if not (a spill, too many, shipping given up): flush() them instead.
   * The caller answers for the lines it takes: the report is retried as a batch would be.
   */
  async takeRest(): Promise<ShippedLine[] | null> {
    // No new batch starts meanwhile (the loop stops after the one in flight).
    this.#taking = true;
    try {
      if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
      await this.#pump;
      if (this.#signal.aborted || !this.#spill.empty || this.#memory.length > MAX_BATCH || this.#spill.lost > this.#lostReported) return null;
      const rest = this.#memory.splice(0);
      this.#memoryBytes = 0;
      this.#acknowledge(this.#seq);
      return rest;
    } finally {
      this.#taking = false;
    }
  }

  /**
   * Sends lines takeRest() gave out after all: the end report that was to carry them was refused for good
   * (a field of its own, not the lines). Retried as a batch is, until `signal`; refused for good in turn,
   * they are said to be dropped. Resolves true once the scheduler took them.
   */
  async sendTaken(lines: ShippedLine[], signal: AbortSignal): Promise<boolean> {
    // No batch of lines given since goes out meanwhile (they come after these): the loop waits, as for
    // takeRest, and is kicked after.
    this.#taking = true;
    try {
      await this.#pump;
      return await this.#sendTaken(lines, signal);
    } finally {
      this.#taking = false;
      this.#kick();
    }
  }

  async #sendTaken(lines: ShippedLine[], signal: AbortSignal): Promise<boolean> {
    let all = true;
    for (let i = 0; i < lines.length; i += MAX_BATCH) {
      const batch = lines.slice(i, i + MAX_BATCH);
      try {
        const { taken } = await this.#append(batch, signal);
        if (taken === false) throw new Error('the scheduler no longer holds this attempt as current');
      } catch (err) {
        all = false;
        if (!signal.aborted) this.#o.onWarn?.(`log lines ${batch[0]!.seq}..${batch.at(-1)!.seq} refused; dropped: ${errorMessage(err)}`, err);
      }
    }
    return all;
  }

  /** Appends one batch, retried with capped, jittered backoff until acknowledged, refused for good, or `signal`. */
  #append(batch: ShippedLine[], signal: AbortSignal, onRetry?: (err: unknown, n: number, ms: number) => void) {
    return retry(() => { this.#sends++; return this.#o.sink.append(batch, signal); }, {
      retries: Infinity, baseMs: this.#o.baseMs ?? 250, capMs: this.#o.capMs ?? 10_000, jitter: 0.5, signal,
      ...(this.#o.isRetryable ? { isRetryable: this.#o.isRetryable } : {}),
      ...(onRetry ? { onRetry } : {}),
    });
  }

  /** Stops shipping and removes the spill file. */
  close(): void {
    this.#closed.abort();
    this.#spill.remove();
  }

  #kick(): void {
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    if (this.#pump || this.#taking || this.#signal.aborted) return;
    this.#pump = this.#run().then(
      () => {
        this.#pump = null;
        // A line given between the loop's last look and now would otherwise wait for the next one.
        if (this.#memory.length || !this.#spill.empty) this.#kick();
      },
      (err: unknown) => {
        this.#pump = null;
        if (!this.#signal.aborted) this.#o.onWarn?.('log shipping stopped', err);
        for (const w of this.#waiters.splice(0)) w.resolve(false);
      },
    );
  }

  /** The one loop that sends: a batch at a time, each until acknowledged, until nothing is left. */
  async #run(): Promise<void> {
    while (!this.#signal.aborted && !this.#taking) {
      if (!this.#memory.length && !this.#spill.empty) {
        for (const l of await this.#spill.take((this.#o.maxMemoryBytes ?? 4 * 1024 * 1024) / 2)) {
          this.#memory.push(l);
          this.#memoryBytes += cost(l);
        }
      }
      const batch = this.#memory.slice(0, MAX_BATCH);
      if (!batch.length) {
        // Nothing left in memory or on disk: every line given out is acknowledged or was lost.
        this.#acknowledge(this.#seq);
        if (this.#reportLost()) continue;
        return;
      }
      let stop = false;
      let taken: boolean | undefined = true;
      // Nothing more of this attempt would be stored (the warning below said so once): not sent.
      if (!this.#notCurrent) {
        try {
          ({ stop, taken } = await this.#append(batch, this.#signal, (err, n, ms) => {
            if (n === 1 || n % 10 === 0) this.#o.onWarn?.(`log batch not acknowledged (try ${n}); retrying in ${Math.round(ms)} ms`, err);
          }));
        } catch (err) {
          if (this.#signal.aborted) return;
          // Refused for good: those lines will never be taken, and holding them would hold every line after.
          this.#o.onWarn?.(`log lines ${batch[0]!.seq}..${batch.at(-1)!.seq} refused; dropped: ${errorMessage(err)}`, err);
        }
      }
      // Answered, but not stored: no later try can store them or any later line, so they are dropped, and
      // said so once.
      if (taken === false) {
        this.#notCurrent = true;
        this.#o.onWarn?.(`log lines from ${batch[0]!.seq} not stored: the scheduler no longer holds this attempt as current (it ended or was taken back); they and any later lines of it are dropped`);
      }
      this.#memory.splice(0, batch.length);
      for (const l of batch) this.#memoryBytes -= cost(l);
      this.#reportLost();
      this.#acknowledge(batch.at(-1)!.seq);
      if (stop) this.#o.onStop();
    }
  }

  #acknowledge(seq: number): void {
    this.#acked = Math.max(this.#acked, seq);
    this.#o.onAcked?.(this.#acked);
    for (const w of this.#waiters.filter((w) => w.seq <= this.#acked)) {
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.resolve(true);
    }
  }

  /** Lines the spill could not keep are said once the scheduler listens again, in the run's own log. */
  #reportLost(): boolean {
    const lost = this.#spill.lost;
    if (lost <= this.#lostReported) return false;
    this.line('system', `[trainyard] ${lost - this.#lostReported} log lines were lost: the agent could not keep them (its disk is full?)`);
    this.#lostReported = lost;
    return true;
  }
}
