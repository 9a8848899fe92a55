// Retention of the webhook delivery log (`trainyard webhooks deliveries`): finished deliveries (delivered,
// or failed after --webhook-retry-minutes) whose event is older than --webhook-log-retention-days are
// deleted with their tries (webhook_attempts cascades). Pending ones are never deleted here: they are still
// owed to a receiver. Run by the placing scheduler in the ML log's retention pass (events/retention.ts).
import { sql } from 'kysely';
import type { Db } from '../db/database.js';

/** Deleted per statement: a large backlog never holds a long lock or a long transaction. */
export const WEBHOOK_PRUNE_BATCH = 1000;

export async function pruneWebhookDeliveries(db: Db, retentionDays: number, batch = WEBHOOK_PRUNE_BATCH): Promise<number> {
  if (retentionDays <= 0) return 0;
  let total = 0;
  for (;;) {
    // The state is checked again in the DELETE itself: a row cannot be pending (it never goes back), but the
    // guard keeps the statement right on its own.
    const r = await sql`DELETE FROM webhook_deliveries WHERE id IN (
      SELECT id FROM webhook_deliveries WHERE state <> 'pending' AND created_at < now() - make_interval(days => ${retentionDays})
      ORDER BY created_at LIMIT ${batch}) AND state <> 'pending'`.execute(db);
    const n = Number(r.numAffectedRows ?? 0);
    total += n;
    if (n < batch) return total;
  }
}
