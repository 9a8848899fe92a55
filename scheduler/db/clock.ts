// The one clock the scheduler judges time by: the database's. Schedulers' own clocks may disagree with it
// and with each other (a host 30 s fast), and every stored time (dispatched_at, next_fire_at, created_at)
// comes from now() in Postgres; comparing one with the other would take back dispatches early or fire
// schedules before they are due (issue 20).
import { sql } from 'kysely';
import type { Db } from './database.js';

/** Postgres's now(): the time a statement run now would store. */
export async function databaseNow(db: Db): Promise<Date> {
  const { rows: [clock] } = await sql<{ now: Date }>`SELECT now() AS now`.execute(db);
  return clock!.now;
}
