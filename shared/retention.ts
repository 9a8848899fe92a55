// The bounds of a project's retention (`projects set P --keep-runs AGE`), shared by the CLI, which checks
// them before it calls, and the scheduler, which applies them (scheduler/storage/retention.ts). Kept apart
// from shared/storage.ts so that the CLI loads no storage client.

/**
 * The longest `--keep-runs`: 100 years. Further back than Postgres's dates go, retention's one statement
 * (for every project) would fail at each pass.
 */
export const KEEP_RUNS_MAX_S = 36_500 * 86_400;
