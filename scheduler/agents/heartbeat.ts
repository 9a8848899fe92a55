// Heartbeat (AgentLink): the agent is alive, says whether it drains or leaves, and what it holds; the answer
// says what it is to stop and whether to drain. It is also how an agent acts on a NATS control message: that
// message only makes it beat now (NATS carries no authority), and this answer is what it acts on.
import type { SchedulerContext } from '../context.js';
import type { HeartbeatRequest__Output, HeartbeatResponse } from '../../shared/proto.js';
import { AgentStatus, heartbeat } from './status.js';
import { reconcile } from './reconcile.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';

export async function agentHeartbeat(ctx: SchedulerContext, req: HeartbeatRequest__Output, caller: string): Promise<HeartbeatResponse> {
  if (req.name !== caller) throw new TrainyardError(ErrorCodes.PermissionDenied, `agent "${caller}" may not heartbeat for agent "${req.name}"`);
  const c = req.cache_use;
  // Sizes a caller could send as anything: kept only when they are whole numbers of bytes, 0 or more.
  const bytes = (v: unknown) => { const n = Number(v); return Number.isSafeInteger(n) && n >= 0 ? n : null; };
  const cacheUse = c && bytes(c.venv_bytes) !== null && bytes(c.venv_cap_bytes) !== null ? {
    venv_bytes: bytes(c.venv_bytes)!, venv_cap_bytes: bytes(c.venv_cap_bytes)!,
    // The data and package caches (issue 21): 0 from an agent older than these fields.
    data_bytes: bytes(c.data_bytes) ?? 0, data_cap_bytes: bytes(c.data_cap_bytes) ?? 0, package_bytes: bytes(c.package_bytes) ?? 0,
  } : null;
  const status = await heartbeat(ctx, { name: req.name, session: Number(req.session), draining: req.draining, leaving: req.leaving, cacheUse });
  // Not current (an older session, or the agent was called lost): it must register again, unless it leaves.
  if (status === null) return { reregister: !req.leaving, cancel: [], drain: false, kill: [] };
  if (status === AgentStatus.Offline) return { reregister: false, cancel: [], drain: true, kill: [] };
  const { cancel, kill } = await reconcile(ctx, req.name, req.held ?? [], false);
  return { reregister: false, cancel, drain: status === AgentStatus.Draining, kill };
}
