// The end of an attempt as its agent reports it. A success: the outputs are checked in the bucket (outside
// any transaction), then, holding the run's row, _results.json and _lineage.json are written and ONE
// statement registers the next minor version and turns the run Successful, guarded by the attempt's lease
// (a second copy of the report waits on the row and writes nothing). A retry of the same report after a lost reply gets the same
// answer; a report from a stale attempt changes nothing. Storage that refuses for good (the zip is not
// there, or not the size the agent sent) ends the run Failed with that reason instead of being retried.
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { Changed } from './transitions.js';
import { buildResults } from './results.js';
import { appendLogs } from './logs.js';
import { agentLineage, buildLineage } from './lineage.js';
import { gangMembers, memberRecords } from './members.js';
import { AttemptOutcome, RunStatus } from '../../shared/run-states.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { copyObjectIfMatch, getObjectIfMatch, keys, listObjects, objectChecksum, outputNames, removePrefix, uploadBuffer } from '../../shared/storage.js';
import { QuotaExceeded, checkStorage, withStorageLock } from '../storage/quota.js';
import { createHash } from 'node:crypto';
import { formatVersion } from '../../shared/versions.js';
import type { FinishAttemptRequest__Output, FinishAttemptResponse } from '../../shared/proto.js';
import type { PhaseRow, RecordedOutput } from '../db/database.js';
import { evaluates, makesVersion, phaseWords } from '../../shared/pipelines.js';
import { dropCheckpointsAfterSuccess, type RunCheckpoints } from './checkpoints.js';

/** The harness's phases as the agent reported them, kept only when they are what the harness writes. */
function phasesOf(req: FinishAttemptRequest__Output): PhaseRow[] {
  const ok = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  return (req.phases ?? []).slice(0, 8)
    .filter((p) => Object.hasOwn(phaseWords, p.name) && ok(p.started_at) && ok(p.ended_at))
    .map((p) => ({ name: p.name, started_at: p.started_at, ended_at: p.ended_at }));
}

const stale = (id: string) => new TrainyardError(ErrorCodes.StaleLease, `run ${id}: this attempt is no longer current`);

/** `agent`: the authenticated caller; every transition below is guarded by it as well as by the lease. */
export async function finishAttempt(ctx: SchedulerContext, req: FinishAttemptRequest__Output, agent: string): Promise<FinishAttemptResponse> {
  const { runs } = ctx;
  const outcome = req.outcome as AttemptOutcome;
  // The attempt's last log lines, stored before its end (an ended run's log is final; appendLogs is
  // guarded by the lease and stores each seq once, so a retried report stores nothing twice). A success
  // stores them while it reads the run; every other end waits for them first.
  const logged = req.lines?.length ? appendLogs(ctx, { run_id: req.run_id, lease: req.lease, lines: req.lines }, agent) : Promise.resolve();
  logged.catch(() => {}); // awaited below
  if (outcome !== AttemptOutcome.Succeeded) await logged;
  let changed: Changed | null = null;
  let outputVersion = '';
  let checkpoints: RunCheckpoints | undefined;
  // What a failed or killed attempt left is recorded as it ends too (run outputs serves only that).
  const left = () => leftBehind(ctx, req);
  switch (outcome) {
    case AttemptOutcome.Succeeded: {
      const seen: { checkpoints?: RunCheckpoints } = {};
      const r = await commitSuccess(ctx, req, agent, logged, seen);
      changed = r.changed;
      outputVersion = r.version;
      checkpoints = seen.checkpoints;
      break;
    }
    case AttemptOutcome.Failed:
    case AttemptOutcome.PackagingFailed:
      changed = await runs.endAttempt(req.run_id, req.lease, agent, RunStatus.Failed, req.reason || 'failed', phasesOf(req), await left());
      break;
    case AttemptOutcome.TimedOut:
      changed = await runs.endAttempt(req.run_id, req.lease, agent, RunStatus.Failed, 'timed out', phasesOf(req), await left());
      break;
    case AttemptOutcome.Killed:
      // A preempted attempt stopped: the run queues again, not counting an attempt (transitions.ts).
      changed = await runs.requeuePreempted(req.run_id, req.lease, agent)
        ?? await runs.endAttempt(req.run_id, req.lease, agent, RunStatus.Killed, req.reason || 'killed', phasesOf(req), await left());
      break;
    case AttemptOutcome.HandedBack:
      changed = await runs.requeue(req.run_id, req.lease, req.reason || 'handed back by its agent', false, agent);
      break;
    case AttemptOutcome.Stalled:
      // --stall-timeout: requeued like a lost attempt (it counts), and the next one resumes from its checkpoint.
      changed = await runs.requeue(req.run_id, req.lease, req.reason || 'stalled', true, agent);
      break;
    default:
      outcome satisfies never;
      throw invalid(`unknown outcome "${req.outcome as string}"`);
  }
  if (changed?.status === RunStatus.Successful) void dropCheckpointsAfterSuccess(ctx, req.run_id, checkpoints);
  if (changed) return { status: changed.status, output_version: outputVersion };
  // Nothing changed: a retry of a report that already landed, or a stale attempt.
  const run = await ctx.db.selectFrom('runs').select(['status', 'lease', 'output_major', 'output_minor', 'agent', 'last_agent']).where('id', '=', req.run_id).executeTakeFirst();
  if (!run) throw notFound(`run ${req.run_id} not found`);
  if (run.lease === req.lease && run.agent === null && run.last_agent === agent && run.status !== RunStatus.Waiting) {
    const v = run.output_major !== null ? formatVersion({ major: run.output_major, minor: run.output_minor! }) : '';
    return { status: run.status, output_version: v };
  }
  throw stale(req.run_id);
}

/**
 * What the attempt the report names left under its prefix, for an end that is not a success: recorded by
 * endAttempt only if that attempt is the run's (the report's number is a hint, checked in the statement).
 * Null when the report names none or the bucket cannot be listed now: the end is not held up for it,
 * and the run's outputs are then served as its folder lists.
 */
async function leftBehind(ctx: SchedulerContext, req: FinishAttemptRequest__Output): Promise<{ attempt: number; outputs: RecordedOutput[] } | null> {
  if (!(req.attempt > 0)) return null;
  const prefix = keys.attemptPrefix(req.run_id, req.attempt);
  try {
    const objects = await listObjects(ctx.minio, ctx.settings.bucket, prefix, { ...ctx.storageRetry, retries: 1 });
    return { attempt: req.attempt, outputs: objects.map((o) => ({ path: o.key.slice(prefix.length), size: o.size, etag: o.etag })) };
  } catch (err) {
    ctx.log.warn({ run: req.run_id, err: (err as Error).message }, 'could not list what an ended attempt left; its outputs are served as listed');
    return null;
  }
}

const SHA256 = /^[0-9a-f]{64}$/;
const schedulerFiles: ReadonlySet<string> = new Set([outputNames.results, outputNames.lineage]);

async function hashObject(body: Promise<NodeJS.ReadableStream>): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of await body) h.update(chunk as Buffer);
  return h.digest('hex');
}
const MAX_VERSION_RACES = 20;

/** `logged`: the report's log lines being stored; settled before any transition. */
/** `seen`: what it read of the run's checkpoints, for their retention after the success (checkpoints.ts). */
async function commitSuccess(ctx: SchedulerContext, req: FinishAttemptRequest__Output, agent: string, logged: Promise<unknown>, seen: { checkpoints?: RunCheckpoints }): Promise<{ changed: Changed | null; version: string }> {
  const { db, minio, settings, storageRetry, runs } = ctx;
  const statZip = (attempt: number) => objectChecksum(minio, settings.bucket, keys.attemptPrefix(req.run_id, attempt) + outputNames.package, storageRetry);
  // A report with a package zip names its attempt: the zip is looked up while the run is read (checked
  // below against the run's own attempt, which alone decides).
  const early = req.attempt > 0 && req.package_sha256 ? { attempt: req.attempt, stat: statZip(req.attempt) } : null;
  early?.stat.catch(() => {}); // awaited below when it is the run's attempt
  const [run] = await Promise.all([db.selectFrom('runs').selectAll().where('id', '=', req.run_id).executeTakeFirst(), logged]);
  if (!run) throw notFound(`run ${req.run_id} not found`);
  if (run.lease !== req.lease || run.agent !== agent || run.status !== RunStatus.Running) return { changed: null, version: '' };
  seen.checkpoints = { keep: run.keep_checkpoints, bytes: Number(run.checkpoint_bytes) };
  const fail = async (reason: string) => ({ changed: await runs.endAttempt(run.id, req.lease, agent, RunStatus.Failed, reason), version: '' });
  // A kill the scheduler accepted wins over a success that arrives after it: the user was told it is
  // being killed, so it ends Killed and registers nothing.
  const killed = async () => ({ changed: await runs.endAttempt(run.id, req.lease, agent, RunStatus.Killed, 'killed'), version: '' });
  if (run.kill_requested) return killed();
  const pipeline = run.pipeline;
  const score = req.has_score ? req.score : null;
  if (evaluates(pipeline) && (score === null || !Number.isFinite(score))) return fail(`the agent reported no score for a ${pipeline} run`);
  const phases = phasesOf(req);
  const prefix = keys.attemptPrefix(run.id, run.attempt);
  // A gang's members (node rank, agent, GPUs, ranks) go in both documents; an ordinary run's are as before.
  const members = run.agents > 1 ? memberRecords(await gangMembers(db, run)) : null;
  const resultsFor = (outputVersion: string) => buildResults({
    pipeline,
    package: run.package,
    version: formatVersion({ major: run.package_major, minor: run.package_minor }),
    dataPrefix: keys.datasetPrefix(run.dataset, run.dataset_sub),
    evalDataPrefix: run.eval_dataset ? keys.datasetPrefix(run.eval_dataset, run.eval_dataset_sub) : null,
    gpus: run.gpus,
    env: run.env,
    outputPrefix: prefix,
    startAt: req.start_at,
    endAt: req.end_at,
    outputVersion,
    savedTrainingData: req.saved_training_data,
    savedTestData: req.saved_test_data,
    score,
    members,
  });
  const reported = agentLineage(req.lineage_json);
  const lineageFor = (output: { version: string; sha256: string } | null) => buildLineage(run, reported, { score, output, members });
  // What the attempt left under its prefix, listed once now that it has ended: `run outputs` serves these
  // objects only, each on condition of the ETag recorded here (anything its credentials write later is
  // never served). The scheduler's own two files are added as they are written.
  const uploaded = listObjects(minio, settings.bucket, prefix, storageRetry)
    .then((objects) => objects.filter((o) => !schedulerFiles.has(o.key.slice(prefix.length))).map((o) => ({ path: o.key.slice(prefix.length), size: o.size, etag: o.etag })));
  uploaded.catch(() => {}); // awaited below
  // This attempt's own prefix, in the two names its credentials may not write (its session policy denies
  // them): rewriting them (after a lost race) can touch no other run's outputs.
  const writeJson = async (name: string, doc: unknown): Promise<RecordedOutput> => {
    const body = Buffer.from(JSON.stringify(doc, null, 2) + '\n');
    const { etag } = await uploadBuffer(minio, settings.bucket, prefix + name, body, storageRetry, { headers: { 'Content-Type': 'application/json' } });
    return { path: name, size: body.length, etag };
  };
  const writeResults = async (results: unknown, lineage: unknown): Promise<RecordedOutput[]> => {
    const [objects, ...ours] = await Promise.all([uploaded, writeJson(outputNames.results, results), writeJson(outputNames.lineage, lineage)]);
    return [...objects, ...ours].sort((a, b) => (a.path < b.path ? -1 : 1));
  };
  // Refused by a transition's guard: a kill landed since the read above (or the attempt is no longer
  // current, which endAttempt's own lease guard then leaves alone too).
  const refused = async () => {
    const now = await db.selectFrom('runs').select('kill_requested').where('id', '=', run.id).executeTakeFirst();
    return now?.kill_requested ? killed() : { changed: null, version: '' };
  };

  // The project's storage quota, at output time: what the attempt left under its prefix (as the bucket lists
  // it, not as the agent says) must fit in what the project has left. A run over it fails "storage quota …"
  // and its objects are removed first, so nothing half-written stays. Checked here, before _results.json is
  // written, and again under the project's storage lock in the transaction that makes the run Successful
  // (where two runs ending at once cannot both fit in the same remaining bytes).
  const outputBytes = (await uploaded).reduce((n, o) => n + o.size, 0);
  const what = `run ${run.id}'s outputs`;
  const overQuota = async (err: unknown) => {
    if (!(err instanceof QuotaExceeded)) throw err;
    // Only the report that ends the run Failed removes its outputs. A second copy of a success report
    // (sent again while the first was committing) read the run Running before that commit, and counts
    // the run's own outputs twice once it did: it must not delete a Successful run's outputs.
    const failed = await fail(err.message);
    if (failed.changed) {
      await removePrefix(minio, settings.bucket, prefix, storageRetry)
        .catch((e: unknown) => ctx.log.warn({ run: run.id, err: String(e) }, 'could not remove the outputs of a run over its storage quota'));
    }
    return failed;
  };
  try {
    await checkStorage(db, run.project, outputBytes, what);
  } catch (err) {
    return overQuota(err);
  }
  /**
   * The success, in one transaction that holds the run's row (after the project's storage lock, which every
   * transaction adding bytes takes first): `write` puts _results.json and _lineage.json up inside it, just
   * before the statement that registers the version they name. A second copy of this report (its first
   * reply late, sent again to this scheduler or another) waits on the row, then finds the run ended and
   * writes nothing (issue 20: it used to take the next minor and overwrite both documents with it). Its
   * changes are told once it committed.
   */
  const succeed = async (write: () => Promise<RecordedOutput[]>, o: Omit<Parameters<typeof runs.succeed>[3], 'outputs'>) => {
    const c = await withStorageLock(db, run.project, async (trx) => {
      const now = await trx.selectFrom('runs').select(['status', 'lease', 'agent', 'kill_requested']).where('id', '=', run.id).forUpdate().executeTakeFirst();
      if (!now || now.status !== RunStatus.Running || Number(now.lease) !== req.lease || now.agent !== agent || now.kill_requested) return [];
      await checkStorage(trx, run.project, outputBytes, what);
      const outputs = await write();
      const t = runs.collecting(trx);
      await t.runs.succeed(run.id, req.lease, agent, { ...o, outputs, outputBytes });
      return t.changes;
    });
    runs.announce(c);
    return c[0] ?? null;
  };

  if (!makesVersion(pipeline)) {
    // An evaluation: a score, no version.
    const results = resultsFor('');
    const lineage = lineageFor(null);
    let changed: Changed | null;
    try {
      changed = await succeed(() => writeResults(results, lineage), { results, lineage, score, phases, version: null });
    } catch (err) {
      return overQuota(err);
    }
    return changed ? { changed, version: '' } : refused();
  }

  // The agent hashes the zip it uploaded; the digest is what `package versions` shows and what a later
  // download is checked against, so a report without a real one is refused rather than guessed.
  if (!SHA256.test(req.package_sha256)) return fail(`the agent reported no valid sha256 for the package zip (got "${req.package_sha256.slice(0, 80)}")`);
  // Never Successful before the outputs are durable: the package zip must be there, whole, and be what the
  // agent says by MinIO's account, not the agent's: the SHA-256 MinIO verified as it received the zip (a
  // single PUT with x-amz-checksum-sha256), else (a multipart upload) hashed here, read on condition of the
  // ETag. Then it is copied server-side, on condition of that same ETag, to a key no attempt may write,
  // and registered there: whatever the attempt's credentials put later changes no version.
  let zip: { size: number; etag: string; sha256: string };
  let objectKey: string;
  let copied: Promise<unknown>;
  const refusedStorage = (err: unknown) => err instanceof TrainyardError && err.code === ErrorCodes.StorageRejected;
  try {
    zip = await (early?.attempt === run.attempt ? early.stat : statZip(run.attempt));
    if (zip.size !== req.package_size_bytes) return fail(`the package zip in the bucket has ${zip.size} bytes, the agent uploaded ${req.package_size_bytes}`);
    const zipKey = prefix + outputNames.package;
    const sha256 = zip.sha256 || await hashObject(getObjectIfMatch(minio, settings.bucket, zipKey, zip.etag, storageRetry));
    if (sha256 !== req.package_sha256) return fail(`the package zip in the bucket has SHA-256 ${sha256}, not the ${req.package_sha256} the agent reported; no version was registered`);
    objectKey = keys.uploadedPackage(run.package, sha256);
    // While _results.json and _lineage.json are written (awaited before the version is registered).
    copied = copyObjectIfMatch(minio, settings.bucket, zipKey, objectKey, zip.etag, storageRetry).then(() => null, (err: unknown) => err);
  } catch (err) {
    if (refusedStorage(err)) return fail(`the new package version is not in the bucket as uploaded: ${(err as Error).message}`);
    throw err; // transient: the agent retries the report
  }

  // Successes of one package version in this process take the next minor one after another: in a burst,
  // two slots finishing together would otherwise both read the same minor, and the loser would write its
  // _results.json again. Across schedulers the primary key still decides (the loop below).
  const line = `${run.package}@${run.package_major}`;
  const known = lastMinorsOf(db);
  return serially(line, async () => {
    for (let race = 0; ; race++) {
      // The next minor: after the last one this process registered for this major (minors come only from
      // successes, never pushes, and none is ever deleted), else read without a lock. If another
      // scheduler registered it first, the insert below fails on the primary key and this reads again.
      let max = race === 0 ? known.get(line) : undefined;
      if (max === undefined) {
        const read = await db.selectFrom('package_versions').select(sql<number>`coalesce(max(minor), 0)`.as('max'))
          .where('package', '=', run.package).where('major', '=', run.package_major).executeTakeFirstOrThrow();
        max = Number(read.max);
      }
      const minor = max + 1;
      const version = formatVersion({ major: run.package_major, minor });
      const results = resultsFor(version);
      const lineage = lineageFor({ version, sha256: req.package_sha256 });
      try {
        const changed = await succeed(() => writeResults(results, lineage).then(async (outputs) => {
          const copyError = await copied;
          if (copyError) throw copyError;
          return outputs;
        }), {
          results, lineage, score, phases,
          version: {
            package: run.package, major: run.package_major, minor, trainedMajor: run.package_major, trainedMinor: run.package_minor,
            objectKey, sizeBytes: zip.size, sha256: req.package_sha256,
          },
        });
        if (changed) remember(known, line, minor);
        return changed ? { changed, version } : refused();
      } catch (err) {
        const pgErr = err as { code?: string; constraint?: string };
        if (pgErr.code === '23505' && pgErr.constraint === 'package_versions_pkey' && race < MAX_VERSION_RACES) continue;
        if (refusedStorage(err)) return fail(`the new package version is not in the bucket as uploaded: ${(err as Error).message}`);
        return overQuota(err); // transient errors are thrown again from there: the agent retries the report
      }
    }
  });
}

/**
 * The last minor this process registered per package and major (LRU-bounded): the next success of that
 * line takes the one after without a read. Only ever lower than or equal to the truth (it is set after a
 * commit), so the worst a stale entry costs is one primary-key conflict and a read.
 */
const lastMinors = new WeakMap<object, Map<string, number>>();
const MAX_LINES_KEPT = 1000;
/** Per database (a process may hold several schedulers, each on its own). */
function lastMinorsOf(db: object): Map<string, number> {
  let m = lastMinors.get(db);
  if (!m) lastMinors.set(db, m = new Map());
  return m;
}
function remember(known: Map<string, number>, line: string, minor: number): void {
  known.delete(line);
  known.set(line, minor);
  if (known.size > MAX_LINES_KEPT) known.delete(known.keys().next().value!);
}

/** The tail of each key's queue: `fn` runs once every earlier call with the same key has settled. */
const queues = new Map<string, Promise<unknown>>();
function serially<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const before = queues.get(key) ?? Promise.resolve();
  const mine = before.then(fn, fn);
  const tail = mine.catch(() => {});
  queues.set(key, tail);
  void tail.then(() => { if (queues.get(key) === tail) queues.delete(key); });
  return mine;
}
