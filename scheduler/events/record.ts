// Writing the ML log. An event is written by the statement or the transaction that makes its change, so
// it exists exactly when the change committed: callers pass their transaction to recordEvents, or make
// their change and its event one statement with changeWithEvent. Run events need neither: a trigger
// copies run_events (migrations/008).
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { Database, Db } from '../db/database.js';
import type { EventKind } from '../../shared/event-kinds.js';

type Q = Db | Transaction<Database>;

export interface NewEvent {
  kind: EventKind;
  /** null for fleet events (agents), which only admins see. */
  project: string | null;
  subject: string;
  detail?: string;
  data?: Record<string, unknown>;
}

export async function recordEvents(q: Q, events: NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  await q.insertInto('events').values(events.map((e) => ({
    kind: e.kind, project: e.project, subject: e.subject, detail: e.detail ?? '', data: JSON.stringify(e.data ?? {}),
  }))).execute();
}

/** How to make the event from each row a change returned: SQL expressions over the change's columns (`c.`). */
export interface EventFrom {
  /** A kind, or a SQL expression choosing one per row (the CHECK on events.kind holds it to the list). */
  kind: EventKind | RawBuilder<unknown>;
  project: RawBuilder<unknown>;
  subject: RawBuilder<unknown>;
  detail: RawBuilder<unknown>;
  data?: RawBuilder<unknown>;
}

/**
 * One statement: `change` (an UPDATE, DELETE or INSERT ... RETURNING, whose rows the caller gets back) and
 * one event per row it returned, written by the same statement. `where` picks the rows that deserve one.
 */
/** The project of a fleet event: none, so only admins see it. */
export const fleet = sql`NULL::text`;

export async function changeWithEvent<R>(q: Q, change: RawBuilder<unknown>, e: EventFrom, where: RawBuilder<unknown> = sql`true`): Promise<R[]> {
  const { rows } = await sql<R>`
    WITH c AS (${change}),
    e AS (INSERT INTO events (kind, project, subject, detail, data)
          SELECT ${typeof e.kind === 'string' ? sql`${e.kind}::text` : e.kind}, ${e.project}, ${e.subject}, ${e.detail}, ${e.data ?? sql`'{}'::jsonb`} FROM c WHERE ${where})
    SELECT * FROM c`.execute(q);
  return rows;
}
