// A signal that aborts when another does or when a time is up: what `AbortSignal.any([s,
// AbortSignal.timeout(ms)])` is meant to be, and on Node 20 is not. AbortSignal.any holds its sources
// weakly and AbortSignal.timeout's timer holds its signal weakly too, so a garbage collection before the
// time is up collects the timeout and the combined signal never aborts (nodejs/node#57736): a claim or a
// report bounded that way could wait for ever. Here the timer's callback holds the controller, so the
// timer list keeps it until it fires. Lint forbids the combination (eslint.config.js).

/** Aborts with a TimeoutError (as AbortSignal.timeout does) after `ms`, or with `signal`'s reason first. */
export function deadline(ms: number, signal?: AbortSignal): AbortSignal {
  const ac = new AbortController();
  // Unref'd: a pending deadline keeps no process alive, as AbortSignal.timeout's does not.
  setTimeout(() => ac.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms).unref();
  return signal ? AbortSignal.any([signal, ac.signal]) : ac.signal;
}
