// When a schedule fires (scheduler/schedules/timing.ts), in its own time zone: the same cron lands at
// different UTC hours in winter and summer, a one-shot fires once, and a catch-up after downtime stands for
// every missed firing at once. Pure functions, no services.
import t from 'tap';
import { catchUp, compileTiming, nextFiring } from '../../scheduler/schedules/timing.js';

const now = new Date('2026-01-10T12:00:00Z');

t.test('a cron read in Europe/Paris follows its daylight saving time', async (t) => {
  const paris = compileTiming({ cron: '0 3 * * *', timezone: 'Europe/Paris', at: '' }, now);
  t.equal(nextFiring(paris, new Date('2026-01-10T12:00:00Z'))?.toISOString(), '2026-01-11T02:00:00.000Z', 'winter: 03:00 in Paris is 02:00 UTC');
  t.equal(nextFiring(paris, new Date('2026-07-10T12:00:00Z'))?.toISOString(), '2026-07-11T01:00:00.000Z', 'summer: 01:00 UTC');
  const utc = compileTiming({ cron: '0 3 * * *', timezone: '', at: '' }, now);
  t.equal(utc.timezone, 'UTC', 'no time zone: UTC, so schedulers in different zones agree');
  t.equal(nextFiring(utc, new Date('2026-07-10T12:00:00Z'))?.toISOString(), '2026-07-11T03:00:00.000Z');
  const ny = compileTiming({ cron: '30 9 * * 1-5', timezone: 'America/New_York', at: '' }, now);
  t.equal(nextFiring(ny, new Date('2026-01-10T12:00:00Z'))?.toISOString(), '2026-01-12T14:30:00.000Z', 'weekdays only: Saturday 10 January goes to Monday, 09:30 EST');
});

t.test('a catch-up after downtime is one firing that counts the ones missed', async (t) => {
  const hourly = compileTiming({ cron: '0 * * * *', timezone: 'Asia/Kolkata', at: '' }, now);
  const due = new Date('2026-01-10T12:30:00Z'); // Kolkata is UTC+05:30: its hours start at :30 UTC
  const c = catchUp(hourly, due, new Date('2026-01-10T17:45:00Z'));
  t.equal(c.fireAt.toISOString(), '2026-01-10T17:30:00.000Z', 'the latest due firing');
  t.equal(c.missed, 5, 'standing for the five before it (13:30 to 17:30 UTC)');
  t.equal(c.next?.toISOString(), '2026-01-10T18:30:00.000Z', 'and the next one after now');
});

t.test('a one-shot and the refusals', async (t) => {
  const once = compileTiming({ cron: '', timezone: '', at: '2026-02-01T03:00:00+01:00' }, now);
  t.equal(nextFiring(once, now)?.toISOString(), '2026-02-01T02:00:00.000Z', 'at, with its offset');
  t.equal(nextFiring(once, new Date('2026-03-01T00:00:00Z')), null, 'once it is past: never again');
  t.throws(() => compileTiming({ cron: '0 3 * * *', timezone: 'Mars/Olympus', at: '' }, now), /timezone "Mars\/Olympus" is not a known IANA time zone/);
  t.throws(() => compileTiming({ cron: '', timezone: 'Europe/Paris', at: '2026-02-01T03:00:00Z' }, now), /timezone applies to cron only/);
  t.throws(() => compileTiming({ cron: '0 3 * *', timezone: '', at: '' }, now), /must have 5 fields/);
  t.throws(() => compileTiming({ cron: '', timezone: '', at: '2026-01-01T00:00:00Z' }, now), /is in the past/);
  t.throws(() => compileTiming({ cron: '61 * * * *', timezone: '', at: '' }, now), /cron "61 \* \* \* \*" is invalid/);
});
