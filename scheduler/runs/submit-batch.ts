// SubmitRuns: a sweep in one call. Every run goes through the same submit as SubmitRun, inside one
// transaction, so a refused run (naming its index) leaves none of the batch behind; the placer is rung
// once, after the commit.
import type { SchedulerContext } from '../context.js';
import type { SubmitRunRequest__Output } from '../../shared/proto.js';
import type { Principal } from '../auth/principal.js';
import { TrainyardError, invalid } from '../../shared/errors.js';
import { submitRun } from './submit.js';

export const MAX_BATCH = 1000;

export async function submitRuns(ctx: SchedulerContext, reqs: SubmitRunRequest__Output[], caller: Principal): Promise<string[]> {
  if (reqs.length === 0) throw invalid('runs: give at least one run');
  if (reqs.length > MAX_BATCH) throw invalid(`runs: at most ${MAX_BATCH} runs in one call, got ${reqs.length}`);
  const ids = await ctx.db.transaction().execute(async (trx) => {
    const inner: SchedulerContext = { ...ctx, db: trx, kick: () => {} };
    const out: string[] = [];
    for (const [i, req] of reqs.entries()) {
      try {
        out.push(await submitRun(inner, req, caller));
      } catch (err) {
        if (err instanceof TrainyardError) throw new TrainyardError(err.code, `runs[${i}]: ${err.message}`, { cause: err });
        throw err;
      }
    }
    return out;
  });
  ctx.kick();
  return ids;
}
