// What the placer reads for preemption (preemption.ts decides; transitions.ts `preempt` changes): the agents
// held for preempting runs, every pass (a handful of rows, through a partial index), and the runs that may
// be preempted, only in a pass where some run could use them.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { RunStatus, queuedStatuses } from '../../shared/run-states.js';
import { states } from '../runs/transitions.js';
import type { Candidate } from './preemption.js';

export interface Hold {
  run: string;
  agent: string;
  /** Some run preempted for it is still on the agent: what it waits for is coming. */
  pending: boolean;
}

/** Queued runs that hold an agent (transitions.ts `preempt`), by run. */
export async function readHolds(db: Db): Promise<Map<string, Hold>> {
  const { rows } = await sql<{ id: string; reserved_agent: string; pending: boolean }>`
    SELECT r.id, r.reserved_agent, EXISTS (SELECT 1 FROM runs v WHERE v.preempted_by = r.id AND v.agent IS NOT NULL) AS pending
    FROM runs r WHERE r.reserved_agent IS NOT NULL AND r.agent IS NULL AND r.status IN ${states(queuedStatuses)} AND NOT r.kill_requested`.execute(db);
  return new Map(rows.map((r) => [r.id, { run: r.id, agent: r.reserved_agent, pending: r.pending }]));
}

/**
 * Runs that may be preempted now, by agent: Running (and still holding their capacity), of a preemptible project, started at least
 * `minRuntimeS` ago, not killed and not being preempted already. The preempt statement checks all of it
 * again (and the priority), so a read that is a moment old is only a missed or refused choice.
 */
export async function readCandidates(db: Db, minRuntimeS: number): Promise<Map<string, Candidate[]>> {
  const { rows } = await sql<{ id: string; lease: string; agent: string; priority: number; cpus: number; memory_mb: number; gpu_indices: number[]; running_at: Date; checkpoint_at: Date | null }>`
    SELECT r.id, r.lease, r.agent, r.priority, r.cpus, r.memory_mb, r.gpu_indices, r.running_at,
      -- The newest checkpoint of this attempt (an earlier attempt's was made before running_at: it saves nothing of this one).
      CASE WHEN r.checkpoint_attempt = r.attempt THEN r.checkpoint_at END AS checkpoint_at
    FROM runs r JOIN project_limits pl ON pl.project = r.project AND pl.preemptible
    WHERE r.agent IS NOT NULL AND r.status = ${sql.lit(RunStatus.Running)}::run_status AND NOT r.kill_requested AND r.preempted_by IS NULL
      AND r.released_at IS NULL AND r.running_at <= now() - make_interval(secs => ${minRuntimeS})`.execute(db);
  const byAgent = new Map<string, Candidate[]>();
  for (const r of rows) {
    let list = byAgent.get(r.agent);
    if (!list) byAgent.set(r.agent, (list = []));
    list.push({ id: r.id, lease: Number(r.lease), agent: r.agent, priority: r.priority, cpus: r.cpus, memoryMb: r.memory_mb, gpuIndices: r.gpu_indices, runningAt: r.running_at, checkpointAt: r.checkpoint_at });
  }
  return byAgent;
}
