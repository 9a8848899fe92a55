// A dataset's generation (migrations/038): a number that changes at every change Trainyard makes to the
// dataset's objects, carried by a run's claim (Dispatch.dataset_generation), so an agent that listed the
// same generation a moment ago may use that listing again instead of listing the dataset (issue 21: a warm
// run of 20,000 files spent most of its 0.7 s on MinIO's listing). While pushes store files into it (any
// number at once), claims hand out 0, "list it"; each push's end gives a new generation. A push whose
// scheduler died stops touching push_seen_at, and counts as ended PUSH_STALE_MS later. What is written
// into the bucket behind Trainyard's back is not seen here: agents trust a listing for
// --listing-trust-seconds at most.
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/database.js';

/** A push touches its dataset (and a new dataset's name claim) this often while it runs, whatever it is doing. */
export const PUSH_REFRESH_MS = 60_000;
/** A push not heard of for this long died with its scheduler: its dataset's generation may be handed out, its claim taken. */
export const PUSH_STALE_MS = 3 * PUSH_REFRESH_MS;
/** The time before which a push (or a new name's claim) not heard of since is dead: now less PUSH_STALE_MS. */
export const pushStaleBefore = sql<Date>`now() - ${`${PUSH_STALE_MS} milliseconds`}::interval`;

/**
 * The generation of the dataset named by column `ref` of the outer query, as a claim hands it out: 0 (list
 * it) while a push changes it, while it is being deleted, or with no such dataset (no evaluation dataset).
 */
export function claimGeneration(ref: string): RawBuilder<number | null> {
  return sql<number | null>`(SELECT CASE WHEN d.deleting_at IS NULL AND (d.pushes_open = 0 OR d.push_seen_at < ${pushStaleBefore}) THEN d.generation ELSE 0 END FROM datasets d WHERE d.name = ${sql.ref(ref)})`;
}

/** A push is about to store files into an existing dataset: no listing is trusted until it (and any other) ends. */
export async function beginChange(db: Db, name: string): Promise<boolean> {
  // Not into a dataset being deleted (its row locked and marked by storage/deletion.ts markDataset, which
  // refuses while a push is counted here): false, and the push is refused before it stores a file.
  const r = await db.updateTable('datasets').set({
    // Pushes counted before are gone if none was heard of for PUSH_STALE_MS (their scheduler died).
    pushes_open: sql<number>`CASE WHEN pushes_open > 0 AND push_seen_at >= ${pushStaleBefore} THEN pushes_open + 1 ELSE 1 END`,
    push_seen_at: sql<Date>`now()`,
    generation: nextGeneration,
  }).where('name', '=', name).where('deleting_at', 'is', null).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** A running push of an existing dataset is still alive (every PUSH_REFRESH_MS). */
export async function touchChange(db: Db, name: string): Promise<void> {
  await db.updateTable('datasets').set({ push_seen_at: sql<Date>`now()` }).where('name', '=', name).where('pushes_open', '>', 0).execute();
}

/** A new generation: what a push's end sets, with its row's write or on its own. */
export const nextGeneration = sql<number>`nextval('dataset_generations')`;

/** A push of an existing dataset ends (stored and recorded, or failed): one push fewer, and a new generation. */
export const endedPush = { pushes_open: sql<number>`greatest(datasets.pushes_open - 1, 0)`, generation: nextGeneration };

/** A push into an existing dataset failed: whatever it stored is what the dataset is now. */
export async function endChange(db: Db, name: string): Promise<void> {
  await db.updateTable('datasets').set(endedPush).where('name', '=', name).execute();
}
