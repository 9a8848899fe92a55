// A background loop of a daemon: does `work`, waits `delayMs()`, again, until the signal fires. A pass
// that throws is logged and the loop goes on (the next pass tries again); it never ends the daemon.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

export async function periodic(what: string, log: Logger, signal: AbortSignal, delayMs: () => number, work: () => Promise<void>): Promise<void> {
  while (!signal.aborted) {
    await sleep(delayMs(), undefined, { signal }).catch(() => {});
    if (signal.aborted) return;
    try {
      await work();
    } catch (err) {
      if (!signal.aborted) log.error({ err: String(err) }, `${what} failed; trying again shortly`);
    }
  }
}
