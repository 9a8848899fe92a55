// A dataset's generation (migrations/038): a number that changes at every change Trainyard makes to the
// dataset's objects, carried by a run's claim (Dispatch.dataset_generation), so an agent that listed the
// same generation a moment ago may use that listing again instead of listing the dataset (issue 21: a warm
// run of 20,000 files spent most of its 0.7 s on MinIO's listing). A push holds it negative from before
// its first file is stored until it ends, so a listing taken while files change is never trusted, nor is
// one of a push whose scheduler died part way (until the next push ends). What is written into the bucket
// behind Trainyard's back is not seen here: agents trust a listing for --listing-trust-seconds at most.
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/database.js';

/**
 * The generation of the dataset named by column `ref` of the outer query, as a claim hands it out: 0 (list
 * it) while a push changes it, while it is being deleted, or with no such dataset (no evaluation dataset).
 */
export function claimGeneration(ref: string): RawBuilder<number | null> {
  return sql<number | null>`(SELECT CASE WHEN d.generation > 0 AND d.deleting_at IS NULL THEN d.generation ELSE 0 END FROM datasets d WHERE d.name = ${sql.ref(ref)})`;
}

/** A push is about to store files into an existing dataset: no listing is trusted until it ends. */
export async function beginChange(db: Db, name: string): Promise<void> {
  await db.updateTable('datasets').set({ generation: sql<number>`-nextval('dataset_generations')` }).where('name', '=', name).execute();
}

/** What a push's end sets (its row's write, or a failed push of an existing dataset): a new generation. */
export const nextGeneration = sql<number>`nextval('dataset_generations')`;

/** A push into an existing dataset failed: whatever it stored is what the dataset is now. */
export async function endChange(db: Db, name: string): Promise<void> {
  await db.updateTable('datasets').set({ generation: nextGeneration }).where('name', '=', name).execute();
}
