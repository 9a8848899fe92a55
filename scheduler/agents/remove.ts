// `trainyard agents remove NAME [--force]` (admins): forget an agent, so its name is free for a new agent
// and its credential is worth nothing. A gone agent (offline, or lost) is simply forgotten. A live one is
// refused unless --force: then it is shut out first (revoke: lost, credential void, the loss event), its
// runs go back to the queue at once (requeueStranded, the failure sweep's own step), and it is forgotten.
// A box that still holds a join token can join again under a free name: revoke that token too (README,
// Security).
import type { SchedulerContext } from '../context.js';
import type { RemoveAgentRequest__Output, RemoveAgentResponse } from '../../shared/proto.js';
import { checkName } from '../../shared/names.js';
import { notFound } from '../../shared/errors.js';
import { forget, revoke } from './status.js';
import { requeueStranded } from './reconcile.js';

export async function removeAgent(ctx: Pick<SchedulerContext, 'db' | 'log' | 'runs' | 'kick' | 'agentChanged'>, req: RemoveAgentRequest__Output): Promise<RemoveAgentResponse> {
  const name = checkName('agent', req.name);
  let requeued = 0;
  let before: string | null = null;
  if (req.force) {
    const revoked = await revoke(ctx, name);
    if (revoked === null) throw notFound(`agent "${name}" not found`);
    before = revoked.from;
    // At once, not at the failure sweep's next pass: forget (below) refuses an agent that still holds runs.
    // The sweep may requeue some of them first (the agent is lost from the revoke on); either way each run
    // the agent held is back in the queue once this returns, so the answer counts what it held.
    await requeueStranded(ctx, { agent: name, reason: 'agent removed' });
    requeued = revoked.held;
    if (requeued > 0) ctx.kick();
  }
  const forgotten = await forget(ctx, name);
  const was = before ?? forgotten; // a forced live agent was lost by the revoke: it was what it was before
  ctx.log.info({ agent: name, was, force: req.force, requeued }, 'agent removed');
  return { name, was, requeued };
}
