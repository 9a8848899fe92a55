import { pino, type Logger } from 'pino';

/** Daemons log pino JSON to stdout; tests and ops tools parse it. */
export function createLogger(name: string, level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ name, level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}
export type { Logger };
