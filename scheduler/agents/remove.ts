// `trainyard agents remove NAME [--force]` (admins): forget an agent, so its name is free for a new agent
// and its credential is worth nothing. A gone agent (offline, or lost) is simply forgotten. A live one is
// refused unless --force: then it is shut out first (revoke: lost, credential void, the loss event), its
// runs go back to the queue at once (each by its lease, as the failure sweep would within the loss
// deadline), and it is forgotten. A box that still holds a join token can join again under a free name:
// revoke that token too (README, Security).
import type { SchedulerContext } from '../context.js';
import type { RemoveAgentRequest__Output, RemoveAgentResponse } from '../../shared/proto.js';
import { checkName } from '../../shared/names.js';
import { notFound } from '../../shared/errors.js';
import { placedStatuses } from '../../shared/run-states.js';
import { forget, revoke } from './status.js';

export async function removeAgent(ctx: SchedulerContext, req: RemoveAgentRequest__Output): Promise<RemoveAgentResponse> {
  const name = checkName('agent', req.name);
  const deps = { db: ctx.db, log: ctx.log, agentChanged: (n: string) => ctx.agentChanged(n) };
  let requeued = 0;
  let before: string | null = null;
  if (req.force) {
    before = await revoke(deps, name);
    if (before === null) throw notFound(`agent "${name}" not found`);
    const placed = await ctx.db.selectFrom('runs').select(['id', 'lease']).where('agent', '=', name).where('status', 'in', [...placedStatuses]).execute();
    for (const r of placed) if (await ctx.runs.requeue(r.id, Number(r.lease), 'agent removed', true)) requeued++;
    if (requeued > 0) ctx.kick();
  }
  const forgotten = await forget(deps, name);
  const was = before ?? forgotten; // a forced live agent was lost by the revoke: it was what it was before
  ctx.log.info({ agent: name, was, force: req.force, requeued }, 'agent removed');
  return { name, was, requeued };
}
