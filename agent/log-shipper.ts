// Ships an attempt's output to the scheduler: every line gets the next sequence number, batches go out
// one at a time in order, and a batch is retried until the scheduler acknowledges it (appends are
// idempotent on (run, attempt, seq)), so each line lands exactly once and in order.
import { setTimeout as sleep } from 'node:timers/promises';
import type { LogLine } from '../shared/proto.js';

const MAX_LINE = 16 * 1024;
const MAX_BATCH = 500;

export interface LogSink {
  append(lines: LogLine[]): Promise<{ stop: boolean }>;
}

export class LogShipper {
  #seq = 0;
  #queue: LogLine[] = [];
  #flushing: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #onStop: () => void;

  constructor(private readonly sink: LogSink, private readonly signal: AbortSignal, onStop: () => void) {
    this.#onStop = onStop;
  }

  get lastSeq(): number { return this.#seq; }

  line(stream: 'stdout' | 'stderr' | 'system', text: string): void {
    for (let i = 0; i === 0 || i < text.length; i += MAX_LINE) {
      this.#queue.push({ seq: ++this.#seq, stream, text: text.slice(i, i + MAX_LINE), at: new Date().toISOString() });
    }
    if (this.#queue.length >= MAX_BATCH) void this.flush();
    else this.#timer ??= setTimeout(() => { this.#timer = null; void this.flush(); }, 100);
  }

  /** Sends everything queued so far; resolves once the scheduler has it. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#queue.length === 0) return;
    this.#flushing = this.#send().finally(() => { this.#flushing = null; });
    await this.#flushing;
    if (this.#queue.length) await this.flush();
  }

  async #send(): Promise<void> {
    const batch = this.#queue.slice(0, MAX_BATCH);
    for (let attempt = 0; ; attempt++) {
      try {
        const { stop } = await this.sink.append(batch);
        this.#queue.splice(0, batch.length);
        if (stop) this.#onStop();
        return;
      } catch {
        if (this.signal.aborted) return;
        await sleep(Math.min(5000, 100 * 2 ** attempt), undefined, { signal: this.signal }).catch(() => {});
      }
    }
  }
}

/** Splits a byte stream into lines, decoding UTF-8 leniently (binary bytes become U+FFFD, not errors). */
export function lineSplitter(onLine: (text: string) => void): { write(chunk: Buffer): void; end(): void } {
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let rest = '';
  return {
    write(chunk) {
      rest += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf('\n')) >= 0) {
        onLine(rest.slice(0, nl).replace(/\r$/, ''));
        rest = rest.slice(nl + 1);
      }
      // A pathological line without newlines is cut so memory stays bounded.
      while (rest.length > MAX_LINE * 4) { onLine(rest.slice(0, MAX_LINE)); rest = rest.slice(MAX_LINE); }
    },
    end() {
      rest += decoder.decode();
      if (rest.length) onLine(rest);
      rest = '';
    },
  };
}
