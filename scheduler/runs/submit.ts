// Submission: every check happens before the run's row exists, so a bad request leaves nothing behind.
// Requests are checked and inserted many at a time (a SubmitRuns batch; SubmitRun calls grouped by
// submit-group.ts; a schedule's one): one query reads what every request's checks need, and one statement
// inserts every accepted run with its first event and its secrets, and returns the rows, so nothing is
// read back. A single statement commits all its runs or none.
import { checkGang, checkPreferSame } from '../placement/gang.js';
import { customAlphabet } from 'nanoid';
import { sql, type Insertable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { RunsTable } from '../db/database.js';
import { runLean, type RunView } from './to-proto.js';
import type { SubmitRunRequest__Output } from '../../shared/proto.js';
import { checkName, parseDatasetRef } from '../../shared/names.js';
import { checkRunSecrets, compileRunEnv } from '../../shared/run-env.js';
import { invalid, notFound, ErrorCodes, TrainyardError } from '../../shared/errors.js';
import { parseVersion, formatVersion } from '../../shared/versions.js';
import { keys, withStorageRetry } from '../../shared/storage.js';
import { describeRequest, type Request } from '../placement/fleet.js';
import { boundSelector, outsideBinding } from '../placement/queue.js';
import { sessionPolicy } from '../storage/attempt-credentials.js';
import { attemptScope } from '../storage/credential-cache.js';
import { RunStatus } from '../../shared/run-states.js';
import { Pipeline, evaluates, parsePipeline } from '../../shared/pipelines.js';
import type { Principal } from '../auth/principal.js';
import { Actions, allowed, authorize } from '../auth/policy.js';
import { isRunId } from '../../shared/ids.js';
import { latestCheckpoint } from './checkpoints.js';

export type RunRow = RunView;
export interface Submission { readonly req: SubmitRunRequest__Output; readonly caller: Principal }
/** One submission's answer: its run (new, or the one its idempotency key names), or why it was refused. */
/** `created`: this call inserted it (and so logs it and rings the placer). */
export type Outcome = { ok: true; row: RunRow; created: boolean } | { ok: false; error: unknown };

const denied = (message: string) => new TrainyardError(ErrorCodes.PermissionDenied, message);

const newRunId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 14);

/** A request with everything checked that needs no database. */
interface Parsed {
  project: string; pkg: string; pipeline: Pipeline; ds: { name: string; sub: string }; evalDs: { name: string; sub: string } | null;
  env: Record<string, string>; secrets: Record<string, string>; request: Request;
}

/** A request accepted: the row to insert and its secrets. */
interface Accepted { values: Insertable<RunsTable> & { id: string }; secrets: Record<string, string>; version: string }

/** What the checks of a set of requests read from Postgres, in one query. */
interface Lookup {
  caps: Record<string, number>;
  /** The projects' agent bindings (`projects set P --agents`), where they have one. */
  bindings: Record<string, Record<string, string>>;
  package_projects: Record<string, string>;
  versions: { package: string; major: number; minor: number; object_key: string; sha256: string; has_evaluate: boolean | null }[];
  dataset_projects: Record<string, string>;
  known: boolean;
  /** For each entry of the shapes sent, whether some live agent could ever hold it. */
  fits: boolean[];
  /** Whether a dataset sub-folder holds files, asked of MinIO once per check (set in JS, not read). */
  listed?: Map<string, Promise<boolean>>;
}

/** One run: submitted, or the run its idempotency key names. Throws the refusal. */
export async function submitRun(ctx: SchedulerContext, req: SubmitRunRequest__Output, caller: Principal): Promise<RunRow> {
  const [o] = await submitEach(ctx, [{ req, caller }]);
  if (!o!.ok) throw o!.error;
  return o!.row;
}

/**
 * A batch: every run, in order, or none (a refusal names its index). One transaction, so a refusal found
 * late leaves none of the others behind.
 */
export async function submitAll(ctx: SchedulerContext, reqs: readonly SubmitRunRequest__Output[], caller: Principal): Promise<RunRow[]> {
  const rows = await ctx.db.transaction().execute(async (trx) => {
    const inner: SchedulerContext = { ...ctx, db: trx, kick: () => {} };
    const checked = await check(inner, reqs.map((req) => ({ req, caller })));
    const refused = checked.findIndex((c) => c instanceof Error);
    if (refused >= 0) throw indexed(refused, checked[refused] as Error);
    const out = await insert(inner, checked as Checked[]);
    const bad = out.findIndex((o) => !o.ok);
    if (bad >= 0) throw indexed(bad, (out[bad] as { error: unknown }).error);
    return out as Extract<Outcome, { ok: true }>[];
  });
  // Logged and rung only now that they committed.
  announce(ctx, rows);
  return rows.map((o) => o.row);
}

/**
 * Each submission on its own answer: one's refusal is never another's. Checked together and inserted in
 * one statement; that statement (or the checks' query) failing throws, for the caller to try each alone.
 */
export async function submitEach(ctx: SchedulerContext, items: readonly Submission[]): Promise<Outcome[]> {
  const checked = await check(ctx, items);
  const go = checked.flatMap((c, i) => (c instanceof Error ? [] : [{ i, c }]));
  const done = go.length > 0 ? await insert(ctx, go.map((g) => g.c)) : [];
  const outcomes: Outcome[] = checked.map((c) => (c instanceof Error ? { ok: false, error: c } : { ok: false, error: null }));
  go.forEach((g, j) => { outcomes[g.i] = done[j]!; });
  announce(ctx, outcomes);
  return outcomes;
}

const indexed = (i: number, err: unknown) =>
  err instanceof TrainyardError ? new TrainyardError(err.code, `runs[${i}]: ${err.message}`, { cause: err }) : err;

/** One log line per run made, and one doorbell for them all. */
function announce(ctx: SchedulerContext, outcomes: readonly Outcome[]): void {
  const rows = outcomes.flatMap((o) => (o.ok && o.created ? [o.row] : []));
  for (const r of rows) {
    ctx.log.info({ run: r.id, status: RunStatus.Scheduled, package: r.package, version: formatVersion({ major: r.package_major, minor: r.package_minor }), dataset: r.dataset + (r.dataset_sub ? `/${r.dataset_sub}` : '') }, 'run status');
  }
  if (rows.length > 0) ctx.kick();
}

/**
 * An idempotency key names a run within its project only (migrations/016): B's use of A's key makes B's
 * own run and tells B nothing of A's. In memory a key is held with its project (NUL is in neither).
 */
const scopedKey = (project: string, key: string) => `${project}\u0000${key}`;

/** A submission checked: a run to insert (`key`: its scoped idempotency key), or the existing run its key names. */
type Checked = { kind: 'new'; caller: Principal; key: string | null; run: Accepted } | { kind: 'existing'; caller: Principal; row: RunRow };

/** The checks of every submission, with one query for all of them (and one for idempotency keys, if any). */
async function check(ctx: SchedulerContext, items: readonly Submission[]): Promise<(Checked | Error)[]> {
  // The run's project defaults to the token's; anything else must be one the token may submit to.
  const first = items.map(({ req, caller }): { project: string } | Error => {
    try {
      const project = req.project ? checkName('project', req.project) : caller.kind === 'user' ? caller.project : 'default';
      authorize(caller, Actions.SubmitRun, project);
      // Postgres text holds no NUL: refused here, not as a failed query.
      if (req.idempotency_key.includes('\0')) throw invalid('idempotency_key contains a NUL byte');
      // Its unique index takes keys up to about 2.7 kB; a longer one failed as INTERNAL (its whole batch too).
      if (req.idempotency_key.length > 256) throw invalid(`idempotency_key is ${req.idempotency_key.length} characters; at most 256`);
      return { project };
    } catch (err) { return err as Error; }
  });
  const parsed = items.map(({ req }, i): Parsed | Error => {
    const f = first[i]!;
    if (f instanceof Error) return f;
    try { return parse(req, f.project); } catch (err) { return err as Error; }
  });
  const ok = parsed.filter((p): p is Parsed => !(p instanceof Error));
  const idemKeys = [...new Set(items.flatMap(({ req }, i) => (req.idempotency_key && !(first[i] instanceof Error) ? [req.idempotency_key] : [])))];
  const shapes = new Map<string, Request>();
  for (const p of ok) shapes.set(shapeKey(p.request), p.request);
  const [lookup, existing] = await Promise.all([
    ok.length > 0 ? lookUp(ctx, ok, [...shapes.values()]) : null,
    idemKeys.length > 0 ? ctx.db.selectFrom('runs').select(runLean(true)).where('idempotency_key', 'in', idemKeys).execute() : [],
  ]);
  const byKey = new Map(existing.map((r) => [scopedKey(r.project, r.idempotency_key!), r]));
  const fitOf = new Map([...shapes.keys()].map((k, i) => [k, lookup?.fits[i] ?? true]));
  return Promise.all(items.map(async ({ req, caller }, i): Promise<Checked | Error> => {
    const f = first[i]!;
    if (f instanceof Error) return f;
    // A retry of a submission that was made: its run, whatever the request now says (as before any check).
    const was = req.idempotency_key ? byKey.get(scopedKey(f.project, req.idempotency_key)) : undefined;
    if (was) return { kind: 'existing', caller, row: was };
    const p = parsed[i]!;
    if (p instanceof Error) return p;
    try {
      const run = await accept(ctx, req, caller, p, lookup!, fitOf.get(shapeKey(p.request))!);
      return { kind: 'new', caller, key: req.idempotency_key ? scopedKey(f.project, req.idempotency_key) : null, run };
    } catch (err) { return err as Error; }
  }));
}

/** Everything about one request that needs no database, in the order its errors are reported. */
function parse(req: SubmitRunRequest__Output, project: string): Parsed {
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
    members: req.agents || 1,
  };
  if (request.gpuModel.includes('\0')) throw invalid('resources.gpu_model contains a NUL byte');
  for (const [k, v] of Object.entries(request.selector)) {
    if (k.includes('\0') || v.includes('\0')) throw invalid(`resources.selector: label ${JSON.stringify(k)} contains a NUL byte`);
  }
  if (!Number.isInteger(request.gpus) || request.gpus < 0 || request.gpus > 8) throw invalid(`resources.gpus must be 0 to 8, got ${request.gpus}`);
  if (request.cpus < 0 || request.memoryMb < 0 || request.gpuMemoryMb < 0) throw invalid('resources must not be negative');
  if (req.timeout_seconds < 0) throw invalid(`timeout_seconds must be 0 (none) or positive, got ${req.timeout_seconds}`);
  if (req.max_attempts < 0 || req.max_attempts > 20) throw invalid(`max_attempts must be 0 (default) to 20, got ${req.max_attempts}`);
  if (req.stall_timeout_seconds < 0) throw invalid(`stall_timeout_seconds must be 0 (off) or positive, got ${req.stall_timeout_seconds}`);
  checkGang(req.agents, req.procs_per_agent, request.gpus);
  checkPreferSame(req.prefer_same ?? '', req.agents);
  if (req.resume_from && !isRunId(req.resume_from)) throw invalid(`resume_from "${String(req.resume_from).slice(0, 80)}" is not a run id`);
  return { project, pkg, pipeline, ds, evalDs, env, secrets, request };
}

const shapeKey = (r: Request) => JSON.stringify([r.members ?? 1, r.gpus, r.gpuModel, r.gpuMemoryMb, r.cpus, r.memoryMb, Object.entries(r.selector).sort()]);

/**
 * The caps, package owners and versions, dataset owners and, per resource shape, whether any live agent
 * could ever hold it: one query however many requests, so submitting stays cheap however large the fleet.
 */
async function lookUp(ctx: SchedulerContext, ps: Parsed[], shapes: Request[]): Promise<Lookup> {
  const projects = [...new Set(ps.map((p) => p.project))];
  const pkgs = [...new Set(ps.map((p) => p.pkg))];
  const datasets = [...new Set(ps.flatMap((p) => (p.evalDs ? [p.ds.name, p.evalDs.name] : [p.ds.name])))];
  const col = <T>(f: (r: Request) => T) => shapes.map(f);
  const { rows: [row] } = await sql<Lookup>`
    SELECT
      (SELECT coalesce(jsonb_object_agg(project, max_priority), '{}') FROM project_limits
        WHERE project = ANY(${projects}::text[]) AND max_priority IS NOT NULL) AS caps,
      (SELECT coalesce(jsonb_object_agg(project, agent_labels), '{}') FROM project_limits
        WHERE project = ANY(${projects}::text[]) AND agent_labels IS NOT NULL) AS bindings,
      (SELECT coalesce(jsonb_object_agg(name, project), '{}') FROM packages WHERE name = ANY(${pkgs}::text[])) AS package_projects,
      (SELECT coalesce(jsonb_agg(jsonb_build_object('package', package, 'major', major, 'minor', minor, 'object_key', object_key,
                                                    'sha256', sha256, 'has_evaluate', has_evaluate)
                                 ORDER BY package, major DESC, minor DESC), '[]')
        FROM package_versions WHERE package = ANY(${pkgs}::text[]) AND deleting_at IS NULL) AS versions,
      (SELECT coalesce(jsonb_object_agg(name, project), '{}') FROM datasets WHERE name = ANY(${datasets}::text[]) AND deleting_at IS NULL) AS dataset_projects,
      EXISTS (SELECT 1 FROM agents WHERE status <> 'offline') AS known,
      -- A gang (members > 1) needs that many distinct agents that could each hold one member.
      ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM agents a
                           WHERE a.status <> 'offline' AND a.cpus >= q.cpus AND a.memory_mb >= q.memory_mb AND a.labels @> q.selector
                             AND (SELECT count(*) FROM agent_gpus g WHERE g.agent = a.name AND g.memory_mb >= q.gpu_memory_mb
                                  AND strpos(lower(g.name), lower(q.gpu_model)) > 0) >= q.gpus LIMIT q.members) x) >= q.members
            FROM unnest(${col((r) => r.cpus)}::float8[], ${col((r) => r.memoryMb)}::float8[], ${col((r) => JSON.stringify(r.selector))}::jsonb[],
                        ${col((r) => r.gpuMemoryMb)}::float8[], ${col((r) => r.gpuModel)}::text[], ${col((r) => r.gpus)}::int[], ${col((r) => r.members ?? 1)}::int[])
                 WITH ORDINALITY AS q(cpus, memory_mb, selector, gpu_memory_mb, gpu_model, gpus, members, i)
            ORDER BY q.i) AS fits`.execute(ctx.db);
  return row!;
}

/** The checks that need what Postgres holds (and MinIO, for a dataset's sub-folder), in order; the run to insert. */
async function accept(ctx: SchedulerContext, req: SubmitRunRequest__Output, caller: Principal, p: Parsed, l: Lookup, fits: boolean): Promise<Accepted> {
  const { project, pkg, pipeline, ds, evalDs, request } = p;
  const cap = l.caps[project];
  if (cap != null && req.priority > cap) {
    throw denied(`priority ${req.priority} is above project "${project}"'s cap of ${cap} (trainyard projects set ${project} --max-priority N)`);
  }
  // A selector narrows within the project's agents, never leaves them (the placer merges the two).
  const agents = l.bindings[project];
  if (agents && boundSelector(request.selector, agents) === null) throw denied(outsideBinding(project, request.selector, agents));
  // A member runs with its own project's packages and datasets only (an admin, who acts on every
  // project, may run one project's package in another's run).
  const owner = l.package_projects[pkg];
  // Another project's package is, to a member, one that does not exist (auth/policy.ts, authorizeObject).
  const missing = () => notFound(`package "${pkg}" not found (push it with: trainyard package push DIR --name ${pkg})`);
  if (owner !== undefined && owner !== project && !allowed(caller, Actions.ReadPackage, owner)) throw missing();
  const versions = l.versions.filter((v) => v.package === pkg);
  if (versions.length === 0) throw missing();
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

  await checkDataset(ctx, caller, project, ds, 'dataset', l);
  if (req.resume_from) await checkResumeFrom(ctx, project, req.resume_from);
  if (evalDs) await checkDataset(ctx, caller, project, evalDs, 'eval_dataset', l);

  // A request that no known agent could ever satisfy is refused now, rather than waiting forever.
  if (l.known && !fits) {
    throw new TrainyardError(ErrorCodes.Unsatisfiable, (request.members ?? 1) > 1
      ? `no ${request.members} registered agents could ever satisfy this request (${describeRequest(request)})`
      : `no registered agent could ever satisfy this request (${describeRequest(request)})`);
  }

  const values = {
    id: `run_${newRunId()}`,
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
    env: JSON.stringify(p.env),
    secret_names: Object.keys(p.secrets).sort(),
    timeout_seconds: req.timeout_seconds,
    max_attempts: req.max_attempts || ctx.settings.maxAttempts,
    status: RunStatus.Scheduled,
    checkpoint_interval_seconds: req.checkpoint_interval_seconds,
    stall_timeout_seconds: req.stall_timeout_seconds,
    resume_from: req.resume_from || null,
    keep_checkpoints: req.keep_checkpoints,
    agents: request.members ?? 1,
    procs_per_agent: req.procs_per_agent || 1,
    prefer_same: req.prefer_same ?? '',
  };
  // Every attempt's storage credentials carry a session policy naming the run's folders, and MinIO refuses
  // one over 2,048 characters: checked now, for the longest attempt number a run could reach, so a run that
  // could never be claimed is refused here instead of being placed and requeued for ever.
  sessionPolicy(attemptScope({ ...values, attempt: LONGEST_ATTEMPT, resumed_from: { run_id: values.id, attempt: LONGEST_ATTEMPT, seq: 999_999, committed_at: 0, bytes: 0, files: 0 } }, ctx.settings.bucket));
  return { version: formatVersion(version), secrets: p.secrets, values };
}

/**
 * --resume-from: a run of the same project (whatever the caller's role: a checkpoint is the project's own)
 * with a complete checkpoint. Another project's run is, here, one that does not exist.
 */
async function checkResumeFrom(ctx: SchedulerContext, project: string, runId: string): Promise<void> {
  // A run being deleted is one that does not exist (its checkpoints are going).
  const src = await ctx.db.selectFrom('runs').select(['id', 'project', 'attempt']).where('id', '=', runId).where('deleting_at', 'is', null).executeTakeFirst();
  if (!src || src.project !== project) throw notFound(`resume_from: run ${runId} not found in project "${project}"`);
  if (!(await latestCheckpoint(ctx, src.id, src.attempt))) throw notFound(`resume_from: run ${runId} has no complete checkpoint`);
}

/** An attempt number no run reaches (each placement is one): the policy check's worst case. */
const LONGEST_ATTEMPT = 9_999_999;

/** The dataset (or sub-folder) exists, holds files, and the caller may run with it. `field` names it in errors. */
async function checkDataset(ctx: SchedulerContext, caller: Principal, project: string, ds: { name: string; sub: string }, field: string, l: Lookup): Promise<void> {
  field = field === 'dataset' ? '' : `${field}: `;
  const owner = l.dataset_projects[ds.name];
  // Another project's dataset is, to a member, one that does not exist (auth/policy.ts, authorizeObject).
  if (owner === undefined || (owner !== project && !allowed(caller, Actions.ReadDataset, owner))) {
    throw notFound(`${field}dataset "${ds.name}" not found (push it with: trainyard dataset push DIR --name ${ds.name})`);
  }
  if (!ds.sub) return;
  const prefix = keys.datasetPrefix(ds.name, ds.sub);
  // A sweep of many runs over one sub-folder lists it once.
  l.listed ??= new Map();
  let listing = l.listed.get(prefix);
  if (!listing) {
    listing = withStorageRetry(`list ${prefix}`, async () => {
      for await (const _ of ctx.minio.listObjectsV2(ctx.settings.bucket, prefix, true)) return true;
      return false;
    }, ctx.storageRetry);
    l.listed.set(prefix, listing);
  }
  const hasFile = await listing;
  if (!hasFile) throw notFound(`${field}dataset "${ds.name}" has no subfolder "${ds.sub}" (or it holds no files)`);
}

/**
 * One statement: every accepted run, its first event and its secrets exist together or not at all.
 * Runs whose idempotency key another submission took first (earlier in `checked`, or committed by a
 * concurrent call) answer with that run, if the caller may read it.
 */
async function insert(ctx: SchedulerContext, checked: readonly Checked[]): Promise<Outcome[]> {
  const taken = new Set<string>();
  const rows: Accepted['values'][] = [];
  const secrets: { id: string[]; name: string[]; value: string[] } = { id: [], name: [], value: [] };
  for (const c of checked) {
    if (c.kind !== 'new' || (c.key !== null && taken.has(c.key))) continue;
    if (c.key !== null) taken.add(c.key);
    rows.push(c.run.values);
    for (const name of c.run.values.secret_names as string[]) {
      secrets.id.push(c.run.values.id);
      secrets.name.push(name);
      secrets.value.push(c.run.secrets[name]!);
    }
  }
  const inserted = rows.length === 0 ? [] : await ctx.db
    .with('r', (q) => q.insertInto('runs').values(rows).onConflict((oc) => oc.columns(['project', 'idempotency_key']).doNothing()).returningAll())
    .with('e', (q) => q.insertInto('run_events').columns(['run_id', 'attempt', 'status', 'detail'])
      .expression((eb) => eb.selectFrom('r').select(['r.id', sql.lit(0).as('attempt'), sql<RunStatus>`${sql.lit(RunStatus.Scheduled)}::run_status`.as('status'), sql.lit('submitted').as('detail')])))
    .with('s', (q) => q.insertInto('run_secrets').columns(['run_id', 'name', 'value'])
      .expression((eb) => eb.selectFrom(['r', sql<{ run_id: string; name: string; value: string }>`unnest(${secrets.id}::text[], ${secrets.name}::text[], ${secrets.value}::text[])`.as<'x'>(sql`x(run_id, name, value)`)])
        .whereRef('x.run_id', '=', 'r.id').select(['r.id', 'x.name', 'x.value'])))
    .selectFrom('r').select(runLean(true)).execute();
  const byId = new Map(inserted.map((r) => [r.id, r]));
  // Keys whose run this statement did not make: a concurrent call's (or a lost race's) run is the answer.
  const byKey = new Map(inserted.flatMap((r) => (r.idempotency_key ? [[scopedKey(r.project, r.idempotency_key), r] as const] : [])));
  const lost = [...taken].filter((k) => !byKey.has(k));
  if (lost.length > 0) {
    const rawKeys = [...new Set(lost.map((k) => k.slice(k.indexOf('\u0000') + 1)))];
    for (const r of await ctx.db.selectFrom('runs').select(runLean(true)).where('idempotency_key', 'in', rawKeys).execute()) {
      const k = scopedKey(r.project, r.idempotency_key!);
      if (taken.has(k)) byKey.set(k, r);
    }
  }
  return checked.map((c): Outcome => {
    if (c.kind === 'existing') return answerExisting(c.row, c.caller);
    const mine = byId.get(c.run.values.id);
    if (mine) return { ok: true, row: mine, created: true };
    const other = c.key !== null ? byKey.get(c.key) : undefined;
    if (!other) return { ok: false, error: new TrainyardError(ErrorCodes.Internal, `run ${c.run.values.id} was not inserted and no run holds its idempotency key`) };
    return answerExisting(other, c.caller);
  });
}

/** A run found by idempotency key (always the submission's own project's): an answer only for a caller who may read it. */
function answerExisting(row: RunRow, caller: Principal): Outcome {
  try { authorize(caller, Actions.ReadRun, row.project); } catch (error) { return { ok: false, error }; }
  return { ok: true, row, created: false };
}
