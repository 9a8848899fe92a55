// Client tokens and agent join tokens: create (the secret is returned once), list (never a secret),
// revoke, and verify a presented token. One table, `tokens` (migrations/006).
import { sql, type Selectable } from 'kysely';
import type { Db, TokensTable } from '../db/database.js';
import type { TokenInfo } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { checkName } from '../../shared/names.js';
import { matchesHash, newToken, tokenId } from './secrets.js';
import { Roles, type Role } from './principal.js';

export type TokenRole = Role | 'join';

export function tokenToProto(r: Selectable<TokensTable>): TokenInfo {
  const iso = (d: Date | null) => (d ? new Date(d).toISOString() : '');
  return {
    id: r.id, name: r.name, project: r.project, role: r.role, created_at: iso(r.created_at),
    expires_at: iso(r.expires_at), revoked_at: iso(r.revoked_at), last_used_at: iso(r.last_used_at),
    uses_left: r.uses_left ?? -1,
  };
}

export function checkRole(role: string): Role {
  if (!(Roles as readonly string[]).includes(role)) throw invalid(`role "${role}" is not one of ${Roles.join(', ')}`);
  return role as Role;
}

/** `uses` (join tokens): how many agents may join with it; 0 or absent, any number until it expires. */
export async function createToken(db: Db, o: { project: string; role: TokenRole; name: string; expiresInSeconds: number; uses?: number }): Promise<{ info: TokenInfo; token: string }> {
  const project = checkName('project', o.project);
  if (o.name.length > 200) throw invalid('token name is longer than 200 characters');
  if (!Number.isInteger(o.expiresInSeconds) || o.expiresInSeconds < 0) throw invalid(`expiry must be a non-negative number of seconds, got ${o.expiresInSeconds}`);
  const uses = o.uses ?? 0;
  if (!Number.isInteger(uses) || uses < 0 || uses > 100_000) throw invalid(`uses must be 0 (any number) to 100000, got ${uses}`);
  if (uses > 0 && o.role !== 'join') throw invalid('only a join token has a number of uses');
  const t = newToken();
  const row = await db.insertInto('tokens').values({
    id: t.id, secret_sha256: t.secretSha256, name: o.name, project, role: o.role, uses_left: uses > 0 ? uses : null,
    expires_at: o.expiresInSeconds > 0 ? new Date(Date.now() + o.expiresInSeconds * 1000) : null,
  }).returningAll().executeTakeFirstOrThrow();
  return { info: tokenToProto(row), token: t.token };
}

export async function listTokens(db: Db): Promise<TokenInfo[]> {
  return (await db.selectFrom('tokens').selectAll().orderBy('created_at').execute()).map(tokenToProto);
}

export async function revokeToken(db: Db, id: string): Promise<TokenInfo> {
  const row = await db.updateTable('tokens').set({ revoked_at: sql<Date>`coalesce(revoked_at, now())` }).where('id', '=', id).returningAll().executeTakeFirst();
  if (!row) throw notFound(`token ${id} not found (trainyard tokens list shows the ids)`);
  return tokenToProto(row);
}

/**
 * verifyToken, shared and briefly remembered: concurrent calls with one token make one query, and a token
 * verified in the last `ttlMs` is not read again (expiry is still checked each time). Without this, a
 * client opening hundreds of streams at once queues hundreds of queries ahead of the agents' heartbeats.
 * A revocation on this scheduler forgets the token at once; on another scheduler it takes effect within
 * `ttlMs`.
 */
export class TokenVerifier {
  readonly #inflight = new Map<string, Promise<Selectable<TokensTable>>>();
  readonly #cache = new Map<string, { row: Selectable<TokensTable>; until: number }>();
  constructor(private readonly db: Db, private readonly ttlMs = 2000) {}

  verify(token: string): Promise<Selectable<TokensTable>> {
    const hit = this.#cache.get(token);
    if (hit && hit.until > Date.now() && !(hit.row.expires_at && new Date(hit.row.expires_at).getTime() <= Date.now())) return Promise.resolve(hit.row);
    let p = this.#inflight.get(token);
    if (!p) {
      p = verifyToken(this.db, token).finally(() => this.#inflight.delete(token));
      this.#inflight.set(token, p);
      p.then((row) => {
        if (this.#cache.size > 10_000) this.#cache.clear();
        this.#cache.set(token, { row, until: Date.now() + this.ttlMs });
      }, () => {});
    }
    return p;
  }

  forget(id: string): void {
    for (const [k, v] of this.#cache) if (v.row.id === id) this.#cache.delete(k);
  }
}

const unauthenticated = (message: string) => new TrainyardError(ErrorCodes.Unauthenticated, message);
const usedUp = (id: string) => unauthenticated(`token ${id} was used up: as many agents joined with it as it allowed (trainyard agents join-token create --uses)`);

/**
 * Takes one use of a join token, as a new agent joins with it: one guarded statement, in the caller's
 * transaction (the one that takes the agent's name), so a refused join costs no use and two agents
 * joining at once with a one-use token cannot both get in. A token with no count (null) is not changed.
 */
export async function takeJoinUse(db: Db, id: string): Promise<void> {
  const row = await db.updateTable('tokens').set({ uses_left: sql<number>`uses_left - 1` })
    .where('id', '=', id).where('role', '=', 'join').where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('uses_left', 'is', null), eb('uses_left', '>', 0)]))
    .returning('id').executeTakeFirst();
  if (!row) throw usedUp(id);
}

/**
 * The live token row a presented token stands for: well-formed, known, the secret's hash matches
 * (compared in constant time), not revoked, not expired. Anything else is UNAUTHENTICATED, saying which.
 * Marks it used, at most once a minute (a write per call would make every call a write).
 */
export async function verifyToken(db: Db, token: string): Promise<Selectable<TokensTable>> {
  const id = tokenId(token);
  if (!id) throw unauthenticated('the token is malformed (expected tyt_<id>_<secret>)');
  const row = await db.selectFrom('tokens').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row || !matchesHash(token, row.secret_sha256)) throw unauthenticated(`token ${id} is not known to this scheduler`);
  const dead = whyDead(row);
  if (dead) throw unauthenticated(dead);
  if (row.uses_left === 0) throw usedUp(id);
  if (!row.last_used_at || Date.now() - new Date(row.last_used_at).getTime() > 60_000) {
    await db.updateTable('tokens').set({ last_used_at: sql<Date>`now()` }).where('id', '=', id).execute();
  }
  return row;
}

/** Why a known token may no longer be used (revoked, expired), or null while it may. */
function whyDead(row: Pick<Selectable<TokensTable>, 'id' | 'revoked_at' | 'expires_at'>): string | null {
  if (row.revoked_at) return `token ${row.id} was revoked at ${new Date(row.revoked_at).toISOString()}`;
  if (row.expires_at && new Date(row.expires_at).getTime() <= Date.now()) return `token ${row.id} expired at ${new Date(row.expires_at).toISOString()}`;
  return null;
}

/** Of these token ids, the ones that may no longer be used, each with why (one query; open streams ask). */
export async function deadTokens(db: Db, ids: readonly string[]): Promise<Map<string, string>> {
  const dead = new Map<string, string>();
  if (ids.length === 0) return dead;
  const rows = await db.selectFrom('tokens').select(['id', 'revoked_at', 'expires_at']).where('id', 'in', ids).execute();
  const known = new Set(rows.map((r) => r.id));
  for (const r of rows) {
    const why = whyDead(r);
    if (why) dead.set(r.id, why);
  }
  for (const id of ids) if (!known.has(id)) dead.set(id, `token ${id} is not known to this scheduler`);
  return dead;
}
