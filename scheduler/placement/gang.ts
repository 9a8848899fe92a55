// Multi-agent (gang) runs: one attempt spread over N agents ("members"), P processes on each, launched
// the way torchrun launches them. Design (issue 24):
//
// - Rows. A gang is one `runs` row with agents = N, procs_per_agent = P. Member 0 (node rank 0) is the
//   run's own agent and gpu_indices, so every path written for one agent (claim, reports, finish, kill,
//   requeue, the ack deadline, the heartbeats) drives the run through it unchanged. Members 1..N-1 are
//   run_members rows (run, node_rank, lease, agent, gpu_indices), current while their lease is the run's
//   and the run is placed. Every member's GPUs are gpu_leases rows of the run (same run_id and lease), so
//   every transition that ends or requeues the run already frees every member's GPUs in its statement.
//
// - All or nothing, in one statement (RunTransitions.assignGang): the run's UPDATE, the run_members rows,
//   every member's gpu_leases and the event commit together or not at all, guarded by every member's
//   agent (online, responsive, the session the placer read, the project's rules, not held for another
//   run) and by the count of members that passed = N. No member ever holds a GPU while another waits:
//   there is no partial state to hold one in. In the placer's model (chooseGang below) the N members are
//   chosen one after another on distinct agents; if one does not fit, the ones chosen are given back in
//   the same pass, before anything is sent, and the gang waits ("waiting for N agents, each with ...").
//
// - Running. Each member's agent is rung on the NATS doorbell like any run and claims the attempt
//   (ClaimAttempt); a member's claim answers with its own GPUs and a GangPlace (node rank, NNODES, P,
//   MASTER_ADDR = rank 0's agent's --advertise-addr, MASTER_PORT = a port of rank 0's agent's
//   --rendezvous-ports that no other placed gang there uses, chosen by the place statement). The harness
//   of node rank k starts P processes with torchrun's env (agent/harness). Member 0 reports the run's
//   status and its success (one version: only global rank 0 calls save()); members >= 1 report their own
//   end only (run_members.ended_at/outcome) and their artifacts go under node-K/ of the attempt prefix.
//
// - Failure. A member that fails, is killed or is lost (its agent lost, or the attempt missing from its
//   heartbeats) requeues the whole run as one lost attempt (RunTransitions.requeue, counted once); its
//   lease is then no longer current, so every other member's agent is told to cancel it at its next
//   heartbeat and stops it (SIGTERM, then SIGKILL after the kill grace), and the gang is placed again as
//   a whole, resuming from its last complete checkpoint.
import type { AgentCapacity, Choice, Request } from './fleet.js';
import type { FleetIndex } from './fleet-index.js';
import { invalid } from '../../shared/errors.js';

/** Most members a gang may ask for, and processes per member (ranks = N x P). */
export const MAX_GANG_AGENTS = 64;
export const MAX_PROCS_PER_AGENT = 16;

/**
 * The submit-time checks of a gang's shape. `agents`/`procs`: as sent (0 = 1). With GPUs, each process has
 * its own: a member's GPUs must be a multiple of its processes (--gpus-per-agent defaults to P with --gpu).
 */
export function checkGang(agents: number, procs: number, gpusPerAgent: number): void {
  if (!Number.isInteger(agents) || agents < 0 || agents > MAX_GANG_AGENTS) throw invalid(`agents must be 1 to ${MAX_GANG_AGENTS}, got ${agents}`);
  if (!Number.isInteger(procs) || procs < 0 || procs > MAX_PROCS_PER_AGENT) throw invalid(`procs_per_agent must be 1 to ${MAX_PROCS_PER_AGENT}, got ${procs}`);
  const p = procs || 1;
  if (gpusPerAgent > 0 && gpusPerAgent % p !== 0) {
    throw invalid(`each of the ${p} processes on an agent gets its own GPUs: ${gpusPerAgent} GPUs per agent is not a multiple of ${p}`);
  }
}

/** One member chosen: its agent and GPUs there. */
export interface ChosenMember { agent: string; gpuIndices: number[] }

/**
 * The gang's N members on N distinct agents, chosen one at a time from the index. `take(rank, choice)`
 * holds each member's capacity in the model at once (so the next member sees it); `giveBack()` is called
 * when a later member does not fit, and must release every holding taken: the gang then holds nothing.
 */
export function chooseGang(index: FleetIndex, r: Request, admit: ((a: AgentCapacity) => boolean) | undefined,
  take: (rank: number, c: ChosenMember) => void, giveBack: () => void): { ok: true; members: ChosenMember[] } | { ok: false; never: boolean; reason: string } {
  const n = r.members ?? 1;
  const members: ChosenMember[] = [];
  const used = new Set<string>();
  for (let rank = 0; rank < n; rank++) {
    const c: Choice = index.choose(r, admit, used);
    if (!c.ok) {
      if (members.length) giveBack();
      // The first member found nothing: the index's own reason. A later one: the gang is short of agents.
      return rank === 0 ? c : { ok: false, never: false, reason: `waiting for ${describeShort(r)}: ${rank} of ${n} agents free` };
    }
    used.add(c.agent);
    const m = { agent: c.agent, gpuIndices: c.gpuIndices };
    members.push(m);
    take(rank, m);
  }
  return { ok: true, members };
}

/**
 * A member's holding in the placer's model (fleet-cache.ts): member 0 is held under the run's id, as an
 * ordinary run; member k under RUN#k, so that every member's capacity is counted on its own agent.
 */
export function memberKey(run: string, rank: number): string {
  return rank === 0 ? run : `${run}#${rank}`;
}

const describeShort = (r: Request) => `${r.members} agents at once`;
