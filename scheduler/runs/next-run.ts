// PeekNextRun (AgentLink): while a run trains, its agent asks which queued run would most likely come to it
// next, and warms its caches for that one (agent/prepare-next.ts), so the GPU's gap between the two runs is
// little more than the next one's interpreter start (issue 22). A guess, and only reads: nothing is placed,
// acknowledged or held, and the placer never hears of it (a run prepared here may well be placed elsewhere).
//
// Who may learn what: the same rules that decide where a run may be placed decide which runs an agent may
// be told of. The caller is the authenticated agent; it must be online (not draining, not unresponsive);
// the run must be one the placer could put on it: a project it accepts (--accept-projects), inside the
// project's agents binding (`projects set --agents`), its selector and resources within the agent's
// (fleet.ts couldEverFit, the placer's own test). Its storage keys only read the run's package zip and
// dataset folder(s) (credential-cache.ts readScope): the run's secrets, its checkpoints and any write come
// with its claim alone.
import type { SchedulerContext } from '../context.js';
import type { NextRun, PeekNextRunRequest__Output } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';
import { keys } from '../../shared/storage.js';
import { loadFleet } from '../placement/load-fleet.js';
import { projectCaps, queueHead, requestOf } from '../placement/queue.js';
import { couldEverFit } from '../placement/fleet.js';

/** How much of the queue's head is looked at for a run this agent could take. */
const LOOK_AHEAD = 64;

const none: NextRun = { found: false };

export async function peekNextRun(ctx: SchedulerContext, req: PeekNextRunRequest__Output, agent: string): Promise<NextRun> {
  if (req.agent && req.agent !== agent) throw new TrainyardError(ErrorCodes.PermissionDenied, `agent ${agent} cannot ask for agent ${req.agent}`);
  const [{ agents: [me] }, caps] = await Promise.all([loadFleet(ctx.db, [agent]), projectCaps(ctx.db)]);
  if (me?.status !== 'online') return none;
  // The queue in the placer's order (priority, then fair share, then age), without what each project runs
  // now: a guess needs no more.
  const head = await queueHead(ctx.db, LOOK_AHEAD, new Map());
  const next = head.find((run) => {
    if (run.agents > 1) return false; // a gang's members are placed together; not guessed at
    const req = requestOf(run, new Map(), caps.get(run.project)?.agents ?? null, true);
    return req !== null && couldEverFit(me, req);
  });
  if (!next) return none;
  const r = await ctx.db.selectFrom('runs')
    .select(['id', 'attempt', 'project', 'package_object_key', 'package_sha256', 'dataset', 'dataset_sub', 'eval_dataset', 'eval_dataset_sub'])
    .where('id', '=', next.id).executeTakeFirst();
  if (!r?.package_sha256) return none;
  const answer: NextRun = {
    found: true, run_id: r.id, project: r.project, package_object_key: r.package_object_key, package_sha256: r.package_sha256,
    dataset_prefix: keys.datasetPrefix(r.dataset, r.dataset_sub), eval_dataset_prefix: r.eval_dataset ? keys.datasetPrefix(r.eval_dataset, r.eval_dataset_sub) : '',
    bucket: ctx.settings.bucket,
  };
  // Prepared already: the agent has what it needs, and STS is not asked again every few seconds.
  if (req.prepared_run_id === r.id) return answer;
  return { ...answer, storage: await ctx.credentials.issueRead(r) };
}
