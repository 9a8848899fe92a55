// The one retry loop: storage transfers, the agent's calls to the scheduler and the log shipper all back
// off the same way (exponential from baseMs, capped at capMs, jittered so a fleet of agents that lost the
// scheduler together does not come back in lockstep), stop at once on a permanent error, and stop when
// their AbortSignal fires.
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions {
  /** Retries after the first try; Infinity retries until success, a permanent error or the signal. */
  retries: number;
  /** The first delay; each retry doubles it. */
  baseMs: number;
  /** No delay is longer than this (before jitter). */
  capMs: number;
  /** Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]; 0 means none. Default 0.25. */
  jitter?: number;
  /** Stops the waiting and the retrying; the loop then throws the signal's reason. */
  signal?: AbortSignal;
  /** Whether an error is worth another try. Default: every error is. */
  isRetryable?: (err: unknown) => boolean;
  /** Called before each wait: the error, the retry number (1 for the first retry) and the delay. */
  onRetry?: (err: unknown, retry: number, delayMs: number) => void;
  /** For tests: the random source for the jitter (default Math.random). */
  random?: () => number;
}

/** The delay before retry number `retry` (1-based). */
export function backoffDelay(retry: number, o: Pick<RetryOptions, 'baseMs' | 'capMs' | 'jitter' | 'random'>): number {
  const exp = Math.min(o.capMs, o.baseMs * 2 ** Math.min(retry - 1, 52));
  const jitter = o.jitter ?? 0.25;
  const r = (o.random ?? Math.random)();
  return Math.max(0, exp * (1 - jitter + 2 * jitter * r));
}

/** The error thrown when the retries are spent; `cause` is the last error, `tries` how many were made. */
export class RetriesExhausted extends Error {
  constructor(readonly tries: number, cause: unknown) {
    super(`gave up after ${tries} tries: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'RetriesExhausted';
  }
}

/**
 * Runs `op` until it succeeds. A permanent error (isRetryable false) is thrown as it is; when the retries
 * are spent a RetriesExhausted wraps the last error; when the signal fires, its reason is thrown (as
 * AbortSignal.throwIfAborted does), whether it fired during a try or during a wait.
 */
export async function retry<T>(op: (tryNumber: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const isRetryable = o.isRetryable ?? (() => true);
  for (let n = 1; ; n++) {
    o.signal?.throwIfAborted();
    try {
      return await (o.signal ? settledOrAborted(op(n), o.signal) : op(n));
    } catch (err) {
      o.signal?.throwIfAborted();
      if (!isRetryable(err)) throw err;
      if (n > o.retries) throw new RetriesExhausted(n, err);
      const delay = backoffDelay(n, o);
      o.onRetry?.(err, n, delay);
      await sleep(delay, undefined, o.signal ? { signal: o.signal } : undefined).catch(() => {});
    }
  }
}

/**
 * `p`, or the signal's reason once it fired: a try that never settles (a server that accepted the
 * connection and never answers; no client library here times a request out by itself) must not hold its
 * caller past an abort, a deadline's included (issue 20). A try that honours the signal settles at once,
 * and is waited for (up to ABANDON_AFTER_MS), so that nothing it does is left running after its caller
 * moved on (a file still being written into a folder being removed); only a hung one is abandoned.
 */
const ABANDON_AFTER_MS = 2000;
function settledOrAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => reject(signal.reason), ABANDON_AFTER_MS);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const done = () => { clearTimeout(timer); signal.removeEventListener('abort', onAbort); };
    p.then((v) => { done(); resolve(v); }, (e: unknown) => { done(); reject(signal.aborted ? signal.reason : e); });
  });
}
