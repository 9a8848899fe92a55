// The cap on concurrent log and watch streams per token: a client that opens thousands of follows holds
// no more than `max` of them; the rest are refused with RESOURCE_EXHAUSTED until one ends. Counted per
// scheduler process (each scheduler caps what it serves).
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';
import type { Principal } from './principal.js';

export class StreamLimiter {
  readonly #open = new Map<string, number>();
  constructor(private readonly max: number) {}

  /** Takes a slot for the caller, or throws RESOURCE_EXHAUSTED; the returned function gives it back (once). */
  acquire(p: Principal): () => void {
    const key = p.kind === 'user' ? `token:${p.tokenId}` : p.kind === 'agent' ? `agent:${p.agent}` : `join:${p.tokenId}`;
    const n = this.#open.get(key) ?? 0;
    if (n >= this.max) {
      throw new TrainyardError(ErrorCodes.ResourceExhausted,
        `this token already has ${n} log/watch streams open (the limit, --max-streams-per-token); end one and try again`);
    }
    this.#open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(key) ?? 1) - 1;
      if (left <= 0) this.#open.delete(key); else this.#open.set(key, left);
    };
  }
}
