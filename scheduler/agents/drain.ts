// `trainyard agents drain NAME`: the agent takes no new runs (durable first), then is told over NATS; if
// that message is lost, its next heartbeat answers `drain` anyway.
import type { SchedulerContext } from '../context.js';
import type { Agent } from '../../shared/proto.js';
import type { ControlMessage } from '../../shared/subjects.js';
import { notFound } from '../../shared/errors.js';
import { drain } from './status.js';
import { listAgents } from './list.js';

export async function drainAgent(ctx: SchedulerContext, name: string): Promise<Agent> {
  await drain(ctx, name);
  const msg: ControlMessage = { type: 'drain' };
  try {
    ctx.nats.publish(ctx.subjects.control(name), JSON.stringify(msg));
  } catch (err) {
    ctx.log.warn({ agent: name, err: String(err) }, 'drain: could not tell the agent now; its next heartbeat learns it');
  }
  const agent = (await listAgents(ctx)).find((a) => a.name === name);
  if (!agent) throw notFound(`agent "${name}" not found`);
  return agent;
}
