// How much work preempting a run would throw away: the time since it last saved what it did. That is its
// newest checkpoint when one is known (its agent reports each one committed: runs.checkpoint_at), else the start of its
// train.py (so, without checkpoints, the shortest-running run loses least). The placer preempts the runs
// that lose least first (scheduler/placement/preemption.ts).

export interface SavedWork {
  /** When the attempt's train.py started. */
  runningAt: Date;
  /** Its newest complete checkpoint of this attempt, as its agent reported it; null: none yet. */
  checkpointAt: Date | null;
}

/** Milliseconds of work lost if the run were stopped at `now` (never negative). */
export function workLostMs(run: SavedWork, now: number): number {
  const saved = Math.max(run.runningAt.getTime(), run.checkpointAt?.getTime() ?? 0);
  return Math.max(0, now - saved);
}
