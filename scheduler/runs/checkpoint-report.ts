// An agent's report that one of its attempt's checkpoints is complete in the bucket (ReportStatus
// "checkpointed"; agent/checkpoints.ts sends it once the pointer is written). Not a state change: one guarded
// UPDATE, fenced by the attempt's lease and the reporting agent like every other report, so a stale attempt
// or another agent changes nothing. What it records serves two readers:
// - checkpoint_at: preemption takes the victims that lose least work first (placement/work-lost.ts);
// - checkpoint_bytes: what the run's checkpoints hold, counted in its project's storage (storage/quota.ts).
//   The agent keeps one checkpoint per attempt (it removes the older once a newer is complete), so a
//   report replaces its own attempt's previous bytes and adds to what earlier attempts left.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { invalid } from '../../shared/errors.js';
import { placedStatuses } from '../../shared/run-states.js';
import { states } from './transitions.js';

/** Records a committed checkpoint; false when the attempt is not current on `agent` (nothing changed). */
export async function recordCheckpoint(db: Db, runId: string, lease: number, agent: string, atSeconds: number, bytes: number): Promise<boolean> {
  if (!Number.isFinite(atSeconds) || atSeconds <= 0) throw invalid('a checkpoint report needs checkpoint_at (unix seconds)');
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw invalid('a checkpoint report needs checkpoint_bytes (0 or more)');
  // The agent's clock may run ahead of the database's: a checkpoint is never newer than now.
  const { rows } = await sql`
    UPDATE runs SET
      checkpoint_at = least(to_timestamp(${atSeconds}), now()),
      checkpoint_bytes = greatest(0, checkpoint_bytes - CASE WHEN checkpoint_attempt = attempt THEN checkpoint_attempt_bytes ELSE 0 END + ${bytes}),
      checkpoint_attempt = attempt,
      checkpoint_attempt_bytes = ${bytes}
    WHERE id = ${runId} AND lease = ${lease} AND agent = ${agent} AND status IN ${states(placedStatuses)}
    RETURNING id`.execute(db);
  return rows.length > 0;
}

/** The run's checkpoints were deleted (retention after a success): they hold nothing any more. */
export async function checkpointsDeleted(db: Db, runId: string): Promise<void> {
  await sql`UPDATE runs SET checkpoint_bytes = 0, checkpoint_attempt_bytes = 0 WHERE id = ${runId}`.execute(db);
}
