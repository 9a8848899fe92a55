// Deleting runs, package versions and datasets (issue 21: `run delete`, `package delete`, `dataset delete`,
// and the project's retention). Each deletion goes in three steps, in this order of safety:
//
//   1. mark: one guarded statement (or one locked transaction) sets deleting_at on the rows, refusing what is
//      still needed: a live run; a version a live run or a schedule names; a dataset a live run reads or a
//      schedule names. From then on no list and no submit sees the rows, so nothing new comes to point at
//      the objects.
//   2. remove the objects: everything under the run's prefix (runs/RUN/, whatever files the attempts left
//      there: checkpoints and future outputs included, not a fixed list), the dataset's prefix, or the
//      version's zip unless another version still points at the same content-addressed key.
//   3. one transaction deletes the rows and writes the `*.deleted` event of the ML log.
//
// A scheduler that dies between the steps leaves rows marked deleting, pointing at objects that may be half
// gone but that nothing reads; the leader finishes them (storage/janitor.ts) with the same `finish*`
// functions, which are idempotent (a removed object is removed again without error, a deleted row is gone).
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type * as Minio from 'minio';
import type { Logger } from 'pino';
import type { Database, Db } from '../db/database.js';
import { ErrorCodes, TrainyardError, notFound } from '../../shared/errors.js';
import { RunStatus, terminalStatuses } from '../../shared/run-states.js';
import { keys, listObjects, withStorageRetry, type RetryOptions } from '../../shared/storage.js';
import { formatVersion, parseVersion } from '../../shared/versions.js';
import { states } from '../runs/transitions.js';
import { recordEvents, type NewEvent } from '../events/record.js';
import { EventKind } from '../../shared/event-kinds.js';
import { pushStaleBefore } from '../datasets/generation.js';

/** What deletion needs: the scheduler's context has all of it. */
export interface DeletionDeps { db: Db; minio: Minio.Client; settings: { bucket: string }; storageRetry: RetryOptions; log: Logger }

export interface Deleted { kind: 'run' | 'package' | 'dataset'; subject: string; versions: string[]; objects_removed: number; bytes_removed: number }

/** The states of a run that may still need its package version and data: every state but the ended ones. */
const LIVE = states(Object.values(RunStatus).filter((s) => !terminalStatuses.has(s)));
const ENDED = states([...terminalStatuses]);

const refused = (message: string) => new TrainyardError(ErrorCodes.FailedPrecondition, message);

/** Removes every object under `prefix`, in batches of 1,000; says how many and their bytes. */
export async function removeUnder(d: DeletionDeps, prefix: string): Promise<{ objects: number; bytes: number }> {
  const objects = await listObjects(d.minio, d.settings.bucket, prefix, d.storageRetry);
  for (let i = 0; i < objects.length; i += 1000) {
    const batch = objects.slice(i, i + 1000).map((o) => o.key);
    await withStorageRetry(`remove ${prefix}`, async () => {
      const results = await d.minio.removeObjects(d.settings.bucket, batch);
      // removeObjects answers per object: a refusal of one is an error of the whole step (retried).
      const failed = results.find((r) => r?.Error?.Code);
      if (failed?.Error) throw Object.assign(new Error(`${failed.Error.Key ?? ''}: ${failed.Error.Message ?? failed.Error.Code}`), { code: failed.Error.Code });
    }, d.storageRetry);
  }
  return { objects: objects.length, bytes: objects.reduce((n, o) => n + o.size, 0) };
}

/** Step 3: in one transaction, `drop` deletes the rows (false: they were already gone) and the event is written. */
async function dropRows(d: DeletionDeps, drop: (trx: Transaction<Database>) => Promise<boolean>, event: NewEvent): Promise<boolean> {
  return d.db.transaction().execute(async (trx) => {
    if (!(await drop(trx))) return false;
    await recordEvents(trx, [event]);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------- runs

/** Step 1 for a run: only an ended one. A run already marked is answered as marked (its delete goes on). */
export async function markRun(db: Db, id: string, by: string): Promise<void> {
  const { rows } = await sql`UPDATE runs SET deleting_at = now(), deleted_by = ${by}
    WHERE id = ${id} AND status IN ${ENDED} AND deleting_at IS NULL AND NOT EXISTS (${resumersOf(sql`runs.id`)}) RETURNING id`.execute(db);
  if (rows.length > 0) return;
  const run = await db.selectFrom('runs').select(['status', 'deleting_at']).where('id', '=', id).executeTakeFirst();
  if (!run) throw notFound(`run ${id} not found`);
  if (run.deleting_at) return;
  if (!terminalStatuses.has(run.status as RunStatus)) throw refused(`run ${id} is ${run.status}: only an ended run can be deleted (stop it first: trainyard run kill ${id})`);
  // Its checkpoints are what a live run, or a schedule that can still fire, resumes from (--resume-from).
  const { rows: blockers } = await sql<{ why: string }>`${resumersOf(sql`${id}::text`)} LIMIT 5`.execute(db);
  if (blockers.length > 0) throw refused(`run ${id} is still needed: ${blockers.map((b) => b.why).join('; ')} from its checkpoint`);
  throw refused(`run ${id} changed while it was being deleted; try again`);
}

/** What resumes from run `id`'s checkpoints and so keeps it: a live run, or a schedule that can still fire. */
export function resumersOf(id: RawBuilder<unknown>): RawBuilder<{ why: string }> {
  return sql<{ why: string }>`SELECT 'run ' || b.id || ' (' || b.status || ') resumes' AS why FROM runs b WHERE b.resume_from = ${id} AND b.status IN ${LIVE}
    UNION ALL
    SELECT 'schedule "' || s.name || '" (' || s.state || ') resumes' AS why FROM schedules s WHERE s.state <> 'done' AND s.request->>'resume_from' = ${id}`;
}

/** Steps 2 and 3 for a run marked deleting: null when it was already finished (by another scheduler). */
export async function finishRun(d: DeletionDeps, id: string): Promise<Deleted | null> {
  const run = await d.db.selectFrom('runs').select(['project', 'deleted_by']).where('id', '=', id).where('deleting_at', 'is not', null).executeTakeFirst();
  if (!run) return null;
  // Everything under the run's own prefix: every attempt, whatever it left there.
  const removed = await removeUnder(d, `runs/${id}/`);
  const gone = await dropRows(d, async (trx) => {
    await trx.deleteFrom('run_logs').where('run_id', '=', id).execute();
    await trx.deleteFrom('run_events').where('run_id', '=', id).execute();
    await trx.deleteFrom('run_secrets').where('run_id', '=', id).execute();
    await trx.deleteFrom('gpu_leases').where('run_id', '=', id).execute();
    return !!(await trx.deleteFrom('runs').where('id', '=', id).where('deleting_at', 'is not', null).returning('id').executeTakeFirst());
  }, {
    kind: EventKind.RunDeleted, project: run.project, subject: id, detail: `deleted by ${run.deleted_by ?? 'unknown'}`,
    data: { by: run.deleted_by, objects_removed: removed.objects, bytes_removed: removed.bytes },
  });
  if (!gone) return null;
  d.log.info({ run: id, by: run.deleted_by, objects: removed.objects, bytes: removed.bytes }, 'run deleted');
  return { kind: 'run', subject: id, versions: [], objects_removed: removed.objects, bytes_removed: removed.bytes };
}

// ------------------------------------------------------------------------------------- package versions

/**
 * Step 1 for a package's versions (one, or every one when `version` is empty), in one transaction that
 * locks them: refused, changing nothing, if a live run trains or evaluates one of them, or a schedule that
 * can still fire names one (a schedule naming no version fires the newest, so it names the newest).
 * Returns the versions marked (those already marked are included: their delete goes on).
 */
export async function markVersions(db: Db, pkg: string, version: string, by: string): Promise<{ major: number; minor: number }[]> {
  const want = version ? parseVersion(version, 'version') : null;
  return db.transaction().execute(async (trx) => {
    let q = trx.selectFrom('package_versions').select(['major', 'minor', 'deleting_at']).where('package', '=', pkg).orderBy('major').orderBy('minor').forUpdate();
    if (want) q = q.where('major', '=', want.major).where('minor', '=', want.minor);
    const rows = await q.execute();
    if (rows.length === 0) throw notFound(want ? `package "${pkg}" has no version ${formatVersion(want)}` : `package "${pkg}" not found`);
    const targets = rows.filter((r) => !r.deleting_at);
    if (targets.length > 0) {
      const { rows: [newest] } = await sql<{ major: number; minor: number }>`SELECT major, minor FROM package_versions
        WHERE package = ${pkg} AND deleting_at IS NULL ORDER BY major DESC, minor DESC LIMIT 1`.execute(trx);
      const list = targets.map((t) => formatVersion(t));
      const { rows: blockers } = await sql<{ why: string }>`
        SELECT 'run ' || r.id || ' (' || r.status || ') uses version ' || r.package_major || '.' || r.package_minor AS why
          FROM runs r WHERE r.package = ${pkg} AND r.status IN ${LIVE} AND (r.package_major || '.' || r.package_minor) = ANY(${list}::text[])
        UNION ALL
        SELECT 'schedule "' || s.name || '" (' || s.state || ') names ' || coalesce(nullif(s.request->>'version', ''), 'its newest version, ' || ${newest ? formatVersion(newest) : ''}) AS why
          FROM schedules s WHERE s.state <> 'done' AND s.request->>'package' = ${pkg}
            AND coalesce(nullif(s.request->>'version', ''), ${newest ? formatVersion(newest) : ''}) = ANY(${list}::text[])
        LIMIT 5`.execute(trx);
      if (blockers.length > 0) {
        throw refused(`package "${pkg}"${want ? ` ${formatVersion(want)}` : ''} is still needed: ${blockers.map((b) => b.why).join('; ')}`);
      }
      await sql`UPDATE package_versions SET deleting_at = now(), deleted_by = ${by}
        WHERE package = ${pkg} AND deleting_at IS NULL AND (major || '.' || minor) = ANY(${list}::text[])`.execute(trx);
    }
    return rows.map((r) => ({ major: r.major, minor: r.minor }));
  });
}

/**
 * Steps 2 and 3 for one version marked deleting. Its zip is content-addressed (packages/NAME/SHA/), so the
 * same bytes pushed twice are one object: it is removed only when no version that is not being deleted
 * points at it. The package's row goes with its last version.
 */
export async function finishVersion(d: DeletionDeps, pkg: string, major: number, minor: number): Promise<Deleted | null> {
  const v = await d.db.selectFrom('package_versions').innerJoin('packages', 'packages.name', 'package_versions.package')
    .select(['object_key', 'size_bytes', 'deleted_by', 'packages.project'])
    .where('package', '=', pkg).where('major', '=', major).where('minor', '=', minor).where('deleting_at', 'is not', null).executeTakeFirst();
  if (!v) return null;
  const shared = await d.db.selectFrom('package_versions').select('major').where('object_key', '=', v.object_key).where('deleting_at', 'is', null).executeTakeFirst();
  let removed = { objects: 0, bytes: 0 };
  if (!shared) {
    await withStorageRetry(`remove ${v.object_key}`, () => d.minio.removeObject(d.settings.bucket, v.object_key), d.storageRetry);
    removed = { objects: 1, bytes: v.size_bytes };
  }
  const version = `${major}.${minor}`;
  const gone = await dropRows(d, async (trx) => {
    const row = await trx.deleteFrom('package_versions').where('package', '=', pkg).where('major', '=', major).where('minor', '=', minor)
      .where('deleting_at', 'is not', null).returning('major').executeTakeFirst();
    if (!row) return false;
    await sql`DELETE FROM packages WHERE name = ${pkg} AND NOT EXISTS (SELECT 1 FROM package_versions WHERE package = ${pkg})`.execute(trx);
    return true;
  }, {
    kind: EventKind.PackageDeleted, project: v.project, subject: pkg, detail: `version ${version} deleted by ${v.deleted_by ?? 'unknown'}`,
    data: { version, by: v.deleted_by, objects_removed: removed.objects, bytes_removed: removed.bytes },
  });
  if (!gone) return null;
  d.log.info({ package: pkg, version, by: v.deleted_by, objects: removed.objects }, 'package version deleted');
  return { kind: 'package', subject: pkg, versions: [version], objects_removed: removed.objects, bytes_removed: removed.bytes };
}

// ------------------------------------------------------------------------------------------- datasets

/** Step 1 for a dataset: refused while a live run reads it or a schedule that can still fire names it. */
export async function markDataset(db: Db, name: string, by: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const ds = await trx.selectFrom('datasets').select('deleting_at').where('name', '=', name).forUpdate().executeTakeFirst();
    if (!ds) throw notFound(`dataset "${name}" not found`);
    if (ds.deleting_at) return;
    const { rows: blockers } = await sql<{ why: string }>`
      SELECT 'a push into it is under way' AS why FROM datasets
        WHERE name = ${name} AND pushes_open > 0 AND push_seen_at >= ${pushStaleBefore}
      UNION ALL
      SELECT 'run ' || id || ' (' || status || ') reads it' AS why FROM runs
        WHERE status IN ${LIVE} AND (dataset = ${name} OR eval_dataset = ${name})
      UNION ALL
      SELECT 'schedule "' || name || '" (' || state || ') names it' AS why FROM schedules
        WHERE state <> 'done' AND (split_part(request->>'dataset', '/', 1) = ${name} OR split_part(coalesce(request->>'eval_dataset', ''), '/', 1) = ${name})
      LIMIT 5`.execute(trx);
    if (blockers.length > 0) throw refused(`dataset "${name}" is still needed: ${blockers.map((b) => b.why).join('; ')}`);
    await trx.updateTable('datasets').set({ deleting_at: sql`now()`, deleted_by: by }).where('name', '=', name).execute();
  });
}

/** Steps 2 and 3 for a dataset marked deleting. */
export async function finishDataset(d: DeletionDeps, name: string): Promise<Deleted | null> {
  const ds = await d.db.selectFrom('datasets').select(['project', 'deleted_by']).where('name', '=', name).where('deleting_at', 'is not', null).executeTakeFirst();
  if (!ds) return null;
  const removed = await removeUnder(d, keys.datasetPrefix(name));
  const gone = await dropRows(d, async (trx) => !!(await trx.deleteFrom('datasets').where('name', '=', name).where('deleting_at', 'is not', null).returning('name').executeTakeFirst()), {
    kind: EventKind.DatasetDeleted, project: ds.project, subject: name, detail: `deleted by ${ds.deleted_by ?? 'unknown'}`,
    data: { by: ds.deleted_by, objects_removed: removed.objects, bytes_removed: removed.bytes },
  });
  if (!gone) return null;
  d.log.info({ dataset: name, by: ds.deleted_by, objects: removed.objects, bytes: removed.bytes }, 'dataset deleted');
  return { kind: 'dataset', subject: name, versions: [], objects_removed: removed.objects, bytes_removed: removed.bytes };
}

/** The three steps for a package: every version (or one), and the package's row with the last. */
export async function deletePackage(d: DeletionDeps, pkg: string, version: string, by: string): Promise<Deleted> {
  const marked = await markVersions(d.db, pkg, version, by);
  const out: Deleted = { kind: 'package', subject: pkg, versions: [], objects_removed: 0, bytes_removed: 0 };
  for (const v of marked) {
    const done = await finishVersion(d, pkg, v.major, v.minor);
    if (!done) continue;
    out.versions.push(...done.versions);
    out.objects_removed += done.objects_removed;
    out.bytes_removed += done.bytes_removed;
  }
  return out;
}

/** The three steps for a run. */
export async function deleteRun(d: DeletionDeps, id: string, by: string): Promise<Deleted> {
  await markRun(d.db, id, by);
  return (await finishRun(d, id)) ?? { kind: 'run', subject: id, versions: [], objects_removed: 0, bytes_removed: 0 };
}

/** The three steps for a dataset. */
export async function deleteDataset(d: DeletionDeps, name: string, by: string): Promise<Deleted> {
  await markDataset(d.db, name, by);
  return (await finishDataset(d, name)) ?? { kind: 'dataset', subject: name, versions: [], objects_removed: 0, bytes_removed: 0 };
}
