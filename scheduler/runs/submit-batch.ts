// SubmitRuns: a sweep in one call. Every run gets the same checks as SubmitRun, all read with one query,
// and all are inserted by one statement in one transaction, so a refused run (naming its index) leaves none
// of the batch behind; the placer is rung once, after the commit.
import type { SchedulerContext } from '../context.js';
import type { SubmitRunRequest__Output } from '../../shared/proto.js';
import type { Principal } from '../auth/principal.js';
import { invalid } from '../../shared/errors.js';
import { submitAll, type RunRow } from './submit.js';

export const MAX_BATCH = 1000;

export async function submitRuns(ctx: SchedulerContext, reqs: SubmitRunRequest__Output[], caller: Principal): Promise<RunRow[]> {
  if (reqs.length === 0) throw invalid('runs: give at least one run');
  if (reqs.length > MAX_BATCH) throw invalid(`runs: at most ${MAX_BATCH} runs in one call, got ${reqs.length}`);
  return submitAll(ctx, reqs, caller);
}
