// The end of an attempt as its agent reports it. A success is committed in one transaction: the outputs
// are checked in the bucket, _results.json is written, the next minor version is registered and the run
// turns Successful, all guarded by the attempt's lease. A retry of the same report after a lost reply
// gets the same answer; a report from a stale attempt changes nothing.
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import * as runs from './transitions.js';
import { buildResults } from './results.js';
import { AttemptOutcome, RunStatus } from '../../shared/run-states.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { keys, outputNames, withStorageRetry } from '../../shared/storage.js';
import { formatVersion } from '../../shared/versions.js';
import type { FinishAttemptRequest__Output, FinishAttemptResponse } from '../../shared/proto.js';

const stale = (id: string) => new TrainyardError(ErrorCodes.StaleLease, `run ${id}: this attempt is no longer current`);

export async function finishAttempt(ctx: SchedulerContext, req: FinishAttemptRequest__Output): Promise<FinishAttemptResponse> {
  const { db } = ctx;
  const outcome = req.outcome as AttemptOutcome;
  let changed: runs.Changed | null = null;
  let outputVersion = '';
  switch (outcome) {
    case AttemptOutcome.Succeeded: {
      const r = await commitSuccess(ctx, req);
      changed = r.changed;
      outputVersion = r.version;
      break;
    }
    case AttemptOutcome.Failed:
    case AttemptOutcome.PackagingFailed:
      changed = await runs.endAttempt(db, req.run_id, req.lease, RunStatus.Failed, req.reason || 'failed');
      break;
    case AttemptOutcome.TimedOut:
      changed = await runs.endAttempt(db, req.run_id, req.lease, RunStatus.Failed, 'timed out');
      break;
    case AttemptOutcome.Killed:
      changed = await runs.endAttempt(db, req.run_id, req.lease, RunStatus.Killed, req.reason || 'killed');
      break;
    case AttemptOutcome.HandedBack:
      changed = await runs.requeue(db, req.run_id, req.lease, req.reason || 'handed back by its agent', false);
      break;
    default:
      outcome satisfies never;
      throw invalid(`unknown outcome "${req.outcome as string}"`);
  }
  if (changed) {
    ctx.log.info({ run: changed.id, status: changed.status, attempt: changed.attempt, outcome, reason: req.reason }, 'run status');
    ctx.runChanged(changed.id);
    ctx.kick();
    return { status: changed.status, output_version: outputVersion };
  }
  // Nothing changed: a retry of a report that already landed, or a stale attempt.
  const run = await db.selectFrom('runs').select(['status', 'lease', 'output_major', 'output_minor', 'agent']).where('id', '=', req.run_id).executeTakeFirst();
  if (!run) throw notFound(`run ${req.run_id} not found`);
  if (run.lease === req.lease && run.agent === null && run.status !== RunStatus.Waiting) {
    const v = run.output_major !== null ? formatVersion({ major: run.output_major, minor: run.output_minor! }) : '';
    return { status: run.status, output_version: v };
  }
  throw stale(req.run_id);
}

async function commitSuccess(ctx: SchedulerContext, req: FinishAttemptRequest__Output): Promise<{ changed: runs.Changed | null; version: string }> {
  const { db, minio, settings, storageRetry } = ctx;
  return db.transaction().execute(async (trx) => {
    const run = await trx.selectFrom('runs').selectAll().where('id', '=', req.run_id).forUpdate().executeTakeFirst();
    if (!run) throw notFound(`run ${req.run_id} not found`);
    if (run.lease !== req.lease || run.agent === null || run.status !== RunStatus.Running) return { changed: null, version: '' };
    const prefix = keys.attemptPrefix(run.id, run.attempt);
    // Never Successful before the outputs are durable: the package zip must be there, whole.
    const stat = await withStorageRetry(`stat ${prefix}${outputNames.package}`, () => minio.statObject(settings.bucket, prefix + outputNames.package), storageRetry);
    if (req.package_size_bytes && stat.size !== req.package_size_bytes) {
      throw new TrainyardError(ErrorCodes.StorageError, `package zip in the bucket has ${stat.size} bytes, the agent sent ${req.package_size_bytes}`);
    }
    // Versions of one package are numbered under its row lock, so concurrent runs get distinct minors.
    await trx.selectFrom('packages').select('name').where('name', '=', run.package).forUpdate().executeTakeFirstOrThrow();
    const { max } = await trx.selectFrom('package_versions')
      .select(sql<number>`coalesce(max(minor), 0)`.as('max'))
      .where('package', '=', run.package).where('major', '=', run.package_major)
      .executeTakeFirstOrThrow();
    const minor = Number(max) + 1;
    const version = formatVersion({ major: run.package_major, minor });
    const results = buildResults({
      package: run.package,
      version: formatVersion({ major: run.package_major, minor: run.package_minor }),
      trainDataPrefix: keys.datasetPrefix(run.dataset, run.dataset_sub),
      gpus: run.gpus,
      env: run.env,
      outputPrefix: prefix,
      startAt: req.start_at,
      endAt: req.end_at,
      outputVersion: version,
      savedTrainingData: req.saved_training_data,
    });
    const body = Buffer.from(JSON.stringify(results, null, 2) + '\n');
    await withStorageRetry(`upload ${prefix}${outputNames.results}`,
      () => minio.putObject(settings.bucket, prefix + outputNames.results, body, body.length, { 'Content-Type': 'application/json' }), storageRetry);
    await trx.insertInto('package_versions').values({
      package: run.package, major: run.package_major, minor, source: 'run', run_id: run.id,
      trained_major: run.package_major, trained_minor: run.package_minor,
      object_key: prefix + outputNames.package, size_bytes: stat.size,
      sha256: req.package_sha256 || createHash('sha256').update(stat.etag).digest('hex'),
    }).execute();
    const changed = await runs.succeed(trx, run.id, req.lease, { major: run.package_major, minor, results });
    return { changed, version };
  });
}
