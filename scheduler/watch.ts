// Waiting for a run to change, on any scheduler: a NATS subscription on the run's subject, opened before
// the first read so no change is missed between reading and waiting. The timeout is a safety net for a
// NATS outage, not the mechanism.
import type { SchedulerContext } from './context.js';

export interface RunWaiter {
  wait(timeoutMs: number, signal: AbortSignal): Promise<void>;
  close(): void;
}

export function watchRun(ctx: SchedulerContext, runId: string): RunWaiter {
  let pending = false;
  let wake: (() => void) | null = null;
  let sub: { unsubscribe(): void } | null = null;
  try {
    sub = ctx.nats.subscribe(ctx.subjects.run(runId), {
      callback: () => { pending = true; wake?.(); },
    });
  } catch {
    sub = null; // NATS down: fall back to the timeout
  }
  return {
    async wait(timeoutMs, signal) {
      if (pending) { pending = false; return; }
      await new Promise<void>((resolve) => {
        const done = () => { clearTimeout(t); signal.removeEventListener('abort', done); wake = null; resolve(); };
        const t = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done, { once: true });
        wake = done;
      });
      pending = false;
    },
    close() { sub?.unsubscribe(); },
  };
}
