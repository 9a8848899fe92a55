// A dataset push streams files straight into the bucket under datasets/NAME/. Paths are checked before a
// byte is stored. A push that fails part way removes what it wrote when the dataset is new, so a failed
// first push leaves no dataset; the row (what users see) is written only once every file is stored. A new
// name is claimed for the pushing project before anything is stored (dataset_claims), so another
// project's push of the same name is refused at its header, never after writing into this one's folder.
import { PassThrough } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { Db } from '../db/database.js';
import type { Dataset, PushDatasetChunk__Output } from '../../shared/proto.js';
import { checkName, checkRelativePath } from '../../shared/names.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import { keys, listObjects, PART_BYTES, removePrefix, withStorageRetry } from '../../shared/storage.js';
import { uploadStream } from '../../shared/stream-upload.js';
import { datasetToProto } from './to-proto.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorizeName } from '../auth/policy.js';
import { recordEvents } from '../events/record.js';
import { EventKind } from '../../shared/event-kinds.js';
import { checkStorage, withStorageLock } from '../storage/quota.js';
import { beginChange, endChange, endedPush, nextGeneration, PUSH_REFRESH_MS, PUSH_STALE_MS, pushStaleBefore, touchChange } from './generation.js';
/**
 * Small files stored at once while the push goes on (issue 21): each is a round trip to MinIO, so one
 * after the other a push of thousands waits on latency, not bytes. A file of a part or more is stored on
 * its own, its parts sent in parallel (shared/stream-upload.ts), so what is held in memory stays bounded.
 */
const PUSH_FILES_IN_FLIGHT = 16;

/**
 * Claims a new dataset name for `project` as push `pushId`, or says which project holds it: a claim of a
 * running push, or (read after the claim, so a push that just ended is seen) the dataset itself. A dead
 * push's claim (not refreshed for PUSH_STALE_MS) is taken, and what it stored is removed first: the new
 * dataset is this push's files only.
 */
async function claimName(ctx: SchedulerContext, name: string, project: string, pushId: string): Promise<{ claimed: true } | { claimed: false; owner: string; pushing: boolean }> {
  const { db } = ctx;
  const got = await db.insertInto('dataset_claims').values({ name, project, push_id: pushId })
    // Only a dead push's claim is taken, whatever its project: two first pushes of one name at once would
    // each take the other's files for their own (and a failed one remove them).
    .onConflict((oc) => oc.column('name').doUpdateSet({ project, claimed_at: sql`now()`, push_id: pushId })
      .where('dataset_claims.claimed_at', '<', pushStaleBefore))
    .returning(['name', sql<boolean>`xmax <> 0`.as('taken')]).executeTakeFirst();
  if (!got) {
    const holder = await db.selectFrom('dataset_claims').select('project').where('name', '=', name).executeTakeFirst();
    if (holder) return { claimed: false, owner: holder.project, pushing: true };
  }
  // A first push that committed between our read and this claim: the dataset is now its project's.
  const owner = await db.selectFrom('datasets').select('project').where('name', '=', name).executeTakeFirst();
  if (owner) {
    if (got) await releaseClaim(db, name, pushId);
    return { claimed: false, owner: owner.project, pushing: false };
  }
  if (!got) return claimName(ctx, name, project, pushId); // the other claim ended meanwhile
  if (got.taken) {
    ctx.log.warn({ dataset: name, project }, 'took the name claim of a push not heard of for minutes; removing what it stored');
    await removePrefix(ctx.minio, ctx.settings.bucket, keys.datasetPrefix(name), ctx.storageRetry).catch(async (err: unknown) => {
      await releaseClaim(db, name, pushId).catch(() => {});
      throw err;
    });
  }
  return { claimed: true };
}

/** Gives push `pushId`'s claim up (on `db`, or in the transaction that writes the dataset's row); false: it holds none (taken). */
async function releaseClaim(db: Db, name: string, pushId: string): Promise<boolean> {
  const r = await db.deleteFrom('dataset_claims').where('name', '=', name).where('push_id', '=', pushId).executeTakeFirst();
  return r.numDeletedRows > 0n;
}

/**
 * Completes a file the client stored by parts, once they are checked: numbered 1 to N with none missing and
 * `expected` bytes in all (a client's URLs are each bound to its part's bytes, but which parts it stored
 * is only known here). Anything else gives the upload up and fails the push.
 */
async function completeDirect(ctx: SchedulerContext, key: string, uploadId: string, expected: number): Promise<void> {
  const { db, minio, settings } = ctx;
  // Only an upload this scheduler began for this very file (PresignDatasetParts recorded it).
  const row = await db.selectFrom('dataset_uploads').select('object_key').where('upload_id', '=', uploadId).executeTakeFirst();
  if (row?.object_key !== key) throw invalid(`file ${key}: upload ${uploadId.slice(0, 80)} is not one begun for this file (unknown, ended, or another's)`);
  const listed = await withStorageRetry(`list the parts of ${key}`, () => (minio as unknown as { listParts(b: string, k: string, id: string): Promise<{ part: number; etag: string; size: number }[]> })
    .listParts(settings.bucket, key, uploadId), ctx.storageRetry);
  const parts = [...listed].sort((a, b) => a.part - b.part);
  const bytes = parts.reduce((n, p) => n + p.size, 0);
  const numbered = parts.every((p, i) => p.part === i + 1);
  if (!numbered || bytes !== expected || parts.length === 0) {
    throw invalid(`file ${key}: its upload holds ${parts.length} part(s), ${bytes} bytes${numbered ? '' : ' with parts missing'}; the push announced ${expected} bytes`);
  }
  await withStorageRetry(`complete ${key}`, () => minio.completeMultipartUpload(settings.bucket, key, uploadId, parts.map((p) => ({ part: p.part, etag: p.etag }))), ctx.storageRetry);
  // Stored now: counted as the dataset's, no longer as an open upload.
  await db.deleteFrom('dataset_uploads').where('upload_id', '=', uploadId).execute();
}

/** Gives up an upload the push took and did not complete: MinIO drops its parts, its record goes. */
async function giveUp(ctx: SchedulerContext, key: string, uploadId: string): Promise<void> {
  await ctx.minio.abortMultipartUpload(ctx.settings.bucket, key, uploadId).catch((e: unknown) =>
    ctx.log.warn({ err: e, key }, 'could not give up a failed push\'s upload; MinIO drops it with its stale uploads'));
  await ctx.db.deleteFrom('dataset_uploads').where('upload_id', '=', uploadId).where('object_key', '=', key).execute()
    .catch((e: unknown) => ctx.log.warn({ err: e, key }, 'could not forget a failed push\'s upload; it is forgotten after a day'));
}

/**
 * `cancelled`: the call's end by its client (or deadline). A push stuck on storage is then no longer said
 * to be alive: its claim goes stale, and a push again is not refused for it for ever.
 */
export async function receiveDataset(ctx: SchedulerContext, chunks: AsyncIterable<PushDatasetChunk__Output>, caller: Principal, cancelled?: AbortSignal): Promise<Dataset> {
  const alive: Alive = { timer: null, lost: false, okAt: 0 };
  const stop = () => { if (alive.timer) clearInterval(alive.timer); alive.timer = null; };
  cancelled?.addEventListener('abort', stop, { once: true });
  try {
    return await receive(ctx, chunks, caller, alive);
  } finally {
    stop();
    cancelled?.removeEventListener('abort', stop);
  }
}

/** A running push's liveness: the timer that says so, and whether its claim was taken meanwhile (it was taken for dead). */
interface Alive { timer: NodeJS.Timeout | null; lost: boolean; /** when the claim was last made or refreshed */ okAt: number }

/** What a push whose claim was taken fails with: another push owns the name's folder now. */
const claimLost = (name: string) => new TrainyardError(ErrorCodes.FailedPrecondition,
  `dataset "${name}": this push was not heard of for ${PUSH_STALE_MS / 60_000} minutes (the scheduler could not reach its database?) and another push took the name; push again`);

/**
 * receiveDataset; `alive.timer`, once the push holds a claim or has begun changing an existing dataset,
 * says every PUSH_REFRESH_MS that it still runs (a large file may take many minutes, with no header between).
 */
async function receive(ctx: SchedulerContext, chunks: AsyncIterable<PushDatasetChunk__Output>, caller: Principal, alive: Alive): Promise<Dataset> {
  const { db, minio, settings } = ctx;
  const pushId = randomBytes(12).toString('hex');
  /** Keeps this push's claim on `name` fresh; false: it holds none (another push took it for dead). */
  const refreshClaim = async (name: string): Promise<boolean> => (await db.updateTable('dataset_claims').set({ claimed_at: sql`now()` })
    .where('name', '=', name).where('push_id', '=', pushId).executeTakeFirst()).numUpdatedRows > 0n;
  /**
   * Whether this push still holds its name's claim: asked right before a failed first push removes its
   * folder, which is another push's once the claim was taken (a push whose refreshes failed for minutes,
   * or one stuck on storage after its client went). Unknown (the database away) is no: the folder stays,
   * and the push that takes the stale claim removes it.
   */
  const holdsClaim = async (name: string): Promise<boolean> => !alive.lost && await refreshClaim(name).catch(() => false);
  /**
   * What a push that failed (or was refused at its end) leaves: a new dataset nothing, its folder and its
   * claim gone, unless the claim was taken (the folder is the other push's then); an existing dataset the
   * files stored all the same, under a new generation, this push no longer counted among its pushes.
   */
  const abandon = async (name: string, how: 'failed' | 'refused'): Promise<void> => {
    if (claimed && await holdsClaim(name)) {
      await removePrefix(minio, settings.bucket, keys.datasetPrefix(name), ctx.storageRetry).catch((e: unknown) =>
        ctx.log.warn({ err: e, dataset: name }, `could not clean up a ${how} dataset push`));
      await releaseClaim(db, name, pushId).catch((e: unknown) => ctx.log.warn({ err: e, dataset: name }, `could not release a ${how} push's claim; it goes stale`));
    }
    if (changing) {
      await endChange(db, name).catch((e: unknown) => ctx.log.warn({ err: e, dataset: name }, `could not end a ${how} push's change; agents list the dataset until it is taken for dead`));
    }
  };
  let name: string | null = null;
  // Datasets belong to the project that first pushed them; a new name goes to the caller's project.
  let project = caller.kind === 'user' ? caller.project : '';
  let existed = false;
  let claimed = false;
  /** This push is counted among an existing dataset's pushes (generation.ts beginChange): its end must uncount it. */
  let changing = false;
  let current: { key: string; stream: PassThrough; done: Promise<unknown>; expected: number; got: number } | null = null;
  let files = 0;
  let announced = 0;
  /** The push's total as its header announced it (0: not announced, clients before the storage quota). */
  let total = 0;
  const seen = new Set<string>();
  /** Files stored by the client through PresignDatasetParts, not yet completed: given up if the push fails. */
  const direct = new Map<string, string>(); // upload id -> key

  // Files whose bytes have all come and whose puts are still going; the first failure among them.
  const storing = new Set<Promise<void>>();
  let storeFailed: { err: unknown } | null = null;
  const settle = async (upTo: number) => {
    while (storing.size > upTo) await Promise.race(storing);
    if (storeFailed) throw (storeFailed as { err: unknown }).err;
  };
  const finishFile = async () => {
    if (!current) return;
    const c = current;
    if (c.got !== c.expected) throw invalid(`file ${c.key}: expected ${c.expected} bytes, received ${c.got}`);
    current = null;
    c.stream.end();
    const p: Promise<void> = c.done.then(() => {}, (err: unknown) => { storeFailed ??= { err }; }).finally(() => storing.delete(p));
    storing.add(p);
    await settle(c.expected >= PART_BYTES ? 0 : PUSH_FILES_IN_FLIGHT - 1);
  };

  try {
    for await (const chunk of chunks) {
      if (chunk.part === 'header') {
        if (name !== null) throw invalid('dataset push: the header must come once, first');
        name = checkName('dataset', chunk.header!.name);
        const owner = await db.selectFrom('datasets').select(['project', 'deleting_at']).where('name', '=', name).executeTakeFirst();
        existed = !!owner;
        if (owner) project = owner.project;
        authorizeName(caller, Actions.PushDataset, project, 'dataset', name);
        // Its files are going (storage/deletion.ts): nothing may be added under the prefix being removed.
        if (owner?.deleting_at) throw new TrainyardError(ErrorCodes.FailedPrecondition, `dataset "${name}" is being deleted; push again once it is gone`);
        total = Number(chunk.header!.size_bytes);
        if (!Number.isSafeInteger(total) || total < 0) throw invalid(`dataset push: size_bytes ${String(chunk.header!.size_bytes)} is not a number of bytes`);
        // Over the project's storage quota: refused on the size announced, before a byte is stored or the
        // name claimed (files pushed again are counted as new: the check cannot know they replace others).
        if (total > 0) await checkStorage(db, project, total, `dataset "${name}"`);
        if (!existed) {
          const c = await claimName(ctx, name, project, pushId);
          if (!c.claimed) {
            if (c.owner === project && !c.pushing) existed = true; // our project's push created it meanwhile
            else {
              authorizeName(caller, Actions.PushDataset, c.owner, 'dataset', name);
              throw new TrainyardError(ErrorCodes.FailedPrecondition, c.pushing
                ? `dataset "${name}" is being created by another push (project "${c.owner}"); push again once it has ended`
                : `dataset "${name}" was created by project "${c.owner}" meanwhile`);
            }
          } else {
            claimed = true;
            alive.okAt = Date.now();
          }
        }
        // Before a file is stored: agents list an existing dataset while its files change (generation.ts).
        if (existed) {
          if (!(await beginChange(db, name))) throw new TrainyardError(ErrorCodes.FailedPrecondition, `dataset "${name}" is being deleted; push again once it is gone`);
          changing = true;
        }
        const pushed = name;
        alive.timer = setInterval(() => {
          // Never taken for a dead push's: its claim (a new dataset), or its part in the dataset's pushes.
          const touch = claimed
            ? refreshClaim(pushed).then((held) => { if (held) alive.okAt = Date.now(); else alive.lost = true; })
            : touchChange(db, pushed);
          touch.catch((e: unknown) => ctx.log.warn({ err: e, dataset: pushed }, 'could not say a running push is alive; it is taken for dead if this goes on'));
        }, PUSH_REFRESH_MS);
        alive.timer.unref();
      } else if (name === null) {
        throw invalid('dataset push: the first message must be the header naming the dataset');
      } else if (alive.lost || (claimed && Date.now() - alive.okAt > PUSH_STALE_MS - PUSH_REFRESH_MS)) {
        // Lost, or not refreshed for so long that it may be taken before the next refresh: nothing more
        // is stored into a folder that may be another push's.
        throw claimLost(name);
      } else if (chunk.part === 'file') {
        await finishFile();
        const rel = checkRelativePath('dataset file path', chunk.file!.path);
        if (seen.has(rel)) throw invalid(`dataset push: file "${rel}" sent twice`);
        seen.add(rel);
        const key = keys.datasetFile(name, rel);
        const expected = Number(chunk.file!.size_bytes);
        // Every request has a size limit: a push says each file's size before its bytes, so an oversized
        // one is refused before they come (and what it stored so far is removed below, as for any failure).
        if (!Number.isSafeInteger(expected) || expected < 0) throw invalid(`file ${rel}: size ${String(chunk.file!.size_bytes)} is not a number of bytes`);
        announced += expected;
        if (total > 0 && announced > total) throw invalid(`dataset "${name}": the files add up to more than the ${total} bytes the push announced`);
        if (files + 1 > settings.maxDatasetPushFiles) throw invalid(`dataset "${name}": a push may send at most ${settings.maxDatasetPushFiles} files (--max-dataset-push-files on the scheduler); push it in parts`);
        if (announced > settings.maxDatasetPushMb * 1024 * 1024) {
          throw invalid(`dataset "${name}": a push may send at most ${settings.maxDatasetPushMb} MiB (--max-dataset-push-mb on the scheduler); this one reached ${Math.ceil(announced / 1024 / 1024)} MiB at ${rel}; push it in parts`);
        }
        files++;
        if (chunk.file!.upload_id) {
          // Stored already, part by part, by the client (datasets/presign-parts.ts): completed here, now
          // that the push's checks have been made, and only if its parts add up to the size announced.
          const uploadId = chunk.file!.upload_id;
          direct.set(uploadId, key);
          const p: Promise<void> = completeDirect(ctx, key, uploadId, expected).then(() => { direct.delete(uploadId); }, (err: unknown) => { storeFailed ??= { err }; })
            .finally(() => storing.delete(p));
          storing.add(p);
          await settle(PUSH_FILES_IN_FLIGHT - 1);
          continue;
        }
        // A large file waits for the puts in flight and goes alone (its parts in parallel); the parts are
        // held in memory, so each is retried on its own.
        if (expected >= PART_BYTES) await settle(0);
        const stream = new PassThrough();
        const done = uploadStream(minio, settings.bucket, key, stream, ctx.storageRetry, { maxBytes: expected, sha256: false });
        done.catch(() => {});
        current = { key, stream, done, expected, got: 0 };
      } else if (chunk.part === 'data') {
        if (!current) throw invalid('dataset push: data before any file header');
        const c: { stream: PassThrough; got: number; expected: number; key: string } = current;
        c.got += chunk.data!.length;
        if (c.got > c.expected) throw invalid(`file ${c.key}: more bytes than the ${c.expected} announced`);
        if (!c.stream.write(chunk.data)) await once(c.stream, 'drain');
      }
    }
    await finishFile();
    await settle(0);
    if (name === null) throw invalid('dataset push: no header received');
    if (files === 0) throw invalid(`dataset "${name}": the folder has no files; nothing to push`);
  } catch (err) {
    const c = current as { stream: PassThrough; done: Promise<unknown> } | null;
    c?.stream.destroy();
    await c?.done.catch(() => {});
    await Promise.all(storing); // nothing still writing into the folder that is removed below
    // Parts a client stored for this push and that were not completed go too (whatever the dataset).
    await Promise.all([...direct].map(([uploadId, key]) => giveUp(ctx, key, uploadId)));
    if (name !== null) await abandon(name, 'failed');
    throw err;
  }

  const refused = async (err: unknown): Promise<never> => {
    await abandon(name, 'refused');
    throw err;
  };
  if (alive.lost) await refused(claimLost(name));
  const all = await listObjects(minio, settings.bucket, keys.datasetPrefix(name), ctx.storageRetry).catch(refused);
  const bytes = all.reduce((n, o) => n + o.size, 0);
  // Guarded by the owner: a first push by another project that committed meanwhile keeps the name. The
  // row and its dataset.pushed event commit together, under the project's storage lock: the quota is
  // checked again on what was stored (a push that announced less, or a concurrent one of the project).
  const row = await withStorageLock(db, project, async (trx) => {
    // A first push commits only while it still holds its claim (another push may have taken it for dead);
    // checked first, so that no other refusal below is taken for this push's own.
    if (claimed && !(await releaseClaim(trx, name, pushId))) {
      alive.lost = true;
      throw claimLost(name);
    }
    const was = await trx.selectFrom('datasets').select('size_bytes').where('name', '=', name).where('project', '=', project).executeTakeFirst();
    await checkStorage(trx, project, bytes - Number(was?.size_bytes ?? 0), `dataset "${name}"`);
    // A push into a dataset that existed only updates it: were the row gone (deleted meanwhile), an insert
    // would bring the name back over a prefix the delete emptied.
    const r = changing
      ? await trx.updateTable('datasets').set({ file_count: all.length, size_bytes: bytes, updated_at: sql`now()`, ...endedPush })
        .where('name', '=', name).where('project', '=', project).where('deleting_at', 'is', null).returningAll().executeTakeFirst()
      : await trx.insertInto('datasets').values({ name, file_count: all.length, size_bytes: bytes, updated_at: new Date(), project })
        .onConflict((oc) => oc.column('name').doUpdateSet({ file_count: all.length, size_bytes: bytes, updated_at: sql`now()`, generation: nextGeneration }).where('datasets.project', '=', project))
        .returningAll().executeTakeFirst();
    if (r) {
      await recordEvents(trx, [{
        kind: EventKind.DatasetPushed, project, subject: name, detail: `${files} file(s) pushed; ${all.length} in all`,
        data: { files_pushed: files, files: all.length, size_bytes: bytes },
      }]);
    }
    return r;
  }).catch(refused);
  if (!row && changing) {
    // Deleted while this push ran (its count had lapsed: nothing said it was alive for PUSH_STALE_MS). What
    // it stored under the prefix is no dataset's: `doctor --storage --repair` removes it.
    throw new TrainyardError(ErrorCodes.FailedPrecondition, `dataset "${name}" was deleted while this push ran; push it again`);
  }
  if (!row) {
    // The name is another project's now (deleted and pushed again by it meanwhile). Whether this push was
    // counted on the new row or the deleted one is not known: a count too many only makes runs list for
    // PUSH_STALE_MS, a count too few could let one trust a listing while that project's push runs.
    const owner = await db.selectFrom('datasets').select('project').where('name', '=', name).executeTakeFirstOrThrow();
    authorizeName(caller, Actions.PushDataset, owner.project, 'dataset', name);
    throw new TrainyardError(ErrorCodes.FailedPrecondition, `dataset "${name}" was created by project "${owner.project}" while this push ran`);
  }
  ctx.log.info({ dataset: name, files, totalFiles: all.length, bytes }, 'dataset pushed');
  return datasetToProto(row);
}
