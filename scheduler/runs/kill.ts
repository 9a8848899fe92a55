// Kill, as one transition whatever state the run is in (see transitions.ts `kill`), then a word to the
// agent that holds it, if any. The kill is durable before anyone is told: a run that is requeued at the
// same moment ends Killed through requeue's own guard on kill_requested.
import type { SchedulerContext } from '../context.js';
import { notFound } from '../../shared/errors.js';
import type { ControlMessage } from '../../shared/subjects.js';

export async function killRun(ctx: SchedulerContext, runId: string): Promise<void> {
  const r = await ctx.runs.kill(runId);
  if (r === 'not_found') throw notFound(`run ${runId} not found`);
  if (r === 'ended' || r === 'already_ended') return;
  // Placed: the agent stops the process group and reports Killed; if the agent is gone, the loss sweep
  // requeues the attempt and requeue ends it Killed.
  const msg: ControlMessage = { type: 'kill', runId, lease: r.lease };
  try {
    ctx.nats.publish(ctx.subjects.control(r.agent), JSON.stringify(msg));
  } catch (err) {
    ctx.log.warn({ run: runId, err: String(err) }, 'kill: could not tell the agent now; its next heartbeat or report learns it');
  }
  ctx.log.info({ run: runId, agent: r.agent }, 'kill sent to agent');
}
