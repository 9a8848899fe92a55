// Time limits that hold for any length, on Node 20:
// - `AbortSignal.any([s, AbortSignal.timeout(ms)])` never aborts once the timeout is garbage collected:
//   AbortSignal.any holds its sources weakly, and AbortSignal.timeout's timer holds its signal weakly too
//   (nodejs/node#57736), so a claim or a report bounded that way could wait for ever. deadline() holds its
//   controller from the timer, so the timer list keeps it until it fires; lint forbids the combination
//   (eslint.config.js).
// - setTimeout takes at most 2^31 - 1 ms (24.8 days): a longer delay is set to 1 ms, with only a warning,
//   so a run submitted with --timeout of 30 days (the CLI's maximum) was timed out as it started. after()
//   waits in steps of at most that.

/** The longest delay setTimeout keeps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer of any length (after()); cancel() before it fires stops it. */
export interface LongTimer { cancel(): void }

/**
 * Calls `fn` once `ms` have passed, however long that is. `unref`: keeps no process alive (as
 * AbortSignal.timeout does not). `stepMs` is for tests (what a step may be at most).
 */
export function after(ms: number, fn: () => void, o: { unref?: boolean; stepMs?: number } = {}): LongTimer {
  const step = Math.min(o.stepMs ?? MAX_TIMER_MS, MAX_TIMER_MS);
  let timer: NodeJS.Timeout;
  const arm = (left: number) => {
    timer = left > step ? setTimeout(() => arm(left - step), step) : setTimeout(fn, Math.max(0, left));
    if (o.unref) timer.unref();
  };
  arm(ms);
  return { cancel: () => clearTimeout(timer) };
}

/** Aborts with a TimeoutError (as AbortSignal.timeout does) after `ms`, or with `signal`'s reason first. */
export function deadline(ms: number, signal?: AbortSignal): AbortSignal {
  const ac = new AbortController();
  after(ms, () => ac.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), { unref: true });
  return signal ? AbortSignal.any([signal, ac.signal]) : ac.signal;
}
