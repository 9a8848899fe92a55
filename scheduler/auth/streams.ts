// Every open stream of a client token, per scheduler process: gRPC server streams (logs, watch, events,
// downloads) and the console's SSE streams and file downloads. Two jobs:
//  - the cap: a client that opens thousands of follows holds no more than `max` of them; the rest are
//    refused with RESOURCE_EXHAUSTED until one ends (each scheduler caps what it serves);
//  - the end: a stream lives no longer than its token. A token's streams were authenticated once, when they
//    opened; while any are open, their tokens are read again every RECHECK_MS (one query for all of them),
//    and the streams of a token found revoked, expired or gone are ended with UNAUTHENTICATED. The re-read
//    is what makes it work across schedulers: a revocation on scheduler 1 ends scheduler 2's streams
//    within RECHECK_MS plus a query, with no message between them. A revocation on this scheduler ends them
//    at once (`endToken`).
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';
import type { Principal } from './principal.js';
import { deadTokens } from './tokens.js';

/** How often open streams' tokens are read again: well inside the 5 s a revocation may take to end them. */
export const RECHECK_MS = 1000;

/** What ends a stream from outside: it sends `err` to its client (if it can) and stops its producer. */
export type EndStream = (err: TrainyardError) => void;

export class StreamLimiter {
  readonly #open = new Map<string, number>();
  /** The end functions of open streams, by client token id. */
  readonly #byToken = new Map<string, Set<EndStream>>();
  #timer: NodeJS.Timeout | undefined;
  #checking = false;

  /**
   * `db` (when given) is where tokens are read again; `onDead` is told of each token found dead (the
   * verifier forgets it, so that the next call with it is refused at once).
   */
  constructor(private readonly max: number, private readonly o: { db?: Db; log?: Logger; onDead?: (tokenId: string) => void } = {}) {}

  /**
   * Takes a slot for the caller, or throws RESOURCE_EXHAUSTED; the returned function gives it back (once).
   * `end` is called (at most once, and not after the release) if the caller's token dies while the stream is open.
   */
  acquire(p: Principal, end?: EndStream): () => void {
    const key = p.kind === 'user' ? `token:${p.tokenId}` : p.kind === 'agent' ? `agent:${p.agent}` : `join:${p.tokenId}`;
    const n = this.#open.get(key) ?? 0;
    if (n >= this.max) {
      throw new TrainyardError(ErrorCodes.ResourceExhausted,
        `this token already has ${n} log/watch streams open (the limit, --max-streams-per-token); end one and try again`);
    }
    this.#open.set(key, n + 1);
    const tokenId = p.kind === 'user' ? p.tokenId : null;
    let once: EndStream | undefined;
    if (tokenId && end) {
      once = (err) => { release(); end(err); };
      let set = this.#byToken.get(tokenId);
      if (!set) this.#byToken.set(tokenId, (set = new Set()));
      set.add(once);
      this.#arm();
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(key) ?? 1) - 1;
      if (left <= 0) this.#open.delete(key); else this.#open.set(key, left);
      if (tokenId && once) {
        const set = this.#byToken.get(tokenId);
        set?.delete(once);
        if (set?.size === 0) this.#byToken.delete(tokenId);
      }
    };
    return release;
  }

  /** Ends every open stream of the token now, with `reason` (UNAUTHENTICATED). */
  endToken(tokenId: string, reason: string): void {
    const set = this.#byToken.get(tokenId);
    if (!set) return;
    this.#byToken.delete(tokenId);
    const err = new TrainyardError(ErrorCodes.Unauthenticated, reason);
    for (const end of set) end(err);
  }

  /** Stops the re-reads (the scheduler is stopping). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The re-read runs only while some token has a stream open. */
  #arm(): void {
    if (this.#timer || !this.o.db) return;
    this.#timer = setInterval(() => void this.#recheck(), RECHECK_MS);
    this.#timer.unref();
  }

  async #recheck(): Promise<void> {
    if (this.#byToken.size === 0) { this.stop(); return; }
    if (this.#checking || !this.o.db) return;
    this.#checking = true;
    try {
      for (const [id, reason] of await deadTokens(this.o.db, [...this.#byToken.keys()])) {
        this.o.onDead?.(id);
        this.endToken(id, reason);
      }
    } catch (err) {
      // The database is away: the streams keep going (as new calls could not be checked either), and the
      // next tick tries again.
      this.o.log?.warn({ err }, 'could not re-read the tokens of open streams');
    } finally {
      this.#checking = false;
    }
  }
}
