// The run read model: one run, a list, and a run's changes as they happen (WatchRun, `run train --wait`).
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { Run } from '../../shared/proto.js';
import { invalid, notFound } from '../../shared/errors.js';
import type { Principal } from '../auth/principal.js';
import { authorizeObject, type Action } from '../auth/policy.js';
import { RunStatus, isTerminal } from '../../shared/run-states.js';
import { runLean, runToProto } from './to-proto.js';
import { gangMembers, membersToProto } from './members.js';
import { parsePipeline } from '../../shared/pipelines.js';
import { watchRun } from '../watch.js';

/** A preemption as json_build_object gives it (the time as an ISO string). */
interface Preempted { by_run: string; at: string; attempt: number; agent: string }

export async function getRun(ctx: SchedulerContext, id: string): Promise<Run> {
  // With each preemption of its attempts (migrations/028: by whom, when; a handful of rows at most) in the
  // same statement: clients poll GetRun, and a second round trip each time showed in the latency bench.
  const row = await ctx.db.selectFrom('runs').select(runLean(true))
    .select(sql<Preempted[]>`(SELECT coalesce(json_agg(json_build_object('by_run', p.by_run, 'at', p.at, 'attempt', p.attempt, 'agent', p.agent) ORDER BY p.at), '[]'::json)
      FROM run_preemptions p WHERE p.run_id = runs.id)`.as('preemptions_json'))
    .where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound(`run ${id} not found`);
  const { preemptions_json: preemptions, ...r } = row;
  // A gang's members: a second read, for gangs only (an ordinary run's GetRun stays one statement).
  const members = membersToProto(await gangMembers(ctx.db, r));
  return {
    ...runToProto(r), members,
    preemptions: preemptions.map((p) => ({ by_run: p.by_run, at: new Date(p.at).toISOString(), attempt: p.attempt, agent: p.agent })),
  };
}

/** Throws unless the caller may do `action` on the run's project (NOT_FOUND when there is no such run, or it is another project's). */
export async function authorizeRun(ctx: SchedulerContext, caller: Principal, id: string, action: Action): Promise<void> {
  const missing = () => notFound(`run ${id} not found`);
  // Postgres text cannot hold NUL (the read would fail as INTERNAL): no run has such an id.
  if (id.includes('\0')) throw notFound('run not found');
  const r = await ctx.db.selectFrom('runs').select('project').where('id', '=', id).executeTakeFirst();
  if (!r) throw missing();
  authorizeObject(caller, action, r.project, missing);
}

/**
 * Newest first; `limit` 0 means 50, at most 1000; `project` null means every project's; `schedule`: fired
 * by it; `package` and `pipeline` (the console's filters): of that package, of that kind.
 */
export async function listRuns(ctx: SchedulerContext, o: { status: string; limit: number; schedule?: string; project?: string | null; package?: string; pipeline?: string }): Promise<Run[]> {
  // A run being deleted (storage/deletion.ts) is listed no more.
  let q = ctx.db.selectFrom('runs').select(runLean(false)).where('deleting_at', 'is', null).orderBy('created_at', 'desc').limit(Math.min(Math.max(o.limit || 50, 1), 1000));
  if (o.status) {
    if (!(Object.values(RunStatus) as string[]).includes(o.status)) throw invalid(`status "${o.status}" is not one of: ${Object.values(RunStatus).join(', ')}`);
    q = q.where('status', '=', o.status as RunStatus);
  }
  if (o.schedule) q = q.where('schedule', '=', o.schedule);
  if (o.project != null) q = q.where('project', '=', o.project);
  if (o.package) q = q.where('package', '=', o.package);
  if (o.pipeline) q = q.where('pipeline', '=', parsePipeline(o.pipeline));
  return (await q.execute()).map((r) => runToProto(r));
}

/** A run's status and attempt, for the reads that need nothing else (its lineage can be MiBs). */
export async function runState(ctx: SchedulerContext, id: string): Promise<{ status: RunStatus; attempt: number }> {
  const r = await ctx.db.selectFrom('runs').select(['status', 'attempt']).where('id', '=', id).executeTakeFirst();
  if (!r) throw notFound(`run ${id} not found`);
  return r;
}

/** The run now, then each time what a user sees of it changes, until it ends or the signal fires. */
export async function* runChanges(ctx: SchedulerContext, id: string, signal: AbortSignal): AsyncGenerator<Run> {
  // Subscribed before the first read, so no change is missed between reading and waiting.
  const waiter = watchRun(ctx, id);
  try {
    let last = '';
    while (!signal.aborted) {
      const run = await getRun(ctx, id);
      const key = `${run.status}|${run.attempt}|${run.agent}|${run.status_detail}|${run.kill_requested}`;
      if (key !== last) { yield run; last = key; }
      if (isTerminal(run.status!)) return;
      await waiter.wait(2000, signal);
    }
  } finally {
    waiter.close();
  }
}
