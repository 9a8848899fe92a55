// A run's log: lines appended by the attempt that holds the run (AppendLogs), read back in (attempt, seq)
// order by StreamLogs. Each attempt numbers its lines from 1, so a position in the log is the pair.
import { sql } from 'kysely';
import { schedulerMetrics } from '../metrics.js';
import type { SchedulerContext } from '../context.js';
import type { AppendLogsRequest__Output, AppendLogsResponse, LogLine } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';
import { isTerminal, terminalStatuses } from '../../shared/run-states.js';
import { states } from './transitions.js';
import { runState } from './read.js';
import { watchRun } from '../watch.js';
import { MAX_LOG_LINE_CHARS } from '../../shared/log-lines.js';

const PAGE = 1000;

/**
 * The longest log line stored (shared/log-lines.ts; the agent cuts its output the same way): a longer one,
 * from an agent that does not cut or from anyone else, is cut here and says so.
 */
export { MAX_LOG_LINE_CHARS };

export function capLogLine(text: string): string {
  if (text.length <= MAX_LOG_LINE_CHARS) return text;
  // Not between the halves of a surrogate pair.
  let end = MAX_LOG_LINE_CHARS;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)} [trainyard: line cut, ${text.length - end} more characters]`;
}

/** A line's stream as stored: stdout, stderr or system; anything else an agent sends is stdout. */
export const logStream = (s: string): string => (s === 'stderr' || s === 'system' ? s : 'stdout');

export interface LogPosition { attempt: number; seq: number }

export interface StreamLogsOptions {
  runId: string;
  follow: boolean;
  /** The last line the caller has: only lines after it come (proto/trainyard.proto, StreamLogsRequest). */
  afterAttempt: number;
  afterSeq: number;
}

/**
 * Where to start. after_attempt > 0: right after that line. after_attempt 0 is what older clients send:
 * with after_seq 0 it means the start; with after_seq N it means line N of the run's current attempt (the
 * old field's documented meaning), so nothing of earlier attempts.
 */
export function startPosition(o: { afterAttempt: number; afterSeq: number }, currentAttempt: number): LogPosition {
  if (!Number.isInteger(o.afterAttempt) || o.afterAttempt < 0) throw invalid(`after_attempt must be a non-negative integer, got ${o.afterAttempt}`);
  if (!Number.isInteger(o.afterSeq) || o.afterSeq < 0) throw invalid(`after_seq must be a non-negative integer, got ${o.afterSeq}`);
  if (o.afterAttempt > 0) return { attempt: o.afterAttempt, seq: o.afterSeq };
  if (o.afterSeq === 0) return { attempt: 0, seq: 0 };
  return { attempt: currentAttempt, seq: o.afterSeq };
}

/**
 * The lines after the start position, in (attempt, seq) order; with `follow`, then new ones as they land
 * until the run ends (one more read after the end, for lines that landed just before the final status).
 */
export async function* streamLogs(ctx: SchedulerContext, o: StreamLogsOptions, signal: AbortSignal): AsyncGenerator<LogLine> {
  const run = await runState(ctx, o.runId);
  let at = startPosition(o, run.attempt ?? 0);
  // Subscribed before the first read, so a line appended between reading and waiting still wakes us.
  const waiter = o.follow ? watchRun(ctx, o.runId) : null;
  try {
    let sawEnd = false;
    while (!signal.aborted) {
      const { attempt, seq } = at;
      const lines = await ctx.db.selectFrom('run_logs').selectAll()
        .where('run_id', '=', o.runId)
        .where(sql<boolean>`(attempt, seq) > (${attempt}, ${seq})`)
        .orderBy('attempt').orderBy('seq').limit(PAGE).execute();
      for (const l of lines) {
        yield { attempt: l.attempt, seq: l.seq, stream: l.stream, text: l.text, at: l.at.toISOString() };
        at = { attempt: l.attempt, seq: l.seq };
      }
      if (lines.length === PAGE) continue;
      if (!waiter || sawEnd) return;
      if (isTerminal((await runState(ctx, o.runId)).status)) { sawEnd = true; continue; }
      await waiter.wait(2000, signal);
    }
  } finally {
    waiter?.close();
  }
}

/**
 * AppendLogs: a batch from the attempt holding the run (checked by its lease), stored idempotently on
 * (run, attempt, seq). Lines past the per-attempt cap are dropped; the one just past it becomes a marker.
 * `stop` tells the attempt to end (killed or preempted, or no longer placed).
 */
export async function appendLogs(ctx: SchedulerContext, req: AppendLogsRequest__Output, agent: string): Promise<AppendLogsResponse> {
  const { db } = ctx;
  const cap = ctx.settings.maxLogLinesPerAttempt;
  const lines = (req.lines ?? []).filter((l) => l.seq > 0 && l.seq <= cap + 1).map((l) => ({
    seq: l.seq,
    stream: l.seq === cap + 1 ? 'system' : logStream(l.stream),
    // Postgres text cannot hold NUL; the agent already replaced invalid UTF-8.
    text: l.seq === cap + 1 ? `[trainyard: log truncated after ${cap} lines]` : capLogLine(l.text.replaceAll('\0', '\uFFFD')),
    at: l.at && Number.isFinite(new Date(l.at).getTime()) ? new Date(l.at) : new Date(),
  }));
  let acked = 0;
  for (const l of req.lines ?? []) acked = Math.max(acked, l.seq);
  // Only the agent holding the attempt writes its lines, and only while the run lives: an ended run's log
  // is final. (The end report may come just after the last batch, so an agent flushes before it reports.)
  if (lines.length === 0) {
    const run = await db.selectFrom('runs').select(['kill_requested', 'preempted_by']).where('id', '=', req.run_id).where('lease', '=', Number(req.lease))
      .where('agent', '=', agent).where('status', 'not in', [...terminalStatuses]).executeTakeFirst();
    return run ? { acked_seq: acked, stop: run.kill_requested || run.preempted_by !== null } : { acked_seq: 0, stop: true };
  }
  // One statement, guarded by the attempt: the run's row is locked while the lines go in, so an end report
  // either committed before (nothing is appended) or waits for these lines.
  const { rows } = await sql<{ live: boolean; kill_requested: boolean | null; stored: number }>`
    WITH r AS (SELECT id, attempt, kill_requested OR preempted_by IS NOT NULL AS kill_requested FROM runs WHERE id = ${req.run_id} AND lease = ${Number(req.lease)} AND agent = ${agent}
                 AND status NOT IN ${states([...terminalStatuses])} FOR NO KEY UPDATE),
    ins AS (
      INSERT INTO run_logs (run_id, attempt, seq, stream, text, at)
      SELECT r.id, r.attempt, l.seq, l.stream, l.text, l.at
      FROM r, unnest(${lines.map((l) => l.seq)}::bigint[], ${lines.map((l) => l.stream)}::text[], ${lines.map((l) => l.text)}::text[],
                     ${lines.map((l) => l.at.toISOString())}::timestamptz[]) AS l(seq, stream, text, at)
      ON CONFLICT (run_id, attempt, seq) DO NOTHING RETURNING 1),
    u AS (UPDATE runs SET last_log_seq = greatest(runs.last_log_seq, ${acked}) FROM r WHERE runs.id = r.id)
    SELECT EXISTS (SELECT 1 FROM r) AS live, (SELECT kill_requested FROM r) AS kill_requested, (SELECT count(*) FROM ins)::int AS stored`.execute(db);
  const { live, kill_requested: killRequested, stored } = rows[0]!;
  if (!live) return { acked_seq: 0, stop: true };
  schedulerMetrics.logLines.inc(stored);
  ctx.runChanged(req.run_id);
  return { acked_seq: acked, stop: killRequested === true };
}
