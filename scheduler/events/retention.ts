// Retention of the ML log: the placing scheduler (one at a time, the placer's leader) deletes events older
// than --events-retention-days (0 keeps them), once when it starts leading and every 10 minutes after.
// Only the events table and the webhook delivery log (webhooks/retention.ts, --webhook-log-retention-days)
// are pruned: run history (run_events, run_logs), runs, versions and schedules are kept as they are.
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { periodic } from '../periodic.js';
import { pruneWebhookDeliveries } from '../webhooks/retention.js';

const PRUNE_EVERY_MS = 10 * 60_000;
/** Deleted per statement, so a large backlog never holds a long lock. */
const BATCH = 10_000;

export async function pruneEvents(db: Db, retentionDays: number): Promise<number> {
  if (retentionDays <= 0) return 0;
  let total = 0;
  for (;;) {
    const r = await sql`DELETE FROM events WHERE id IN (
      SELECT id FROM events WHERE at < now() - make_interval(days => ${retentionDays}) LIMIT ${BATCH})`.execute(db);
    const n = Number(r.numAffectedRows ?? 0);
    total += n;
    if (n < BATCH) return total;
  }
}

export class EventRetention {
  readonly #abort = new AbortController();
  #done: Promise<void> | null = null;

  constructor(private readonly deps: { db: Db; log: Logger; retentionDays: number; webhookLogRetentionDays: number; isLeader: () => boolean }) {}

  start(): void {
    let last = 0;
    let wasLeader = false;
    this.#done = periodic('event pruning', this.deps.log, this.#abort.signal, () => 1000, async () => {
      if (!this.deps.isLeader()) { wasLeader = false; return; }
      if (wasLeader && Date.now() - last < PRUNE_EVERY_MS) return;
      const n = await pruneEvents(this.deps.db, this.deps.retentionDays);
      const deliveries = await pruneWebhookDeliveries(this.deps.db, this.deps.webhookLogRetentionDays);
      wasLeader = true;
      last = Date.now();
      this.deps.log.info({ deleted: n, retentionDays: this.deps.retentionDays, webhookDeliveriesDeleted: deliveries, webhookLogRetentionDays: this.deps.webhookLogRetentionDays }, 'events pruned');
    });
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}
