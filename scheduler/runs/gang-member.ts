// A gang run's members of node rank >= 1 (scheduler/placement/gang.ts) talking to the scheduler: their
// claim, reports, log lines, storage renewals and end. Member 0 is the run's own agent and goes through the
// ordinary paths; these are the same calls from an agent that holds a current run_members row instead.
// Each is guarded like the ordinary ones: the run's lease, the member's lease equal to it, the caller
// being the member's agent, and the run still placed. A stall (--stall-timeout) is one silent rank: every
// member's agent watches each of its own ranks (agent/rank-activity.ts) and reports the attempt stalled,
// which requeues the whole gang once, as any member's failure does (finishGang).
import { sql } from 'kysely';
import type { Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { Db, RunsTable } from '../db/database.js';
import type {
  AppendLogsRequest__Output, AppendLogsResponse, AppendMetricsRequest__Output, ClaimAttemptRequest__Output, Dispatch, FinishAttemptRequest__Output, FinishAttemptResponse,
  GangPlace, ReportStatusRequest__Output, ReportStatusResponse,
} from '../../shared/proto.js';
import { capLogLine, logStream } from './logs.js';
import { AttemptOutcome, RunStatus, placedStatuses } from '../../shared/run-states.js';
import { AgentStatus } from '../agents/status.js';
import { dispatchFor } from './dispatch.js';
import { claimGeneration } from '../datasets/generation.js';
import { states, type RunTransitions } from './transitions.js';

/** Log lines of node rank k are stored at seq k x this + their own seq: one log per attempt, ranks apart. */
export const MEMBER_SEQ_STRIDE = 1_000_000_000;

/** The member row `agent` holds under `lease`, with its run, when that lease is still the run's; null otherwise. */
async function memberRow(db: Db, runId: string, lease: number, agent: string) {
  const row = await db.selectFrom('run_members as m').innerJoin('runs as r', 'r.id', 'm.run_id')
    .select(['m.node_rank', 'm.gpu_indices', 'r.kill_requested', 'r.preempted_by', 'r.status', 'r.agent'])
    .where('m.run_id', '=', runId).where('m.lease', '=', lease).where('m.agent', '=', agent)
    .where('r.lease', '=', lease).executeTakeFirst();
  if (!row) return null;
  const placed = row.agent !== null && (placedStatuses as readonly string[]).includes(row.status);
  return { node_rank: row.node_rank, gpu_indices: row.gpu_indices, placed, status: row.status, kill: row.kill_requested || row.preempted_by !== null };
}

/** The member of node rank >= 1 that `agent` holds in the run's current attempt (`lease`), or null. */
export async function currentMember(db: Db, runId: string, lease: number, agent: string): Promise<{ node_rank: number; gpu_indices: number[]; kill: boolean } | null> {
  const m = await memberRow(db, runId, lease, agent);
  return m?.placed ? { node_rank: m.node_rank, gpu_indices: m.gpu_indices, kill: m.kill } : null;
}

/**
 * As currentMember, for log lines: also once the run has ended in that same attempt (its lease unchanged).
 * Member 0's end report ends the run, and the other members' last lines (printed as the ranks leave
 * together) are often still on their way then; a requeue changes the lease, so a stale attempt's lines
 * are still refused. The member is told to stop unless the run ended Successful.
 */
async function logMember(db: Db, runId: string, lease: number, agent: string): Promise<{ node_rank: number; kill: boolean } | null> {
  const m = await memberRow(db, runId, lease, agent);
  if (!m) return null;
  return { node_rank: m.node_rank, kill: m.kill || (!m.placed && m.status !== RunStatus.Successful) };
}

/** A gang's place for member `nodeRank` (the Dispatch's gang field): torchrun's rendezvous, from the run's row. */
export async function gangPlace(db: Db, r: Selectable<RunsTable>, nodeRank: number): Promise<GangPlace | undefined> {
  if (r.agents <= 1 || !r.agent) return undefined;
  const master = await db.selectFrom('agents').select(['advertise_addr', 'address']).where('name', '=', r.agent).executeTakeFirst();
  return {
    node_rank: nodeRank, nnodes: r.agents, procs_per_agent: r.procs_per_agent,
    master_addr: master?.advertise_addr || hostOf(master?.address ?? ''), master_port: r.master_port ?? 0,
  };
}

/** The host of a gRPC peer address ("ipv4:1.2.3.4:567", "1.2.3.4:567", "[::1]:567"). */
function hostOf(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  const m = /^\[([^\]]+)\]:\d+$/.exec(p) ?? /^([^:]+):\d+$/.exec(p);
  return m ? m[1]! : p;
}

/**
 * ClaimAttempt from a member of node rank >= 1: the run's dispatch with the member's own GPUs and place,
 * and the attempt's storage credentials; the member's acknowledgement (run_members.acked_at). No run
 * transition: member 0 moves the run. Null when the caller holds no member of this run's attempt.
 */
export async function claimMember(ctx: SchedulerContext, req: ClaimAttemptRequest__Output, agent: string): Promise<Dispatch | null> {
  const row = await ctx.db.selectFrom('runs').selectAll()
    .select([claimGeneration('runs.dataset').as('dataset_generation'), claimGeneration('runs.eval_dataset').as('eval_dataset_generation')])
    .where('id', '=', req.run_id).where('lease', 'is not', null).where('agent', 'is not', null)
    .where('status', 'in', placedStatuses).where('kill_requested', '=', false).executeTakeFirst();
  if (!row || row.agents <= 1 || (req.attempt && row.attempt !== req.attempt)) return null;
  const member = await currentMember(ctx.db, row.id, Number(row.lease), agent);
  if (!member) return null;
  const [storage, secrets, gang] = await Promise.all([
    ctx.credentials.forClaim(row),
    row.secret_names.length === 0 ? Promise.resolve([]) : ctx.db.selectFrom('run_secrets').select(['name', 'value']).where('run_id', '=', row.id).execute(),
    gangPlace(ctx.db, row, member.node_rank),
  ]);
  await ctx.db.updateTable('run_members').set({ acked_at: sql`coalesce(acked_at, now())` })
    .where('run_id', '=', row.id).where('lease', '=', row.lease).where('agent', '=', agent).execute();
  return {
    ...dispatchFor(row, ctx.settings.bucket), gpu_indices: member.gpu_indices, storage, secrets: Object.fromEntries(secrets.map((s) => [s.name, s.value])),
    running: false, gang,
  };
}

/** ReportStatus from a member: nothing to move (member 0 moves the run); whether it should stop. Null: not a member. */
export async function memberReport(ctx: SchedulerContext, req: ReportStatusRequest__Output, agent: string): Promise<ReportStatusResponse | null> {
  const m = await currentMember(ctx.db, req.run_id, Number(req.lease), agent);
  return m ? { stop: m.kill } : null;
}

/**
 * AppendLogs from a member: its lines go in the run's log of the same attempt, at seq node_rank x
 * MEMBER_SEQ_STRIDE + seq (so `run logs` shows every member's lines, and --rank picks them out). A caller
 * that holds no current member is told to stop, as the ordinary path tells a stale attempt.
 */
export async function memberAppendLogs(ctx: SchedulerContext, req: AppendLogsRequest__Output, agent: string): Promise<AppendLogsResponse | null> {
  const m = await logMember(ctx.db, req.run_id, Number(req.lease), agent);
  if (!m) return null;
  const cap = ctx.settings.maxLogLinesPerAttempt;
  const lines = (req.lines ?? []).filter((l) => l.seq > 0 && l.seq <= cap);
  let acked = 0;
  for (const l of req.lines ?? []) acked = Math.max(acked, Number(l.seq));
  if (lines.length) {
    await sql`INSERT INTO run_logs (run_id, attempt, seq, stream, text, at)
      SELECT r.id, r.attempt, l.seq + ${m.node_rank * MEMBER_SEQ_STRIDE}, l.stream, l.text, l.at
      FROM runs r, unnest(${lines.map((l) => Number(l.seq))}::bigint[], ${lines.map((l) => logStream(l.stream))}::text[],
        ${lines.map((l) => capLogLine(l.text.replaceAll('\0', '\uFFFD')))}::text[], ${lines.map((l) => (l.at && Number.isFinite(new Date(l.at).getTime()) ? new Date(l.at) : new Date()).toISOString())}::timestamptz[]) AS l(seq, stream, text, at)
      WHERE r.id = ${req.run_id} AND r.lease = ${Number(req.lease)}
      ON CONFLICT (run_id, attempt, seq) DO NOTHING`.execute(ctx.db);
    ctx.runChanged(req.run_id);
  }
  return { acked_seq: acked, stop: m.kill };
}

/**
 * AppendMetrics from a member: acknowledged and not stored (the run's metrics are member 0's; README,
 * "Multi-agent runs"). Null: not a member.
 */
export async function memberAppendMetrics(ctx: SchedulerContext, req: AppendMetricsRequest__Output, agent: string): Promise<AppendLogsResponse | null> {
  const m = await currentMember(ctx.db, req.run_id, Number(req.lease), agent);
  if (!m) return null;
  let acked = 0;
  for (const r of req.records ?? []) acked = Math.max(acked, Number(r.seq));
  return { acked_seq: acked, stop: m.kill };
}

/**
 * Runs this process saw claimed as ordinary (one agent): their end reports skip finishGang's read (a
 * statement per run). A run's member count never changes after its submit, so an entry cannot go stale;
 * a run claimed through another scheduler is not here and is read as before. Bounded, oldest out first.
 */
const ordinaryRuns = new Set<string>();
const ORDINARY_KEPT = 10_000;
export function claimedOrdinary(runId: string): void {
  ordinaryRuns.add(runId);
  if (ordinaryRuns.size > ORDINARY_KEPT) ordinaryRuns.delete(ordinaryRuns.values().next().value!);
}

/**
 * FinishAttempt for a gang. From a member of node rank >= 1: a success is recorded on its row (member 0's
 * success ends the run); any other end requeues the whole gang as one lost attempt. From member 0: a
 * failure (not a success, nor a kill) requeues the gang as well, since a rank that fails first is often only
 * the one that noticed another's death. The requeue is guarded by the lease, so the attempt counts once
 * however many members report; the others then hear at their next heartbeat that it is no longer current.
 * Null: the ordinary path decides (not a gang, or member 0's success or kill).
 */
export async function finishGang(ctx: SchedulerContext, req: FinishAttemptRequest__Output, agent: string): Promise<FinishAttemptResponse | null> {
  if (ordinaryRuns.delete(req.run_id)) return null;
  const lease = Number(req.lease);
  const run = await ctx.db.selectFrom('runs').select(['agent', 'agents', 'kill_requested', 'preempted_by']).where('id', '=', req.run_id).where('lease', '=', lease).executeTakeFirst();
  if (!run || run.agents <= 1) return null;
  const failed = req.outcome !== AttemptOutcome.Succeeded && req.outcome !== AttemptOutcome.Killed && req.outcome !== AttemptOutcome.HandedBack;
  if (run.agent === agent) {
    if (!failed || run.kill_requested || run.preempted_by !== null) return null;
    const c = await ctx.runs.requeue(req.run_id, lease, gangEndReason(req, 0, agent), true, agent);
    return { status: c?.status ?? RunStatus.Waiting, output_version: '' };
  }
  // Its last lines come with its end report: stored first (as AppendLogs from it would be), also when
  // member 0's end report ended the run a moment before.
  if ((req.lines ?? []).length) await memberAppendLogs(ctx, { run_id: req.run_id, lease: req.lease, lines: req.lines }, agent);
  const row = await memberRow(ctx.db, req.run_id, lease, agent);
  if (req.outcome === AttemptOutcome.Succeeded && row && (row.placed || row.status === RunStatus.Successful)) {
    // Also once member 0's success ended the run in this same attempt (the ranks leave together and this
    // report often comes a moment after): run get then shows this member's own end too.
    await ctx.db.updateTable('run_members').set({ ended_at: sql`now()`, outcome: RunStatus.Successful })
      .where('run_id', '=', req.run_id).where('lease', '=', lease).where('agent', '=', agent).where('ended_at', 'is', null).execute();
    return { status: row.placed ? RunStatus.Running : row.status, output_version: '' };
  }
  const m = row?.placed ? row : null;
  if (!m) return { status: '', output_version: '' };
  // Its own end, for run get (the requeue below makes the attempt no longer current, so it is written first).
  const outcome = (Object.values(AttemptOutcome) as string[]).includes(req.outcome) ? req.outcome : 'ended';
  await ctx.db.updateTable('run_members').set({ ended_at: sql`now()`, outcome })
    .where('run_id', '=', req.run_id).where('lease', '=', lease).where('agent', '=', agent).where('ended_at', 'is', null).execute();
  const c = await requeueForMember(ctx.runs, req.run_id, lease, gangEndReason(req, m.node_rank, agent));
  return { status: c?.status ?? '', output_version: '' };
}

/**
 * Why a member's end requeues the gang. A stall reads as a single run's does ("stalled: rank R: no log
 * line ...", README, "Checkpoints"), naming the member after it: one silent rank stalled the whole gang.
 */
function gangEndReason(req: FinishAttemptRequest__Output, nodeRank: number, agent: string): string {
  if (req.outcome === AttemptOutcome.Stalled) return `${req.reason || 'stalled'} (gang member ${nodeRank} on ${agent})`;
  return `gang member ${nodeRank} on ${agent} ${req.outcome}: ${req.reason || 'ended'}`;
}

const requeueForMember = (runs: RunTransitions, runId: string, lease: number, why: string) => runs.requeue(runId, lease, why, true);

/**
 * Current members (node rank >= 1) on `agent`: what its heartbeats must list (reconcile.ts), each with
 * whether its run was killed or preempted.
 */
export async function membersOn(db: Db, agent: string): Promise<{ id: string; lease: number; attempt: number; acked_at: Date | null; kill: boolean }[]> {
  const rows = await db.selectFrom('run_members as m').innerJoin('runs as r', (j) => j.onRef('r.id', '=', 'm.run_id').onRef('r.lease', '=', 'm.lease'))
    .select(['r.id', 'r.lease', 'r.attempt', 'm.acked_at', 'r.kill_requested', 'r.preempted_by'])
    .where('m.agent', '=', agent).where('r.agent', 'is not', null).where('r.status', 'in', placedStatuses).execute();
  return rows.map((r) => ({ id: r.id, lease: Number(r.lease), attempt: r.attempt, acked_at: r.acked_at, kill: r.kill_requested || r.preempted_by !== null }));
}

/**
 * Gangs with a member whose agent is lost or left, or that did not acknowledge its dispatch within
 * `ackTimeoutMs`: requeued whole, each as one lost attempt (the placer's failure sweep).
 */
export async function requeueStrandedMembers(db: Db, runs: RunTransitions, ackTimeoutMs: number): Promise<number> {
  const { rows } = await sql<{ id: string; lease: string; why: string }>`
    SELECT DISTINCT ON (r.id) r.id, r.lease,
      CASE WHEN a.status IN (${AgentStatus.Lost}, ${AgentStatus.Offline}) THEN 'gang member ' || m.node_rank || ' on ' || m.agent || ': agent ' || a.status
           ELSE 'gang member ' || m.node_rank || ' on ' || m.agent || ': dispatch not acknowledged within ' || ${ackTimeoutMs} || ' ms' END AS why
    FROM run_members m JOIN runs r ON r.id = m.run_id AND r.lease = m.lease LEFT JOIN agents a ON a.name = m.agent
    WHERE r.agent IS NOT NULL AND r.status IN ${states(placedStatuses)}
      AND (a.name IS NULL OR a.status IN (${AgentStatus.Lost}, ${AgentStatus.Offline})
           OR (m.acked_at IS NULL AND r.dispatched_at < now() - make_interval(secs => ${ackTimeoutMs / 1000})))`.execute(db);
  let n = 0;
  for (const r of rows) if (await runs.requeue(r.id, Number(r.lease), r.why, true)) n++;
  return n;
}
