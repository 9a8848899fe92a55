// Group commit for SubmitRun: the calls in flight at one moment are checked with one query and inserted
// with one statement, instead of a handful of round trips and a commit each. Grouping waits for no timer:
// a call that finds fewer than `concurrency` groups running starts one at the next turn of the event loop
// (so the calls that arrived in the same turn join it); the others wait for a group to finish and go
// together as the next. A lone call is therefore as quick as before, and under load each round trip
// carries many runs.
//
// Every call keeps its own answer: its own refusal, its own idempotency key (same key in one group: one
// run, both answered with it), all-or-nothing for its run. A group's INSERT is one statement, so it commits
// all its runs or none; if it (or the checks' query) fails, each of its calls is tried alone, so one call's
// failure is never another's. A call is answered only after its statement committed.
import type { SchedulerContext } from '../context.js';
import type { SubmitRunRequest__Output } from '../../shared/proto.js';
import type { Principal } from '../auth/principal.js';
import { submitEach, type Outcome, type RunRow } from './submit.js';

/** See SubmitGroup's #kick. */
const KICK_EVERY_MS = 50;

export interface SubmitGroupOptions {
  /** Most calls in one group (default 200): bounds one statement's size and a group's latency. */
  readonly maxGroup?: number;
  /** Groups running at once (default 4): while one waits on Postgres, others check or insert. */
  readonly concurrency?: number;
  /** The placer is rung for new runs at most once in this many ms (default 50); see #kick. */
  readonly kickEveryMs?: number;
}

interface Waiting { req: SubmitRunRequest__Output; caller: Principal; resolve(row: RunRow): void; reject(err: unknown): void }

export class SubmitGroup {
  readonly #waiting: Waiting[] = [];
  readonly #maxGroup: number;
  readonly #concurrency: number;
  readonly #kickEveryMs: number;
  #running = 0;
  #scheduled = false;

  constructor(private readonly ctx: SchedulerContext, o: SubmitGroupOptions = {}) {
    this.#maxGroup = o.maxGroup ?? 200;
    this.#concurrency = o.concurrency ?? 4;
    this.#kickEveryMs = o.kickEveryMs ?? KICK_EVERY_MS;
  }

  /** The run submitted (or the one its idempotency key names), once committed; throws its refusal. */
  submit(req: SubmitRunRequest__Output, caller: Principal): Promise<RunRow> {
    return new Promise<RunRow>((resolve, reject) => {
      this.#waiting.push({ req, caller, resolve, reject });
      if (!this.#scheduled && this.#running < this.#concurrency) {
        this.#scheduled = true;
        setImmediate(() => { this.#scheduled = false; this.#pump(); });
      }
    });
  }

  #pump(): void {
    while (this.#running < this.#concurrency && this.#waiting.length > 0) {
      const group = this.#waiting.splice(0, this.#maxGroup);
      this.#running++;
      void this.#commit(group).finally(() => { this.#running--; this.#pump(); });
    }
  }

  #lastKick = 0;
  #kickTimer: NodeJS.Timeout | null = null;
  /**
   * The placer's doorbell for new runs: at once if it was not rung in the last kickEveryMs, else once at
   * the end of that window. A pass reads the whole queue head, so one per group under a stream of
   * submits would spend more than the submits themselves (bench/submit.ts: about half the scheduler's
   * and most of Postgres's CPU); this bounds the extra wait for placement to kickEveryMs. 50 ms, not more:
   * runs a service submits one by one, tens of ms apart, must not each wait for a window to close.
   */
  readonly #kick = () => {
    const wait = this.#lastKick + this.#kickEveryMs - Date.now();
    if (wait <= 0) { this.#lastKick = Date.now(); this.ctx.kick(); return; }
    this.#kickTimer ??= setTimeout(() => { this.#kickTimer = null; this.#lastKick = Date.now(); this.ctx.kick(); }, wait).unref();
  };

  async #commit(group: Waiting[]): Promise<void> {
    let outcomes: Outcome[];
    const ctx = { ...this.ctx, kick: this.#kick };
    try {
      outcomes = await submitEach(ctx, group);
    } catch (err) {
      // The group's query or statement failed (nothing of it committed): each call alone, so the failure
      // is answered only to the call it belongs to.
      if (group.length === 1) outcomes = [{ ok: false, error: err }];
      else outcomes = await Promise.all(group.map((w) => submitEach(ctx, [w]).then((o) => o[0]!, (error: unknown) => ({ ok: false as const, error }))));
    }
    group.forEach((w, i) => {
      const o = outcomes[i]!;
      if (o.ok) w.resolve(o.row);
      else w.reject(o.error);
    });
  }
}
