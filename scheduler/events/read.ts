// Reading the ML log: a page of events, and (FollowEvents) the events as they commit. Who sees what is the
// policy's: a member or reader sees its project's events; admins see every project's and the fleet's
// (agent events have no project, so only the unfiltered admin view holds them).
import { sql, type Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { EventsTable } from '../db/database.js';
import type { Event, ListEventsRequest__Output } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';
import { databaseNow } from '../db/clock.js';
import { eventKindGroups, eventKinds, type EventKind } from '../../shared/event-kinds.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorize, visibleProject } from '../auth/policy.js';

const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;
/** How often a follower looks for new events. */
const POLL_MS = 1000;
/** A follower sends an empty batch after this long without events, so a dead connection shows. */
export const HEARTBEAT_MS = 10_000;
/**
 * An event's time is its transaction's start, and transactions commit out of order: a follower keeps
 * looking this far back, skipping what it already sent, so an event that commits up to this long after
 * its transaction began is still delivered, once.
 */
const LOOKBACK_MS = 10_000;

interface Filter { project: string | null; kind: { exact: EventKind } | { group: string } | null; since: Date | null; limit: number }

function compileFilter(caller: Principal, req: ListEventsRequest__Output): Filter {
  let project: string | null;
  if (req.project) {
    authorize(caller, Actions.ReadProject, req.project);
    project = req.project;
  } else {
    project = visibleProject(caller);
  }
  let kind: Filter['kind'] = null;
  if (req.kind) {
    if ((eventKinds as readonly string[]).includes(req.kind)) kind = { exact: req.kind as EventKind };
    else if (eventKindGroups.includes(req.kind)) kind = { group: req.kind };
    else throw invalid(`kind "${req.kind}" is not an event kind; expected one of ${eventKindGroups.join(', ')} or ${eventKinds.join(', ')}`);
  }
  let since: Date | null = null;
  if (req.since) {
    since = new Date(req.since);
    if (!/^\d{4}-\d\d-\d\dT/.test(req.since) || Number.isNaN(since.getTime())) throw invalid(`since "${req.since}" is not an RFC 3339 time (2025-01-31T12:00:00Z)`);
  }
  if (!Number.isInteger(req.limit) || req.limit < 0 || req.limit > PAGE_MAX) throw invalid(`limit must be 0 (${PAGE_DEFAULT}) to ${PAGE_MAX}, got ${req.limit}`);
  return { project, kind, since, limit: req.limit || PAGE_DEFAULT };
}

function query(ctx: SchedulerContext, f: Filter) {
  let q = ctx.db.selectFrom('events').selectAll();
  if (f.project !== null) q = q.where('project', '=', f.project);
  if (f.kind && 'exact' in f.kind) q = q.where('kind', '=', f.kind.exact);
  else if (f.kind) q = q.where(sql<boolean>`starts_with(kind, ${`${f.kind.group}.`})`);
  return q;
}

export function eventToProto(e: Selectable<EventsTable>): Event {
  return { id: e.id, at: e.at.toISOString(), kind: e.kind, project: e.project ?? '', subject: e.subject, detail: e.detail, data_json: JSON.stringify(e.data) };
}

/** Oldest first: from `since`, or the last `limit` events. */
async function page(ctx: SchedulerContext, f: Filter): Promise<Selectable<EventsTable>[]> {
  if (f.since) return query(ctx, f).where('at', '>=', f.since).orderBy('at').orderBy('id').limit(f.limit).execute();
  return (await query(ctx, f).orderBy('at', 'desc').orderBy('id', 'desc').limit(f.limit).execute()).reverse();
}

export async function listEvents(ctx: SchedulerContext, caller: Principal, req: ListEventsRequest__Output): Promise<Event[]> {
  return (await page(ctx, compileFilter(caller, req))).map(eventToProto);
}

/**
 * The page listEvents would give, then each batch of events committed since, until the signal fires; an
 * empty batch after HEARTBEAT_MS without events. Each event is sent once (see LOOKBACK_MS).
 */
export async function* followEvents(ctx: SchedulerContext, caller: Principal, req: ListEventsRequest__Output, signal: AbortSignal): AsyncGenerator<Event[]> {
  const f = compileFilter(caller, req);
  const clock = { now: await databaseNow(ctx.db) };
  // id → time, for the events sent within the look-back window.
  const sent = new Map<number, number>();
  let cursor = clock!.now.getTime();
  const take = (rows: Selectable<EventsTable>[]) => {
    for (const r of rows) { sent.set(r.id, r.at.getTime()); cursor = Math.max(cursor, r.at.getTime()); }
    for (const [id, at] of sent) if (at < cursor - LOOKBACK_MS) sent.delete(id);
    return rows.map(eventToProto);
  };
  // From `since`: every event since then, page by page, before following (not only the first page).
  let first = await page(ctx, f);
  for (;;) {
    if (first.length) yield take(first);
    const last = first.at(-1);
    if (!f.since || first.length < f.limit || !last || signal.aborted) break;
    first = await query(ctx, f).where(sql<boolean>`(at, id) > (${last.at}, ${last.id})`).orderBy('at').orderBy('id').limit(f.limit).execute();
  }
  let quietSince = Date.now();
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      const done = () => { clearTimeout(t); signal.removeEventListener('abort', done); resolve(); };
      const t = setTimeout(done, POLL_MS);
      signal.addEventListener('abort', done, { once: true });
    });
    if (signal.aborted) return;
    const rows = await query(ctx, f).where('at', '>=', new Date(cursor - LOOKBACK_MS))
      .where(sql<boolean>`NOT (id = ANY(${[...sent.keys()]}::bigint[]))`)
      .orderBy('at').orderBy('id').limit(PAGE_MAX).execute();
    if (rows.length) {
      yield take(rows);
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= HEARTBEAT_MS) {
      yield [];
      quietSince = Date.now();
    }
  }
}
