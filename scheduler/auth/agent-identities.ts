// Agents' identities as AgentLink calls check them: the SHA-256 of each agent's credential
// (agents.identity_sha256), remembered for a moment per scheduler.
//
// Why remembered: an agent makes four or five calls per run (claim, status, logs, finish, the next run's
// peek), and reading its row from Postgres for each was one round trip (about 1.8 ms, a fifth of the
// claim's path) and a parse, plan and execute on a shared two-core box, for an answer that changes only
// when the agent registers, is revoked or is forgotten. Client tokens are remembered the same way
// (tokens.ts TokenVerifier, 2 s).
//
// Why that is safe:
// - Every change of an identity (register, revoke, forget: agents/status.ts announce) forgets it here at
//   once, and on every other scheduler as soon as the placer's doorbell reaches it over NATS
//   (scheduler.ts); a lost message is covered by the TTL (2 s).
// - A refusal is always Postgres's answer: a credential that does not match the remembered hash is
//   checked against the row before it is refused, and an unknown or revoked agent (no hash) is never
//   remembered, so an agent that just registered is never refused for a stale entry.
// - Register never uses it (authenticateRegister reads the row): registration takes over the name's row on
//   the strength of this check, so it must be made against the row as it is now.
// - A read that started before a forget is not remembered (the epoch below), so it cannot put back what
//   the forget removed.
import type { Db } from '../db/database.js';
import { digestMatches } from './secrets.js';

export class AgentIdentities {
  readonly #cache = new Map<string, { sha256: string; until: number }>();
  readonly #inflight = new Map<string, Promise<string | null>>();
  #epoch = 0;
  constructor(private readonly db: Db, private readonly ttlMs = 2000) {}

  /**
   * Whether the credential whose SHA-256 is `digest` (secrets.ts sha256Hex) is agent `name`'s now (or was,
   * at most the TTL ago, with no change heard of since).
   */
  async matches(name: string, digest: string): Promise<boolean> {
    const hit = this.#cache.get(name);
    if (hit && hit.until > Date.now() && digestMatches(digest, hit.sha256)) return true;
    return digestMatches(digest, await this.#read(name));
  }

  /** The row as it is now (Register's check): nothing remembered is used. */
  async matchesNow(name: string, digest: string): Promise<boolean> {
    return digestMatches(digest, await this.#readRow(name));
  }

  /** An identity changed (or may have): the next call of this agent reads it again. */
  forget(name: string): void {
    this.#epoch++;
    this.#cache.delete(name);
    this.#inflight.delete(name);
  }

  /** How many agents are remembered now (tests). */
  get size(): number { return this.#cache.size; }

  // Calls of one agent at once share one read.
  #read(name: string): Promise<string | null> {
    let p = this.#inflight.get(name);
    if (p) return p;
    const epoch = this.#epoch;
    p = this.#readRow(name);
    this.#inflight.set(name, p);
    const settled = () => { if (this.#inflight.get(name) === p) this.#inflight.delete(name); };
    p.then((sha256) => {
      settled();
      if (sha256 === null || epoch !== this.#epoch) return;
      // Bounded by the fleet's size in practice; cleared rather than grown without end by unknown names
      // (those are never remembered, but a fleet of 10,000 names is not the ordinary case either).
      if (this.#cache.size >= 10_000) this.#cache.clear();
      this.#cache.set(name, { sha256, until: Date.now() + this.ttlMs });
    }, settled);
    return p;
  }

  async #readRow(name: string): Promise<string | null> {
    const row = await this.db.selectFrom('agents').select('identity_sha256').where('name', '=', name).executeTakeFirst();
    return row?.identity_sha256 ?? null;
  }
}
