// Agent status, in one place (as scheduler/runs/transitions.ts is for runs). The statuses are one closed
// list, shared with SQL (the `agents.status` CHECK of migrations/001 names the same four); every change is
// one function here, one guarded statement, and is logged here once ('agent status'), nowhere else. The
// changes the ML log reports (joined, draining, drained, lost) write their event in that same statement
// or transaction.
//
//   (none) ──register──▶ online ──drain──▶ draining ──heartbeat(leaving)──▶ offline
//                          │  ▲               │                                 │
//                          │  └──register─────┼──── lost ◀──loseSilent──────────┘ (no heartbeat within
//                          └──────────────────┴──────▲                               the loss deadline)
//   register takes a name over only with that name's credential (a restart, from the agent's work dir);
//   a new agent (a join token) only takes a name nobody holds. An admin frees the name of an agent that
//   is gone with `trainyard agents remove` (forget), and shuts a live one out first (revoke: lost, and
//   its credential stops working).
//   Unresponsive is a flag beside the status, not a status: `unresponsive_since` is set when an agent let a
//   dispatch go unacknowledged (markUnresponsive) and cleared by its next heartbeat or register; the placer
//   offers such an agent nothing meanwhile.
import { sql, type RawBuilder } from 'kysely';
import type { Logger } from 'pino';
import type { CacheUseRow, Db } from '../db/database.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { EventKind } from '../../shared/event-kinds.js';
import { changeWithEvent, fleet, recordEvents } from '../events/record.js';
import { placedStatuses } from '../../shared/run-states.js';
import { takeJoinUse } from '../auth/tokens.js';

export const AgentStatus = {
  /** Registered and heard from: takes runs. */
  Online: 'online',
  /** Takes no new runs; running ones finish (`trainyard agents drain`, or SIGTERM on the agent). */
  Draining: 'draining',
  /** Not heard from within the loss deadline: its runs went back to the queue. */
  Lost: 'lost',
  /** Said it leaves (its last heartbeat): holds nothing. */
  Offline: 'offline',
} as const;
export type AgentStatus = (typeof AgentStatus)[keyof typeof AgentStatus];
export const agentStatuses: readonly AgentStatus[] = Object.values(AgentStatus);
/** Statuses of an agent that is (as far as anyone knows) running: heard from, or about to be called lost. */
export const liveAgentStatuses: readonly AgentStatus[] = [AgentStatus.Online, AgentStatus.Draining];

/** A SQL list of agent statuses, from the one list: `status IN ${agentStates(...)}`. */
export function agentStates(list: readonly AgentStatus[]): RawBuilder<unknown> {
  return sql`(${sql.join(list.map((s) => sql.lit(s)))})`;
}
const LIVE = agentStates(liveAgentStatuses);
// Spelled here, not taken from runs/transitions.ts, which imports this file.
const PLACED_RUNS = sql`(${sql.join(placedStatuses.map((s) => sql.lit(s)))})`;
const lit = (s: AgentStatus) => sql.lit(s);

export interface AgentStatusDeps {
  db: Db; log: Logger;
  /** Told of every change, after it committed: the placer's model of the fleet reads the agent again. */
  agentChanged?(name: string): void;
}

/** One change of one agent, as logged. `from` is null for a name registered for the first time. */
export interface AgentChange { agent: string; from: AgentStatus | null; to: AgentStatus | 'removed'; detail: string; unresponsive?: boolean }

/** The one place agent changes are logged (and told to the placer). */
function announce(deps: AgentStatusDeps, changes: AgentChange[]): void {
  for (const c of changes) {
    const level = c.to === AgentStatus.Lost || c.unresponsive === true ? 'warn' : 'info';
    deps.log[level]({ agent: c.agent, from: c.from, to: c.to, detail: c.detail, ...(c.unresponsive !== undefined ? { unresponsive: c.unresponsive } : {}) }, 'agent status');
    deps.agentChanged?.(c.agent);
  }
}

export interface Registration {
  name: string; hostname: string; version: string; cpus: number; memoryMb: number; labels: Record<string, string>;
  /** Run slots (0 or absent: no limit). */
  maxRuns?: number;
  /** --accept-projects: the only projects whose runs it takes (null or absent: every project's). */
  acceptProjects?: string[] | null;
  gpus: { index: number; uuid: string; name: string; memory_mb: number }[];
  /** SHA-256 (hex) of the agent's work-dir identity. */
  identitySha256: string;
  /** The peer address it called from. */
  address: string;
  /** A join token introduced it (a new agent): it may take only a name nobody holds. */
  joining: boolean;
  /** --advertise-addr ('' : the peer address) and --rendezvous-ports (migrations/035; absent: 29500-29599). */
  advertiseAddr?: string; rendezvous?: { lo: number; hi: number };
  /** The join token it joined with (when joining): one of its uses is taken as the name is. */
  joinTokenId?: string;
}

/**
 * register: the agent is online with these capabilities and a new session (heartbeats from older
 * sessions are told to register again). Guarded: a name is taken over only by the identity that holds it
 * (a restart from the agent's work dir). A new agent (joining) under a held name is refused with
 * ALREADY_EXISTS, live or not, saying only that the name is taken: a join token proves the caller may join the fleet, not
 * that it is that agent; an admin frees a gone agent's name with `trainyard agents remove`. An agent
 * presenting its credential for a name that was removed meanwhile is refused too (the row read here is
 * locked, so a removal either committed before, and is seen, or waits). The status row and the agent's
 * GPU rows change in one transaction.
 */
export async function register(deps: AgentStatusDeps, r: Registration): Promise<{ session: number }> {
  const { session, change } = await deps.db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom('agents').select(['status', 'identity_sha256', 'address', 'hostname', 'registered_at', 'last_heartbeat_at'])
      .where('name', '=', r.name).forUpdate().executeTakeFirst();
    if (!r.joining && before?.identity_sha256 !== r.identitySha256) {
      throw new TrainyardError(ErrorCodes.Unauthenticated, `the credential is not agent "${r.name}"'s (the agent was removed or revoked meanwhile)`);
    }
    const labels = JSON.stringify(r.labels);
    const { rows } = await sql<{ session: number }>`
      INSERT INTO agents AS a (name, hostname, version, status, session, cpus, memory_mb, labels, last_heartbeat_at, registered_at, identity_sha256, address, max_runs, accept_projects,
                            advertise_addr, rendezvous_lo, rendezvous_hi)
      VALUES (${r.name}, ${r.hostname}, ${r.version}, ${lit(AgentStatus.Online)}, nextval('agent_session_seq'), ${r.cpus}, ${r.memoryMb},
              ${labels}::jsonb, now(), now(), ${r.identitySha256}, ${r.address}, ${r.maxRuns ?? 0}, ${r.acceptProjects ?? null}::text[],
              ${r.advertiseAddr ?? ''}, ${r.rendezvous?.lo ?? 29500}, ${r.rendezvous?.hi ?? 29599})
      ON CONFLICT (name) DO UPDATE SET
        hostname = excluded.hostname, version = excluded.version, status = excluded.status, session = excluded.session,
        cpus = excluded.cpus, memory_mb = excluded.memory_mb, labels = excluded.labels, max_runs = excluded.max_runs, accept_projects = excluded.accept_projects, last_heartbeat_at = now(),
        registered_at = now(), unresponsive_since = NULL, address = excluded.address,
        advertise_addr = excluded.advertise_addr, rendezvous_lo = excluded.rendezvous_lo, rendezvous_hi = excluded.rendezvous_hi
      WHERE a.identity_sha256 = excluded.identity_sha256
      RETURNING a.session`.execute(trx);
    const row = rows[0];
    if (!row) {
      // No row before means another first Register of this name committed while this one waited. Who
      // holds the name (address, host, times) is the admin's to see (agents list, the log below), not a
      // join-token holder's: the refusal says only that it is taken and how it is freed.
      const held = before ?? await trx.selectFrom('agents').select(['status', 'identity_sha256', 'address', 'hostname', 'registered_at', 'last_heartbeat_at'])
        .where('name', '=', r.name).executeTakeFirstOrThrow();
      deps.log.warn({ agent: r.name, from: r.address, holder: held.address, holderStatus: held.status }, 'a joining agent asked for a name that is taken');
      throw new TrainyardError(ErrorCodes.AlreadyExists, `agent name "${r.name}" is taken; give this agent another name (--name or TRAINYARD_AGENT_NAME), ` +
        `or have an admin free it (trainyard agents list shows its holder; trainyard agents remove ${r.name} forgets one that is gone)`);
    }
    // A new agent spends one use of its join token, in this transaction: a refused join spends none.
    if (r.joinTokenId) await takeJoinUse(trx, r.joinTokenId);
    await trx.deleteFrom('agent_gpus').where('agent', '=', r.name).execute();
    if (r.gpus.length) {
      await trx.insertInto('agent_gpus').values(r.gpus.map((g) => ({ agent: r.name, index: g.index, uuid: g.uuid, name: g.name, memory_mb: g.memory_mb }))).execute();
    }
    const change: AgentChange = { agent: r.name, from: before?.status ?? null, to: AgentStatus.Online, detail: `registered from ${r.address}` };
    // Joined: new, or back after it was lost or left. A live agent registering again (a scheduler restart,
    // a new session) has not joined anything.
    if (!before || !liveAgentStatuses.includes(before.status)) {
      await recordEvents(trx, [{
        kind: EventKind.AgentJoined, project: null, subject: r.name, detail: change.detail,
        data: { hostname: r.hostname, version: r.version, gpus: r.gpus.length, cpus: r.cpus, from: before?.status ?? null },
      }]);
    }
    return { session: Number(row.session), change };
  });
  announce(deps, [change]);
  return { session };
}

/**
 * heartbeat: the agent of this session is alive. Clears the unresponsive flag; `draining` moves an online
 * agent to draining (a draining one stays draining even when the agent has not heard of its drain yet);
 * `leaving` moves it offline. Returns its status now, or null when the session is not current or the
 * agent is no longer live (it must register again).
 */
export async function heartbeat(deps: AgentStatusDeps, h: { name: string; session: number; draining: boolean; leaving: boolean; cacheUse?: CacheUseRow | null }): Promise<AgentStatus | null> {
  const cacheUse = h.cacheUse ? JSON.stringify(h.cacheUse) : null;
  const rows = await changeWithEvent<{ from: AgentStatus; to: AgentStatus; was_unresponsive: boolean }>(deps.db, sql`
    UPDATE agents a SET last_heartbeat_at = now(), unresponsive_since = NULL, cache_use = COALESCE(${cacheUse}::jsonb, a.cache_use),
      status = CASE WHEN ${h.leaving} THEN ${lit(AgentStatus.Offline)} WHEN ${h.draining} THEN ${lit(AgentStatus.Draining)} ELSE a.status END
    FROM (SELECT name, status, unresponsive_since FROM agents
          WHERE name = ${h.name} AND session = ${h.session} AND status IN ${LIVE} FOR UPDATE) old
    WHERE a.name = old.name
    RETURNING a.name, old.status AS from, a.status AS to, old.unresponsive_since IS NOT NULL AS was_unresponsive`, {
    kind: sql`CASE WHEN c."to" = ${lit(AgentStatus.Offline)} THEN ${EventKind.AgentDrained} ELSE ${EventKind.AgentDraining} END`,
    project: fleet, subject: sql`c.name`,
    detail: sql`CASE WHEN c."to" = ${lit(AgentStatus.Offline)} THEN 'left' ELSE 'the agent drains (it was asked to, or got SIGTERM)' END`,
  }, sql`c."from" <> c."to"`);
  const r = rows[0];
  if (!r) return null;
  if (r.from !== r.to || r.was_unresponsive) {
    const detail = r.to === AgentStatus.Offline ? 'left' : r.from !== r.to ? 'the agent drains' : 'heard from again';
    announce(deps, [{ agent: h.name, from: r.from, to: r.to, detail, ...(r.was_unresponsive ? { unresponsive: false } : {}) }]);
  }
  return r.to;
}

/** drain: a live agent takes no new runs. Throws NOT_FOUND, or INVALID_ARGUMENT for a lost/offline one. */
export async function drain(deps: AgentStatusDeps, name: string): Promise<void> {
  const rows = await changeWithEvent<{ from: AgentStatus }>(deps.db, sql`
    UPDATE agents a SET status = ${lit(AgentStatus.Draining)}
    FROM (SELECT name, status FROM agents WHERE name = ${name} AND status IN ${LIVE} FOR UPDATE) old
    WHERE a.name = old.name RETURNING a.name, old.status AS from`,
  { kind: EventKind.AgentDraining, project: fleet, subject: sql`c.name`, detail: sql`'drain requested'` },
  sql`c."from" <> ${lit(AgentStatus.Draining)}`);
  const r = rows[0];
  if (!r) {
    const exists = await deps.db.selectFrom('agents').select('status').where('name', '=', name).executeTakeFirst();
    if (!exists) throw notFound(`agent "${name}" not found`);
    throw invalid(`agent "${name}" is ${exists.status}; only an online agent can be drained`);
  }
  if (r.from !== AgentStatus.Draining) announce(deps, [{ agent: name, from: r.from, to: AgentStatus.Draining, detail: 'drain requested' }]);
}

/**
 * revoke: an admin shuts an agent out now (`trainyard agents remove --force`). Its credential stops working
 * at once (a NULL identity matches no credential, and register takes over no such row), and a live agent
 * is lost, with the event a loss has: its runs go back to the queue as any lost agent's do. Returns the
 * status it had and how many runs were placed on it at that moment (read under the agent's row lock, so
 * the count does not depend on who requeues them: the caller or the failure sweep, whichever comes
 * first), or null when there is no such agent.
 */
export async function revoke(deps: AgentStatusDeps, name: string): Promise<{ from: AgentStatus; held: number } | null> {
  const rows = await changeWithEvent<{ from: AgentStatus; held: number }>(deps.db, sql`
    UPDATE agents a SET identity_sha256 = NULL,
      status = CASE WHEN old.status IN ${LIVE} THEN ${lit(AgentStatus.Lost)} ELSE a.status END
    FROM (SELECT name, status FROM agents WHERE name = ${name} FOR UPDATE) old
    WHERE a.name = old.name
    RETURNING a.name, old.status AS from,
      (SELECT count(*)::int FROM runs r WHERE r.agent = a.name AND r.status IN ${PLACED_RUNS}) AS held`,
  { kind: EventKind.AgentLost, project: fleet, subject: sql`c.name`, detail: sql`'removed by an admin: its credential is revoked and its runs go back to the queue'` },
  sql`c."from" IN ${LIVE}`);
  const r = rows[0];
  if (!r) return null;
  if (liveAgentStatuses.includes(r.from)) {
    announce(deps, [{ agent: name, from: r.from, to: AgentStatus.Lost, detail: 'removed by an admin: credential revoked' }]);
  } else {
    // No status change to log, but its credential changed: schedulers that remember it forget it now.
    deps.agentChanged?.(name);
  }
  return { from: r.from, held: r.held };
}

/**
 * forget: an agent that is gone (offline or lost) and holds no run is deleted, its GPUs with it; its name
 * is free for a new agent and its credential is worth nothing. Returns the status it had; throws NOT_FOUND,
 * or FAILED_PRECONDITION naming why it stays (live, or runs still placed on it).
 */
export async function forget(deps: AgentStatusDeps, name: string): Promise<AgentStatus> {
  const rows = await changeWithEvent<{ from: AgentStatus }>(deps.db, sql`
    DELETE FROM agents a WHERE a.name = ${name} AND a.status NOT IN ${LIVE}
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.agent = a.name AND r.status IN ${PLACED_RUNS})
    RETURNING a.name, a.status AS from`,
  { kind: EventKind.AgentRemoved, project: fleet, subject: sql`c.name`, detail: sql`'removed by an admin (it was ' || c."from" || ')'` });
  const r = rows[0];
  if (r) {
    announce(deps, [{ agent: name, from: r.from, to: 'removed', detail: 'removed by an admin' }]);
    return r.from;
  }
  const now = await deps.db.selectFrom('agents').select('status').where('name', '=', name).executeTakeFirst();
  if (!now) throw notFound(`agent "${name}" not found`);
  if (liveAgentStatuses.includes(now.status)) {
    throw new TrainyardError(ErrorCodes.FailedPrecondition, `agent "${name}" is ${now.status}: stop it first (trainyard agents drain ${name}; ` +
      `it exits once its runs are done), or shut it out now with --force (its credential is revoked, its runs go back to the queue)`);
  }
  throw new TrainyardError(ErrorCodes.FailedPrecondition, `agent "${name}" still has runs placed on it; they go back to the queue within the loss deadline: try again then`);
}

/** loseSilent: live agents not heard from within `lostAfterMs` are lost. Returns their names. */
export async function loseSilent(deps: AgentStatusDeps, lostAfterMs: number): Promise<string[]> {
  const rows = await changeWithEvent<{ name: string; from: AgentStatus; last: Date }>(deps.db, sql`
    UPDATE agents a SET status = ${lit(AgentStatus.Lost)}
    FROM (SELECT name, status FROM agents
          WHERE status IN ${LIVE} AND last_heartbeat_at < now() - make_interval(secs => ${lostAfterMs / 1000}) FOR UPDATE) old
    WHERE a.name = old.name
    RETURNING a.name, old.status AS from, a.last_heartbeat_at AS last`, {
    kind: EventKind.AgentLost, project: fleet, subject: sql`c.name`,
    detail: sql`'no heartbeat since ' || to_char(c.last AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ${` (deadline ${lostAfterMs} ms); its runs go back to the queue`}::text`,
  });
  announce(deps, rows.map((r) => ({
    agent: r.name, from: r.from, to: AgentStatus.Lost, detail: `no heartbeat since ${new Date(r.last).toISOString()} (deadline ${lostAfterMs} ms)`,
  })));
  return rows.map((r) => r.name);
}

/**
 * markUnresponsive: these agents let a dispatch go unacknowledged; they are offered nothing until heard
 * from again. Returns the ones newly marked (an agent already marked keeps its first time).
 */
export async function markUnresponsive(deps: AgentStatusDeps, names: readonly string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const rows = await deps.db.updateTable('agents').set({ unresponsive_since: sql<Date>`now()` })
    .where('name', 'in', [...names]).where('unresponsive_since', 'is', null).returning(['name', 'status']).execute();
  announce(deps, rows.map((r) => ({
    agent: r.name, from: r.status, to: r.status, unresponsive: true, detail: 'missed a dispatch: offered nothing until heard from',
  })));
  return rows.map((r) => r.name);
}
