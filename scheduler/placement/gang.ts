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
// - Waiting, and no starvation. A gang that does not fit holds nothing; small runs backfill the agents it
//   wants. Once one has waited --gang-reserve-after, the placer reserves agents for one gang (reservingGang:
//   the oldest of the highest priority that waited that long): reserveGang picks the N agents that would
//   fit it soonest, and the placer holds them back in its index from every other run, from pass to pass,
//   until the gang is placed by the same one statement. A hold in the model, never a GPU lease: nothing
//   to give back if the leader dies, and no running run is stopped for it.
//
// - Preferences (preferredGroups): --prefer-same LABEL and one GPU model across members are narrower
//   requests tried before the mixed choice, so a preference never makes a gang wait that could run now.
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
import { gpuMatches, type AgentCapacity, type Choice, type Request } from './fleet.js';
import type { FleetIndex } from './fleet-index.js';
import type { QueuedRun } from './queue.js';
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

/**
 * --prefer-same: a label key as agents' --labels take them (no NUL, "," or "="), for gangs only ('' = none).
 * `agents`: as sent (0 = 1).
 */
export function checkPreferSame(label: string, agents: number): void {
  if (label === '') return;
  if (/[\0,=]/.test(label) || label.trim() !== label || label.length > 128) throw invalid(`prefer_same ${JSON.stringify(label.slice(0, 130))} is not a label key (1 to 128 characters, no NUL, ",", "=" or surrounding spaces)`);
  if (agents < 2) throw invalid('prefer_same is for multi-agent runs: give agents 2 or more');
}

/** One member chosen: its agent and GPUs there. */
export interface ChosenMember { agent: string; gpuIndices: number[] }

/**
 * The gang's N members on N distinct agents, chosen one at a time from the index. `take(rank, choice)`
 * holds each member's capacity in the model at once (so the next member sees it); `giveBack()` is called
 * when a later member does not fit, and must release every holding taken: the gang then holds nothing.
 *
 * Preferences first (preferredGroups): members sharing the value of the request's preferSame label, and,
 * when it asks for GPUs without naming a model, the same GPU model on every member. Only when no such
 * group fits now are the members mixed: a preference never makes a gang wait that could run now.
 */
export function chooseGang(index: FleetIndex, r: Request, admit: ((a: AgentCapacity) => boolean) | undefined,
  take: (rank: number, c: ChosenMember) => void, giveBack: () => void): { ok: true; members: ChosenMember[] } | { ok: false; never: boolean; reason: string } {
  for (const group of preferredGroups(index, r, admit)) {
    const c = chooseMembers(index, group, admit, take, giveBack);
    if (c.ok) return c;
  }
  return chooseMembers(index, r, admit, take, giveBack);
}

function chooseMembers(index: FleetIndex, r: Request, admit: ((a: AgentCapacity) => boolean) | undefined,
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
 * The request narrowed to each group of agents that could hold the whole gang now, best first: tiers
 * (preferSame value and GPU model; then preferSame value alone; then GPU model alone), and within a tier the
 * tightest group first (fewest agents that fit, then by value), as the index's best fit leaves the larger
 * groups whole for larger gangs. A group is a narrower request: the label added to the selector, the GPU
 * model set to the one full GPU name (gpuMatches: a name contains itself), so the index chooses in it as
 * it chooses anywhere. Agents without the label are in no preferSame group (they serve mixed gangs only).
 * Nothing to prefer (no label; no GPUs, or a model named by the run): no groups, no cost.
 */
export function* preferredGroups(index: FleetIndex, r: Request, admit?: (a: AgentCapacity) => boolean): Generator<Request> {
  const label = r.preferSame ?? '';
  const byModel = r.gpus > 0 && r.gpuModel === '';
  const n = r.members ?? 1;
  if ((!label && !byModel) || n < 2) return;
  const fit = index.fitNow(r, admit);
  if (fit.length < n) return; // not even mixed members fit now: the mixed choice says why
  const tiers: { label: boolean; model: boolean }[] = [];
  if (label && byModel) tiers.push({ label: true, model: true });
  if (label) tiers.push({ label: true, model: false });
  if (byModel) tiers.push({ label: false, model: true });
  for (const tier of tiers) {
    const groups = new Map<string, { value: string | null; model: string | null; count: number }>();
    for (const { a, free } of fit) {
      const value = tier.label ? a.labels[label] : null;
      if (value === undefined) continue;
      // The models of which this agent has enough free GPUs for one member (usually one).
      const models = tier.model ? [...new Set(free.map((g) => g.name))].filter((name) => free.filter((g) => g.name === name).length >= r.gpus) : [null];
      for (const model of models) {
        const key = `${value ?? ''}\0${model ?? ''}`;
        const g = groups.get(key);
        if (g) g.count++;
        else groups.set(key, { value, model, count: 1 });
      }
    }
    const ok = [...groups.entries()].filter(([, g]) => g.count >= n)
      .sort(([ka, a], [kb, b]) => a.count - b.count || (ka < kb ? -1 : ka > kb ? 1 : 0));
    for (const [, g] of ok) {
      yield { ...r, selector: g.value === null ? r.selector : { ...r.selector, [label]: g.value }, gpuModel: g.model ?? r.gpuModel };
    }
  }
}

/** Reservations named in a waiting gang's detail: the first few (a gang may span 64 agents). */
const NAMED = 8;

/**
 * The agents a waiting gang reserves (README, "Multi-agent runs", --gang-reserve-after): the N that would
 * fit it soonest, which the placer then keeps every other run off until the gang is placed. Soonest is
 * read as the most free matching GPUs (then free CPUs), among the online agents that could ever take a
 * member and that nothing else holds back; ties go to the agents it already reserved (`previous`), so a
 * reservation stays where it is draining, then by name. Deterministic: the same model gives the same
 * agents. Fewer than N when fewer could ever serve (the gang then waits for agents to register).
 */
export function reserveGang(index: FleetIndex, r: Request, admit: ((a: AgentCapacity) => boolean) | undefined, previous: readonly string[]): string[] {
  const n = r.members ?? 1;
  const before = new Set(previous);
  const freeGpus = (a: AgentCapacity) => a.gpus.filter((g) => !a.usedGpus.has(g.index) && gpuMatches(g, r)).length;
  return index.couldServe(r, admit)
    .map((a) => ({ name: a.name, gpus: freeGpus(a), cpus: a.cpus - a.usedCpus, was: before.has(a.name) ? 0 : 1 }))
    .sort((x, y) => y.gpus - x.gpus || x.was - y.was || y.cpus - x.cpus || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
    .slice(0, n).map((x) => x.name);
}

/**
 * The gang agents are reserved for: among the queued gangs submitted at or before `cutoff` (ms; now less
 * --gang-reserve-after), the one of the highest priority, then the oldest (then the smallest id). Null: none.
 */
export function reservingGang(queue: readonly QueuedRun[], cutoff: number): string | null {
  let best: { id: string; priority: number; at: number } | null = null;
  for (const r of queue) {
    if (r.agents < 2 || !r.created_at) continue;
    const at = r.created_at.getTime();
    if (at > cutoff) continue;
    if (!best || r.priority > best.priority || (r.priority === best.priority && (at < best.at || (at === best.at && r.id < best.id)))) best = { id: r.id, priority: r.priority, at };
  }
  return best?.id ?? null;
}

/** What a reserving gang's status_detail adds to why it waits: which agents, since when (UTC). */
export function reservingText(agents: readonly string[], since: number): string {
  const names = agents.length > NAMED ? `${agents.slice(0, NAMED).join(', ')} and ${agents.length - NAMED} more` : agents.join(', ');
  return `reserving ${names || 'no agent yet'} since ${new Date(since).toISOString().slice(11, 19)}Z`;
}

/**
 * A member's holding in the placer's model (fleet-cache.ts): member 0 is held under the run's id, as an
 * ordinary run; member k under RUN#k, so that every member's capacity is counted on its own agent.
 */
export function memberKey(run: string, rank: number): string {
  return rank === 0 ? run : `${run}#${rank}`;
}

const describeShort = (r: Request) => `${r.members} agents at once`;
