// A pushed package: checked whole before anything is stored; then the zip is stored under its sha256,
// and the next major version is numbered under the package's row lock and inserted in one short
// transaction. A failure at any step leaves no version (a stored zip without its row is invisible).
import { stat } from 'node:fs/promises';
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import { checkName } from '../../shared/names.js';
import { invalidPackage } from '../../shared/errors.js';
import { inspectZip, readZipEntry } from '../../shared/zip.js';
import { keys, withStorageRetry } from '../../shared/storage.js';
import { checkTrainPy } from './check-train-py.js';
import type { PackageVersion } from '../../shared/proto.js';
import { versionToProto } from './to-proto.js';
import { sha256File } from '../../shared/hash.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorizeName } from '../auth/policy.js';
import { recordEvents } from '../events/record.js';
import { EventKind } from '../../shared/event-kinds.js';
import { checkStorage, withStorageLock } from '../storage/quota.js';

/**
 * Where a push of `name` by `caller` goes: the project that owns the package, or the caller's own for a
 * new name (packages belong to the project that first pushed them). Throws unless the caller may push there.
 */
export async function pushProject(ctx: SchedulerContext, caller: Principal, name: string): Promise<string> {
  const owner = await ctx.db.selectFrom('packages').select('project').where('name', '=', checkName('package', name)).executeTakeFirst();
  const project = owner?.project ?? (caller.kind === 'user' ? caller.project : '');
  authorizeName(caller, Actions.PushPackage, project, 'package', name);
  return project;
}

export async function registerUploadedPackage(
  ctx: SchedulerContext, input: { name: string; description: string; file: string; caller: Principal },
): Promise<PackageVersion> {
  const { db, minio, settings } = ctx;
  const name = checkName('package', input.name);
  const project = await pushProject(ctx, input.caller, name);
  const { size } = await stat(input.file);
  if (size === 0) throw invalidPackage(`package "${name}": the upload is empty`);
  const info = await inspectZip(input.file, { maxUnzippedBytes: settings.maxUnzippedBytes, maxEntries: settings.maxZipEntries });
  const hasTrain = info.entries.some((e) => e.rel === 'train.py' && !e.isDirectory);
  if (!hasTrain) {
    const seen = info.entries.slice(0, 5).map((e) => e.rel).join(', ');
    throw invalidPackage(`package "${name}" has no train.py at its root${seen ? ` (it has: ${seen}${info.entries.length > 5 ? ', ...' : ''})` : ' (the zip is empty)'}`);
  }
  const trainPy = await readZipEntry(input.file, `${info.root}train.py`, 16 * 1024 * 1024);
  const checked = await checkTrainPy(trainPy ?? Buffer.alloc(0));
  if (checked === 'skipped') ctx.log.warn({ package: name }, 'python3 not found on the scheduler: train.py not checked at push');
  const sha256 = await sha256File(input.file);
  // Over the project's storage quota: refused before the bytes reach the bucket (checked again below, under
  // the project's storage lock, where a concurrent push cannot slip past it).
  await checkStorage(db, project, size, `package "${name}"`);

  // The bytes go to the bucket first, under their digest: a concurrent push of the same name writes
  // another key (or the same bytes), so no lock needs to be held while up to 512 MiB travel. Then one
  // short transaction numbers the version under the package's row lock. A failure between the two leaves
  // an object no row points at, which no one sees.
  const objectKey = keys.uploadedPackage(name, sha256);
  await withStorageRetry(`upload ${objectKey}`, () => minio.fPutObject(settings.bucket, objectKey, input.file, { 'Content-Type': 'application/zip' }), ctx.storageRetry);
  const row = await withStorageLock(db, project, async (trx) => {
    await checkStorage(trx, project, size, `package "${name}"`).catch(async (err: unknown) => {
      // Refused after its bytes went up: the object goes too, unless a version (the same bytes pushed
      // before) points at it.
      const used = await trx.selectFrom('package_versions').select('object_key').where('object_key', '=', objectKey).executeTakeFirst();
      if (!used) await minio.removeObject(settings.bucket, objectKey).catch((e: unknown) => ctx.log.warn({ err: String(e), key: objectKey }, 'could not remove a refused push\'s zip'));
      throw err;
    });
    await trx.insertInto('packages').values({ name, description: input.description, project }).onConflict((oc) => oc.column('name').doNothing()).execute();
    const owner = await trx.selectFrom('packages').select('project').where('name', '=', name).forUpdate().executeTakeFirstOrThrow();
    // Another project may have created the name while the bytes travelled: the first push owns it.
    if (owner.project !== project) authorizeName(input.caller, Actions.PushPackage, owner.project, 'package', name);
    const { max } = await trx.selectFrom('package_versions').select(sql<number>`coalesce(max(major), 0)`.as('max'))
      .where('package', '=', name).executeTakeFirstOrThrow();
    const version = await trx.insertInto('package_versions').values({
      package: name, major: Number(max) + 1, minor: 0, source: 'upload', run_id: null, trained_major: null, trained_minor: null,
      object_key: objectKey, size_bytes: size, sha256, has_evaluate: checked === 'skipped' ? null : checked.hasEvaluate,
    }).returningAll().executeTakeFirstOrThrow();
    await recordEvents(trx, [{
      kind: EventKind.PackagePushed, project: owner.project, subject: name, detail: `version ${version.major}.${version.minor}`,
      data: { version: `${version.major}.${version.minor}`, sha256, size_bytes: size },
    }]);
    return version;
  });
  ctx.log.info({ package: name, version: `${row.major}.${row.minor}`, bytes: size }, 'package version registered');
  return versionToProto(row);
}
