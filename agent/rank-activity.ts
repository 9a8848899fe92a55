// What --stall-timeout watches (README, "Checkpoints" and "Multi-agent runs"): when each rank of the attempt
// last showed a sign of life. An ordinary run is one rank. A gang's member runs P ranks whose output it
// shares, so a sign of life is taken per rank: one silent rank is enough to stall the gang, even while its
// neighbours print (a rank stuck outside a collective while the others log is what a hung DDP job looks
// like). Per rank, not per member:
// - a log line counts for the rank its "[rank R] " prefix names (agent/harness/trainyard_gang.py writes
//   one on every line of a rank's Python); a line without one (a subprocess writing to the descriptor
//   itself) cannot be told apart and counts for every rank of the member, so it never stalls one wrongly;
// - a progress mark counts for the rank that made it (trainyard_checkpoint.progress() names it in a gang:
//   ".trainyard-progress.R"), an unnamed one for every rank;
// - a checkpoint counts for every rank (in DDP one rank writes it after a step all of them took).

/** "[rank R] " at the start of a gang rank's line. */
const RANK_PREFIX = /^\[rank (\d{1,6})\] /;

export class RankActivity {
  readonly #last = new Map<number, number>();

  /** `ranks`: the global ranks this agent runs; [] for an ordinary run (one rank, any line counts). */
  constructor(private readonly ranks: readonly number[]) {
    this.reset();
  }

  /** Every rank alive now (the process was just started). */
  reset(now = Date.now()): void {
    for (const r of this.ranks.length ? this.ranks : [0]) this.#last.set(r, now);
  }

  /** A line of the run's output. */
  line(text: string, now = Date.now()): void {
    const m = this.ranks.length ? RANK_PREFIX.exec(text) : null;
    this.rank(m ? Number(m[1]) : null, now);
  }

  /** A sign of life of rank `rank` (null: of every rank); a rank this agent does not run counts for every rank. */
  rank(rank: number | null, now = Date.now()): void {
    if (rank !== null && this.#last.has(rank)) this.#last.set(rank, now);
    else for (const r of this.#last.keys()) this.#last.set(r, now);
  }

  /** The rank silent longest, if it has been for `ms` or more (null for an ordinary run's one rank); else undefined. */
  silent(ms: number, now = Date.now()): { rank: number | null; forMs: number } | undefined {
    let worst: { rank: number; at: number } | null = null;
    for (const [rank, at] of this.#last) if (!worst || at < worst.at) worst = { rank, at };
    if (!worst || now - worst.at < ms) return undefined;
    return { rank: this.ranks.length ? worst.rank : null, forMs: now - worst.at };
  }
}

/** The global ranks of a gang's member: node rank K runs K x P .. K x P + P - 1; [] for an ordinary run. */
export function memberRanks(gang: { nodeRank: number; procs: number } | null): number[] {
  if (!gang) return [];
  return Array.from({ length: gang.procs }, (_, i) => gang.nodeRank * gang.procs + i);
}
