// A project's storage quota (`trainyard projects set P --max-storage-gb N`): what it holds in the bucket,
// counted in Postgres from the rows that point at the bytes (uploaded package versions, datasets, the
// outputs of its successful runs, the checkpoints its runs keep: runs.checkpoint_bytes), against project_limits.max_storage_bytes.
//
// Every write that adds to a project's usage checks it twice: up front, from the size the client announced
// (so an honest push over the quota stores nothing), and again in the transaction that makes the bytes
// visible, under a per-project advisory lock that every such transaction takes first. Two pushes or run
// ends of one project therefore never both fit in the same remaining bytes: the second reads the usage the
// first committed.
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { Database, Db } from '../db/database.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';

/**
 * The bytes the project `project` (a value, or a column of the enclosing query) holds, as a SQL expression:
 * its uploaded package versions, its datasets, its runs' outputs and their kept checkpoints. A run's new package version is one of
 * its outputs: counted there, not twice; once that run is deleted (the version outlives it), as a version.
 */
export function usedBytes(project: RawBuilder<unknown> | string): RawBuilder<number> {
  return sql<number>`((SELECT coalesce(sum(v.size_bytes), 0) FROM package_versions v JOIN packages pk ON pk.name = v.package
      WHERE pk.project = ${project} AND (v.source = 'upload' OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = v.run_id)))
    + (SELECT coalesce(sum(d.size_bytes), 0) FROM datasets d WHERE d.project = ${project})
    + (SELECT coalesce(sum(r.output_bytes + r.checkpoint_bytes), 0) FROM runs r WHERE r.project = ${project}))`;
}

/** The bytes a project holds now, and its quota (null: none). */
export async function storageOf(db: Db | Transaction<Database>, project: string): Promise<{ used: number; quota: number | null }> {
  const { rows: [row] } = await sql<{ used: string; quota: string | null }>`
    SELECT ${usedBytes(project)} AS used, (SELECT max_storage_bytes FROM project_limits WHERE project = ${project}) AS quota`.execute(db);
  return { used: Number(row!.used), quota: row!.quota === null ? null : Number(row!.quota) };
}

/** "1.2 MB" for people: decimal units, as --max-storage-gb counts them. */
export function formatBytes(n: number): string {
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/**
 * The refusal every quota check throws (FAILED_PRECONDITION to clients): names the quota, the usage and
 * what was asked. Its own class, so a caller can tell it from other refusals (a run's end fails the run).
 */
export class QuotaExceeded extends TrainyardError {
  constructor(project: string, quota: number, used: number, adding: number, what: string) {
    super(ErrorCodes.FailedPrecondition,
      `storage quota of project "${project}" exceeded: ${what} would add ${formatBytes(adding)} to the ${formatBytes(used)} it holds, ` +
      `over its quota of ${formatBytes(quota)} (an admin raises it with: trainyard projects set ${project} --max-storage-gb N)`);
    this.name = 'QuotaExceeded';
  }
}

/** Throws quotaExceeded when `adding` more bytes would take the project over its quota. */
export async function checkStorage(db: Db | Transaction<Database>, project: string, adding: number, what: string): Promise<void> {
  // Most projects have no quota: then the sum over everything they hold (which grows with every run) is
  // not read at all, one primary-key read instead on every push and every run's end.
  const limit = await db.selectFrom('project_limits').select('max_storage_bytes').where('project', '=', project).executeTakeFirst();
  if (limit?.max_storage_bytes === null || limit?.max_storage_bytes === undefined) return;
  const { used, quota } = await storageOf(db, project);
  if (quota !== null && used + adding > quota) throw new QuotaExceeded(project, quota, used, adding, what);
}

/**
 * Runs `work` in a transaction that holds the project's storage lock: the usage it reads includes every
 * addition committed before, and none can commit until it ends. Every transaction that adds bytes to a
 * project takes it, and takes it first.
 */
export async function withStorageLock<T>(db: Db, project: string, work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext('trainyard storage'), hashtext(${project}))`.execute(trx);
    return work(trx);
  });
}
