// A multi-agent (gang) run on this agent (scheduler/placement/gang.ts): the dispatch's gang part checked,
// and the environment torchrun would give, for the harness (agent/harness/trainyard_harness.py), which
// starts the member's P processes and gives each its RANK, LOCAL_RANK and own GPUs.
import type { GangPlace__Output } from '../shared/proto.js';
import { invalid } from '../shared/errors.js';

/** A gang part whose every field was checked (only checkGangPlace makes one). */
export interface ValidGang { nodeRank: number; nnodes: number; procs: number; masterAddr: string; masterPort: number }

/** --rendezvous-ports "LO-HI" (or one port). Throws a usage error naming what is wrong. */
export function parsePortRange(text: string): { lo: number; hi: number } {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 1 || hi > 65535 || lo > hi) throw invalid(`--rendezvous-ports "${text}" is not LO-HI, two ports from 1 to 65535 with LO <= HI`);
  return { lo, hi };
}

/**
 * The dispatch's gang part, or null for an ordinary run. `gpus`: how many GPUs the member was given (each
 * process gets gpus / procs of them). Returns why it is refused as a string, to be thrown by the caller.
 */
export function checkGangPlace(g: GangPlace__Output | null | undefined, gpus: number): ValidGang | null | string {
  if (!g) return null;
  const { node_rank: nodeRank, nnodes, procs_per_agent: procs, master_addr: masterAddr, master_port: masterPort } = g;
  if (!Number.isInteger(nnodes) || nnodes < 2 || nnodes > 64) return `gang: nnodes ${nnodes} is not 2 to 64`;
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) return `gang: node rank ${nodeRank} is not 0 to ${nnodes - 1}`;
  if (!Number.isInteger(procs) || procs < 1 || procs > 16) return `gang: ${procs} processes per agent is not 1 to 16`;
  if (gpus % procs !== 0) return `gang: ${gpus} GPUs cannot be shared by ${procs} processes`;
  if (!/^[A-Za-z0-9.:_-]{1,255}$/.test(masterAddr)) return `gang: master address ${JSON.stringify(masterAddr).slice(0, 80)} is not a host name or address`;
  if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535) return `gang: master port ${masterPort} is not a port`;
  return { nodeRank, nnodes, procs, masterAddr, masterPort };
}

/**
 * What the harness of this member gets (torchrun's names): it starts LOCAL_WORLD_SIZE processes and sets
 * RANK = NODE_RANK x LOCAL_WORLD_SIZE + LOCAL_RANK and CUDA_VISIBLE_DEVICES for each.
 */
export function gangEnv(g: ValidGang, runId: string, attempt: number): Record<string, string> {
  return {
    TRAINYARD_GANG: '1',
    MASTER_ADDR: g.masterAddr,
    MASTER_PORT: String(g.masterPort),
    NNODES: String(g.nnodes),
    NODE_RANK: String(g.nodeRank),
    GROUP_RANK: String(g.nodeRank),
    LOCAL_WORLD_SIZE: String(g.procs),
    WORLD_SIZE: String(g.nnodes * g.procs),
    // One id per attempt: a requeued gang's ranks never meet an older attempt's.
    TORCHELASTIC_RUN_ID: `${runId}-${attempt}`,
  };
}

/** Where a member of node rank >= 1 puts its artifacts under the attempt's prefix (rank 0's are the run's own). */
export function memberOutputPrefix(outputPrefix: string, nodeRank: number): string {
  return nodeRank === 0 ? outputPrefix : `${outputPrefix}node-${nodeRank}/`;
}
