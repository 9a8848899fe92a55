// The placer's own database session: the connection that holds the placer's advisory lock (the leader
// lease). Placement statements run on it, so a placement commits only while this scheduler holds the lock:
// once its session is gone, so is its lock, and nothing it still believes about the fleet can place a run.
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect } from 'kysely';
import type { Database, Db } from '../db/database.js';

export const LEADER_LOCK = 7_246_002; // "trainyard placer"
/** The longest any statement on the leader's session may take; the placer's are milliseconds. */
export const LEADER_QUERY_TIMEOUT_MS = 30_000;

export interface LeaderSession {
  readonly client: pg.Client;
  readonly db: Db;
  /** Ends the session, and with it the lock; never waits long on a connection that no longer answers. */
  close(): Promise<void>;
  /** A statement on the session, after those already sent on it (as `db`'s are). */
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * Connects the session, planning joins as nested loops only. Every statement placement sends on it joins
 * a batch (up to a few thousand runs) to runs and agents by primary key, and run_events' trigger joins its
 * new rows to runs the same way; a hash join instead reads the whole table, the queue or every run ever,
 * for every batch, and the planner picks one whenever its statistics make the table look small (they are
 * always stale after a burst of submits). The statements are written so that the batch drives each join
 * (probe() in scheduler/runs/transitions.ts, the queue's head in queue.ts): with nested loops a placement
 * costs the same whatever the tables hold.
 */
export async function connectLeaderSession(databaseUrl: string, o: { queryTimeoutMs?: number } = {}): Promise<LeaderSession> {
  const queryTimeoutMs = o.queryTimeoutMs ?? LEADER_QUERY_TIMEOUT_MS;
  // A half-open connection (a partition that drops packets, a Postgres host gone without a FIN) must not
  // keep this scheduler believing it leads, nor keep the lock on the server for the kernel's two-hour
  // keepalive: every statement gives up after queryTimeoutMs here (the placer's once-a-second `SELECT 1`
  // then steps down), and the server drops the session, and with it the lock, within about 30 s of
  // silence (its keepalives and TCP user timeout, settable per session).
  const client = new pg.Client({ connectionString: databaseUrl, keepAlive: true, keepAliveInitialDelayMillis: 5_000, query_timeout: queryTimeoutMs, connectionTimeoutMillis: queryTimeoutMs });
  client.on('error', () => {}); // a lost session is seen by the next statement, which throws
  await client.connect();
  await client.query(`SET enable_hashjoin = off; SET enable_mergejoin = off; SET statement_timeout = ${queryTimeoutMs};
    SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; SET tcp_user_timeout = 30000`);
  // One statement at a time: a pass reads the fleet with several queries at once and sends a chunk's
  // statement while it chooses the next, and pg.Client queues a query given while one runs only as a
  // deprecated behaviour (gone in pg 9). Queued here instead, in the order given, as pg would have.
  let last: Promise<unknown> = Promise.resolve();
  const serial = (...args: unknown[]) => {
    const run = last.then(() => (client.query as (...a: unknown[]) => Promise<unknown>)(...args));
    last = run.catch(() => {});
    return run;
  };
  // kysely over this one connection: it is never released to a pool, and never ended by kysely.
  const connection = { query: serial, release: () => {} };
  const pool = { connect: async () => connection, end: async () => {} };
  return {
    client,
    close: async () => {
      // end() waits for the server's goodbye, which a half-open connection never sends.
      const ended = client.end().then(() => true, () => true);
      if (!(await Promise.race([ended, sleep(2_000).then(() => false)]))) {
        (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      }
    },
    db: new Kysely<Database>({ dialect: new PostgresDialect({ pool: pool as unknown as pg.Pool }) }),
    query: <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => serial(text, values) as Promise<pg.QueryResult<R>>,
  };
}
