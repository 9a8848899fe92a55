// The shapes of ids that become paths, keys and subjects. A run id is made by submit
// (scheduler/runs/submit.ts: "run_" + 14 of [0-9a-z]); anything else in that place is refused outright.
export const RUN_ID = /^run_[0-9a-z]{14}$/;
/** Attempt numbers start at 1; far more than any max-attempts setting, far less than anything odd. */
export const MAX_ATTEMPT = 10_000;
export const isRunId = (s: unknown): s is string => typeof s === 'string' && RUN_ID.test(s);
