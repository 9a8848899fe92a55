// When a schedule fires: a cron expression (croner: 5 fields, or 6 with seconds first) read in an IANA
// time zone (default UTC, so schedulers in different zones agree), or one time (`--at`). Pure functions:
// validation names the field it refuses, and catchUp says what one firing stands for after downtime.
import { Cron } from 'croner';
import { invalid } from '../../shared/errors.js';

export interface Timing {
  readonly cron: string | null;
  readonly timezone: string;
  readonly at: Date | null;
}

/** A catch-up counts at most this many missed firings (a seconds cron after a week down says "at least"). */
export const MISSED_COUNT_CAP = 10_000;

function cronOf(t: Timing): Cron {
  return new Cron(t.cron!, { paused: true, timezone: t.timezone, mode: '5-or-6-parts' });
}

/** Checks what a user gave; throws INVALID_ARGUMENT naming the field. `now` is for `at` in the past. */
export function compileTiming(input: { cron: string; timezone: string; at: string }, now: Date): Timing {
  const cron = input.cron.trim();
  const timezone = input.timezone.trim() || 'UTC';
  if ((cron === '') === (input.at === '')) throw invalid('give either cron (a cron expression) or at (one RFC 3339 time), not both or neither');
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    throw invalid(`timezone "${timezone}" is not a known IANA time zone (like UTC, Europe/Paris, America/New_York)`);
  }
  if (input.at) {
    if (input.timezone) throw invalid('timezone applies to cron only; give at with its offset (2025-01-31T03:00:00+01:00)');
    const at = new Date(input.at);
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(input.at) || Number.isNaN(at.getTime())) {
      throw invalid(`at "${input.at}" is not an RFC 3339 time with an offset (2025-01-31T03:00:00Z)`);
    }
    if (at.getTime() <= now.getTime()) throw invalid(`at ${input.at} is in the past (it is ${now.toISOString()} now)`);
    return { cron: null, timezone: 'UTC', at };
  }
  const fields = cron.split(/\s+/).length;
  // croner also takes an ISO date as a pattern; a schedule's cron must be fields.
  if (fields !== 5 && fields !== 6) throw invalid(`cron "${cron}" must have 5 fields (minute hour day month weekday) or 6 (seconds first), not ${fields}`);
  const t: Timing = { cron, timezone, at: null };
  let next: Date | null;
  try {
    next = cronOf(t).nextRun(now);
  } catch (err) {
    throw invalid(`cron "${cron}" is invalid: ${(err as Error).message.replace(/^CronPattern: /, '')}`);
  }
  if (!next) throw invalid(`cron "${cron}" never fires`);
  return t;
}

/** The first firing strictly after `after` (null: a one-shot whose time is not after it). */
export function nextFiring(t: Timing, after: Date): Date | null {
  if (t.at) return t.at.getTime() > after.getTime() ? t.at : null;
  return cronOf(t).nextRun(after);
}

export interface CatchUp {
  /** The firing this one stands for: the latest that is due (the one due, unless some were missed). */
  fireAt: Date;
  /** Due firings before fireAt that no scheduler fired (capped at MISSED_COUNT_CAP). */
  missed: number;
  /** The firing after this one; null when none (a one-shot). */
  next: Date | null;
}

/** What firing a schedule that was due at `due` means at `now`: one firing, however many are due. */
export function catchUp(t: Timing, due: Date, now: Date): CatchUp {
  if (t.at) return { fireAt: due, missed: 0, next: null };
  const cron = cronOf(t);
  let fireAt = due;
  let missed = 0;
  for (let n = cron.nextRun(due); n && n.getTime() <= now.getTime() && missed < MISSED_COUNT_CAP; n = cron.nextRun(n)) {
    missed++;
    fireAt = n;
  }
  return { fireAt, missed, next: cron.nextRun(new Date(Math.max(now.getTime(), fireAt.getTime()))) };
}
