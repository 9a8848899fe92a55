// A gang run's members as users see them (README, "Multi-agent runs"): node rank, agent, GPUs (UUIDs from
// the agent's registered GPUs, the index where none is known), the global ranks it runs and, for `run get`
// and the console, where it stands. Read from the run's row (member 0 is the run's own agent and GPUs) and
// its run_members rows (node ranks >= 1), which hold the run's current attempt, or its last one until the
// gang is placed again. The one place that shapes a member: _results.json, _lineage.json, GetRun and the
// console all take it from here. Ordinary runs (agents = 1) have no members list.
import type { Selectable } from 'kysely';
import type { Db, RunsTable } from '../db/database.js';
import type { RunMember } from '../../shared/proto.js';
import { RunStatus, isTerminal, placedStatuses } from '../../shared/run-states.js';

export interface MemberGpu { index: number; uuid: string }

/** One member as _results.json and _lineage.json record it. */
export interface MemberRecord {
  node_rank: number;
  agent: string;
  gpus: MemberGpu[];
  /** Global ranks node_rank x P .. node_rank x P + P - 1, inclusive. */
  first_rank: number;
  last_rank: number;
}

/** And where it stands (run get, the console). */
export interface MemberState extends MemberRecord {
  /** The run's status while the attempt is live; the member's own outcome once it reported its end; see memberState. */
  state: string;
  ended_at: Date | null;
}

type RunRow = Pick<Selectable<RunsTable>, 'id' | 'agents' | 'procs_per_agent' | 'agent' | 'last_agent' | 'gpu_indices' | 'lease' | 'status'>;

/**
 * What a member's state says, in order: its own end report (run_members.outcome: Successful, or the
 * outcome it reported: failed, stalled, killed, timed_out, ...); the run's status while the attempt is
 * live ("Scheduled" for a member that has not claimed it yet); the run's end for member 0 of an ended run;
 * "requeued" once the attempt was given up and the gang waits to be placed again; "stopped" for a member
 * of an ended attempt that reported nothing of its own (its agent stopped it).
 */
function memberState(run: RunRow, m: { node_rank: number; live: boolean; acked: boolean; outcome: string | null }): string {
  if (m.outcome) return m.outcome;
  if (m.live) return m.node_rank > 0 && !m.acked ? RunStatus.Scheduled : run.status;
  if (isTerminal(run.status)) return m.node_rank === 0 ? run.status : 'stopped';
  return 'requeued';
}

/** The members of the run's current (or last) attempt, node rank 0 first; [] for an ordinary run. */
export async function gangMembers(db: Db, run: RunRow): Promise<MemberState[]> {
  if (run.agents <= 1) return [];
  const rows = await db.selectFrom('run_members').select(['node_rank', 'lease', 'agent', 'gpu_indices', 'acked_at', 'ended_at', 'outcome'])
    .where('run_id', '=', run.id).orderBy('node_rank').execute();
  const agent0 = run.agent ?? run.last_agent;
  const agents = [...new Set([...(agent0 ? [agent0] : []), ...rows.map((r) => r.agent)])];
  const uuids = new Map<string, string>();
  if (agents.length) {
    for (const g of await db.selectFrom('agent_gpus').select(['agent', 'index', 'uuid']).where('agent', 'in', agents).execute()) uuids.set(`${g.agent}/${g.index}`, g.uuid);
  }
  const placed = run.agent !== null && (placedStatuses as readonly string[]).includes(run.status);
  const p = run.procs_per_agent;
  const shape = (nodeRank: number, agent: string, indices: number[]): MemberRecord => ({
    node_rank: nodeRank, agent, gpus: indices.map((index) => ({ index, uuid: uuids.get(`${agent}/${index}`) ?? '' })),
    first_rank: nodeRank * p, last_rank: nodeRank * p + p - 1,
  });
  const out: MemberState[] = [];
  if (agent0) out.push({ ...shape(0, agent0, run.gpu_indices), state: memberState(run, { node_rank: 0, live: placed, acked: true, outcome: null }), ended_at: null });
  for (const r of rows) {
    const live = placed && Number(r.lease) === Number(run.lease);
    out.push({ ...shape(r.node_rank, r.agent, r.gpu_indices), state: memberState(run, { node_rank: r.node_rank, live, acked: r.acked_at !== null, outcome: r.outcome }), ended_at: r.ended_at });
  }
  return out;
}

/** As _results.json and _lineage.json record them: no state (written at rank 0's success, while the others end). */
export const memberRecords = (members: readonly MemberState[]): MemberRecord[] =>
  members.map(({ node_rank, agent, gpus, first_rank, last_rank }) => ({ node_rank, agent, gpus, first_rank, last_rank }));

/** The Run message's members (GetRun). */
export const membersToProto = (members: readonly MemberState[]): RunMember[] => members.map((m) => ({
  node_rank: m.node_rank, agent: m.agent, gpu_indices: m.gpus.map((g) => g.index), gpu_uuids: m.gpus.map((g) => g.uuid),
  first_rank: m.first_rank, last_rank: m.last_rank, state: m.state, ended_at: m.ended_at ? m.ended_at.toISOString() : '',
}));
