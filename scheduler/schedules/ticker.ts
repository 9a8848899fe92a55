// Every scheduler fires due schedules (fire.ts makes each firing happen once), so schedules keep firing
// while leadership changes hands. All of them look at each whole second, the finest a cron can ask for:
// schedulers on one clock race for the same firing at the same moment, and the claim decides, not timing.
import type { SchedulerContext } from '../context.js';
import { periodic } from '../periodic.js';
import { fireDue } from './fire.js';

/** Just past the next whole second (a firing due at :00.000 is due by then). */
const untilNextSecond = () => 1000 - (Date.now() % 1000) + 5;

export class ScheduleTicker {
  readonly #abort = new AbortController();
  #done: Promise<void> | null = null;

  constructor(private readonly ctx: SchedulerContext) {}

  start(): void {
    this.#done = periodic('schedule tick', this.ctx.log, this.#abort.signal, untilNextSecond, () => fireDue(this.ctx));
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}
