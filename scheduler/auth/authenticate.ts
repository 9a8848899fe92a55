// Credentials from gRPC metadata to a Principal: client tokens (`authorization: Bearer tyt_…`) and agent
// credentials (`authorization: Bearer tya_…` with `trainyard-agent: NAME`). Only scheduler/grpc/handlers.ts
// calls these, once per call, before any handler runs; the web console's API (scheduler/http/console-api.ts)
// authenticates its requests' `authorization` header with the same authenticateBearer.
import type { Metadata } from '@grpc/grpc-js';
import type { Db } from '../db/database.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';
import { verifyToken, type TokenVerifier } from './tokens.js';
import { sha256Hex, tokenId } from './secrets.js';
import type { Principal } from './principal.js';
import type { AgentIdentities } from './agent-identities.js';

import { AGENT_NAME_HEADER as AGENT_HEADER } from '../../shared/call-auth.js';
const unauthenticated = (message: string) => new TrainyardError(ErrorCodes.Unauthenticated, message);

function bearerOf(header: unknown): string | null {
  if (typeof header !== 'string') return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}
const bearer = (md: Metadata) => bearerOf(md.get('authorization')[0]);

/** A client call: a live admin, member or reader token. */
export function authenticateClient(tokens: TokenVerifier, md: Metadata): Promise<Principal> {
  return authenticateBearer(tokens, md.get('authorization')[0]);
}

/** The same, from an `authorization` header's value (gRPC metadata or HTTP). */
export async function authenticateBearer(tokens: TokenVerifier, header: unknown): Promise<Principal> {
  const token = bearerOf(header);
  if (!token) throw unauthenticated('no token: every call needs `authorization: Bearer <token>`');
  const row = await tokens.verify(token);
  if (row.role === 'join') throw unauthenticated(`token ${row.id} is an agent join token; it cannot make client calls`);
  return { kind: 'user', tokenId: row.id, role: row.role, project: row.project };
}

/**
 * An agent call: the agent's name and the credential the scheduler issued to it, checked against the
 * remembered identity (agent-identities.ts says why that is safe); `now` checks it against the row as it
 * is (Register).
 */
export async function authenticateAgent(identities: AgentIdentities, md: Metadata, now = false): Promise<Principal> {
  const name = md.get(AGENT_HEADER)[0];
  const credential = bearer(md);
  if (typeof name !== 'string' || !name || !credential) {
    throw unauthenticated(`no agent credential: AgentLink calls need \`${AGENT_HEADER}: NAME\` and \`authorization: Bearer <credential>\``);
  }
  // Hashed once: compared here, and kept for Register (agents/register.ts).
  const identitySha256 = sha256Hex(credential);
  const ok = now ? await identities.matchesNow(name, identitySha256) : await identities.matches(name, identitySha256);
  if (!ok) throw unauthenticated(`the credential is not agent "${name}"'s`);
  return { kind: 'agent', agent: name, identitySha256 };
}

/**
 * Register: either the agent's own credential (a restart), or a join token (a new agent, or one whose
 * name's holder has left): Register then issues a credential.
 */
export async function authenticateRegister(db: Db, identities: AgentIdentities, md: Metadata): Promise<Principal> {
  const presented = bearer(md);
  if (presented && tokenId(presented)) {
    const row = await verifyToken(db, presented);
    if (row.role !== 'join') throw unauthenticated(`token ${row.id} is a client token; an agent joins with a join token (trainyard agents join-token create)`);
    return { kind: 'joining', tokenId: row.id };
  }
  if (!presented) throw unauthenticated('no credential and no join token: start the agent with --join-token (trainyard agents join-token create)');
  return authenticateAgent(identities, md, true);
}
