// The run's states: one closed set, mirrored by the `run_status` enum in migrations/001_init.sql.
// The names are the ones AI Center users know. Transitions live in scheduler/runs/transitions.ts.
export const RunStatus = {
  Scheduled: 'Scheduled',
  Waiting: 'Waiting for resources',
  Packaging: 'Packaging',
  Running: 'Running',
  Successful: 'Successful',
  Failed: 'Failed',
  Killed: 'Killed',
} as const;
export type RunStatus = (typeof RunStatus)[keyof typeof RunStatus];

export const terminalStatuses: ReadonlySet<RunStatus> = new Set([RunStatus.Successful, RunStatus.Failed, RunStatus.Killed]);
/** States of a run in the queue (no agent holds it). */
export const queuedStatuses: readonly RunStatus[] = [RunStatus.Scheduled, RunStatus.Waiting];
/** States in which an agent holds the run (it has been placed). */
export const placedStatuses: readonly RunStatus[] = [RunStatus.Scheduled, RunStatus.Packaging, RunStatus.Running];

export function isTerminal(status: string): boolean {
  return terminalStatuses.has(status as RunStatus);
}

/** How an attempt ended, as the agent reports it. */
export const AttemptOutcome = {
  Succeeded: 'succeeded',
  Failed: 'failed',
  PackagingFailed: 'packaging_failed',
  Killed: 'killed',
  TimedOut: 'timed_out',
  HandedBack: 'handed_back',
  /** --stall-timeout passed with no log line, checkpoint or progress mark: requeued, counted as an attempt. */
  Stalled: 'stalled',
} as const;
export type AttemptOutcome = (typeof AttemptOutcome)[keyof typeof AttemptOutcome];
