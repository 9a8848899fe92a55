// Submission: every check happens before the run's row exists, so a bad request leaves nothing behind.
import { customAlphabet } from 'nanoid';
import type { SchedulerContext } from '../context.js';
import type { SubmitRunRequest__Output } from '../../shared/proto.js';
import { checkName, parseDatasetRef } from '../../shared/names.js';
import { checkRunSecrets, compileRunEnv } from '../../shared/run-env.js';
import { invalid, notFound, ErrorCodes, TrainyardError } from '../../shared/errors.js';
import { parseVersion, formatVersion } from '../../shared/versions.js';
import { keys, withStorageRetry } from '../../shared/storage.js';
import { describeRequest, type Request } from '../placement/fleet.js';
import { sql } from 'kysely';
import { RunStatus } from '../../shared/run-states.js';
import { Pipeline, evaluates, parsePipeline } from '../../shared/pipelines.js';
import type { Principal } from '../auth/principal.js';
import { Actions, allowed, authorize } from '../auth/policy.js';

const denied = (message: string) => new TrainyardError(ErrorCodes.PermissionDenied, message);

const newRunId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 14);

export async function submitRun(ctx: SchedulerContext, req: SubmitRunRequest__Output, caller: Principal): Promise<string> {
  const { db, settings } = ctx;
  // The run's project defaults to the token's; anything else must be one the token may submit to.
  const project = req.project ? checkName('project', req.project) : caller.kind === 'user' ? caller.project : 'default';
  authorize(caller, Actions.SubmitRun, project);
  // Postgres text holds no NUL: refused here, naming the field, rather than failing a query as INTERNAL.
  if (req.idempotency_key.includes('\0')) throw invalid('idempotency_key contains a NUL byte');
  if (req.idempotency_key) {
    const existing = await db.selectFrom('runs').select('id').where('idempotency_key', '=', req.idempotency_key).executeTakeFirst();
    if (existing) return existing.id;
  }
  const pkg = checkName('package', req.package);
  const pipeline = parsePipeline(req.pipeline);
  const ds = parseDatasetRef(req.dataset);
  if (req.eval_dataset && pipeline !== Pipeline.Full) throw invalid(`eval_dataset is only for full pipelines (this is ${pipeline})`);
  const evalDs = req.eval_dataset ? parseDatasetRef(req.eval_dataset, 'eval_dataset') : null;
  const env = compileRunEnv(req.env ?? {}, pipeline);
  const secrets = checkRunSecrets(req.secrets ?? {}, env);
  const res = req.resources;
  const request: Request = {
    gpus: res?.gpus ?? 0,
    gpuModel: res?.gpu_model ?? '',
    gpuMemoryMb: res?.gpu_memory_mb ?? 0,
    cpus: res?.cpus ?? 0,
    memoryMb: res?.memory_mb ?? 0,
    selector: res?.selector ?? {},
  };
  if (request.gpuModel.includes('\0')) throw invalid('resources.gpu_model contains a NUL byte');
  for (const [k, v] of Object.entries(request.selector)) {
    if (k.includes('\0') || v.includes('\0')) throw invalid(`resources.selector: label ${JSON.stringify(k)} contains a NUL byte`);
  }
  if (!Number.isInteger(request.gpus) || request.gpus < 0 || request.gpus > 8) throw invalid(`resources.gpus must be 0 to 8, got ${request.gpus}`);
  if (request.cpus < 0 || request.memoryMb < 0 || request.gpuMemoryMb < 0) throw invalid('resources must not be negative');
  if (req.timeout_seconds < 0) throw invalid(`timeout_seconds must be 0 (none) or positive, got ${req.timeout_seconds}`);
  if (req.max_attempts < 0 || req.max_attempts > 20) throw invalid(`max_attempts must be 0 (default) to 20, got ${req.max_attempts}`);
  const limits = await db.selectFrom('project_limits').select('max_priority').where('project', '=', project).executeTakeFirst();
  if (limits?.max_priority != null && req.priority > limits.max_priority) {
    throw denied(`priority ${req.priority} is above project "${project}"'s cap of ${limits.max_priority} (trainyard projects set ${project} --max-priority N)`);
  }
  // A member runs with its own project's packages and datasets only (an admin, who acts on every
  // project, may run one project's package in another's run).
  const owners = await db.selectFrom('packages').select('project').where('name', '=', pkg).executeTakeFirst();
  if (owners && owners.project !== project && !allowed(caller, Actions.ReadPackage, owners.project)) {
    throw denied(`package "${pkg}" belongs to project "${owners.project}", not "${project}"`);
  }

  const versions = await db.selectFrom('package_versions').select(['major', 'minor', 'object_key', 'sha256', 'has_evaluate'])
    .where('package', '=', pkg).orderBy('major', 'desc').orderBy('minor', 'desc').execute();
  if (versions.length === 0) throw notFound(`package "${pkg}" not found (push it with: trainyard package push DIR --name ${pkg})`);
  let version = versions[0]!;
  if (req.version) {
    const want = parseVersion(req.version, 'package version');
    const found = versions.find((v) => v.major === want.major && v.minor === want.minor);
    if (!found) {
      throw notFound(`package "${pkg}" has no version ${formatVersion(want)} (it has ${versions.map(formatVersion).join(', ')})`);
    }
    version = found;
  }
  if (evaluates(pipeline) && version.has_evaluate === false) {
    throw new TrainyardError(ErrorCodes.FailedPrecondition, `package "${pkg}" ${formatVersion(version)}: class Main has no evaluate(self, evaluation_directory), so it cannot run ${pipeline === Pipeline.Full ? 'a full pipeline' : 'an evaluation'}`);
  }

  await checkDataset(ctx, caller, project, ds, 'dataset');
  if (evalDs) await checkDataset(ctx, caller, project, evalDs, 'eval_dataset');

  // A request that no known agent could ever satisfy is refused now, rather than waiting forever. One
  // query, so submitting stays cheap however large the fleet is.
  const { rows: [fit] } = await sql<{ known: boolean; ever: boolean }>`
    SELECT EXISTS (SELECT 1 FROM agents WHERE status <> 'offline') AS known,
           EXISTS (SELECT 1 FROM agents a
                   WHERE a.status <> 'offline' AND a.cpus >= ${request.cpus} AND a.memory_mb >= ${request.memoryMb}
                     AND a.labels @> ${JSON.stringify(request.selector)}::jsonb
                     AND (SELECT count(*) FROM agent_gpus g WHERE g.agent = a.name AND g.memory_mb >= ${request.gpuMemoryMb}
                          AND strpos(lower(g.name), lower(${request.gpuModel})) > 0) >= ${request.gpus}) AS ever`.execute(db);
  if (fit?.known && !fit.ever) {
    throw new TrainyardError(ErrorCodes.Unsatisfiable, `no registered agent could ever satisfy this request (${describeRequest(request)})`);
  }

  const id = `run_${newRunId()}`;
  // One statement: the run, its first event and its secrets exist together or not at all.
  const secretNames = Object.keys(secrets).sort();
  const inserted = await db
    .with('r', (q) => q.insertInto('runs').values({
      id,
      idempotency_key: req.idempotency_key || null,
      project,
      priority: req.priority,
      package: pkg,
      package_major: version.major,
      package_minor: version.minor,
      package_object_key: version.object_key,
      package_sha256: version.sha256,
      pipeline,
      eval_dataset: evalDs?.name ?? null,
      eval_dataset_sub: evalDs?.sub ?? '',
      dataset: ds.name,
      dataset_sub: ds.sub,
      gpus: request.gpus,
      gpu_model: request.gpuModel,
      gpu_memory_mb: request.gpuMemoryMb,
      cpus: request.cpus,
      memory_mb: request.memoryMb,
      selector: JSON.stringify(request.selector),
      env: JSON.stringify(env),
      secret_names: secretNames,
      timeout_seconds: req.timeout_seconds,
      max_attempts: req.max_attempts || settings.maxAttempts,
      status: RunStatus.Scheduled,
    }).onConflict((oc) => oc.column('idempotency_key').doNothing()).returning('id'))
    .with('e', (q) => q.insertInto('run_events').columns(['run_id', 'attempt', 'status', 'detail'])
      .expression((eb) => eb.selectFrom('r').select(['r.id', sql.lit(0).as('attempt'), sql<RunStatus>`${sql.lit(RunStatus.Scheduled)}::run_status`.as('status'), sql.lit('submitted').as('detail')])))
    .with('s', (q) => q.insertInto('run_secrets').columns(['run_id', 'name', 'value'])
      .expression((eb) => eb.selectFrom(['r', sql<{ name: string; value: string }>`unnest(${sql.val(secretNames)}::text[], ${sql.val(secretNames.map((n) => secrets[n]!))}::text[])`.as<'x'>(sql`x(name, value)`)])
        .select(['r.id', 'x.name', 'x.value'])))
    .selectFrom('r').select('id').executeTakeFirst();
  if (!inserted) {
    // Lost a race with a retry carrying the same key: that one's run is the answer.
    const existing = await db.selectFrom('runs').select('id').where('idempotency_key', '=', req.idempotency_key).executeTakeFirstOrThrow();
    return existing.id;
  }
  ctx.log.info({ run: id, status: RunStatus.Scheduled, package: pkg, version: formatVersion(version), dataset: req.dataset }, 'run status');
  ctx.kick();
  return id;
}

/** The dataset (or sub-folder) exists, holds files, and the caller may run with it. `field` names it in errors. */
async function checkDataset(ctx: SchedulerContext, caller: Principal, project: string, ds: { name: string; sub: string }, field: string): Promise<void> {
  field = field === 'dataset' ? '' : `${field}: `;
  const dataset = await ctx.db.selectFrom('datasets').select(['name', 'project']).where('name', '=', ds.name).executeTakeFirst();
  if (!dataset) throw notFound(`${field}dataset "${ds.name}" not found (push it with: trainyard dataset push DIR --name ${ds.name})`);
  if (dataset.project !== project && !allowed(caller, Actions.ReadDataset, dataset.project)) throw denied(`${field}dataset "${ds.name}" belongs to project "${dataset.project}", not "${project}"`);
  if (!ds.sub) return;
  const prefix = keys.datasetPrefix(ds.name, ds.sub);
  const hasFile = await withStorageRetry(`list ${prefix}`, async () => {
    for await (const _ of ctx.minio.listObjectsV2(ctx.settings.bucket, prefix, true)) return true;
    return false;
  }, ctx.storageRetry);
  if (!hasFile) throw notFound(`${field}dataset "${ds.name}" has no subfolder "${ds.sub}" (or it holds no files)`);
}
