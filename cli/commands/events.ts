// `trainyard events`: the ML log. A page of events (a table, or --json), or with --follow the events as
// they commit (one line each, or one JSON object per line), resuming by itself when the connection drops.
import { setTimeout as sleep } from 'node:timers/promises';
import { Api, streamOf } from '../client.js';
import { intFlag, parse } from '../args.js';
import { color, safeText, table } from '../format.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import { eventKindGroups, eventKinds } from '../../shared/event-kinds.js';
import type { Event__Output, ListEventsRequest } from '../../shared/proto.js';

export const EVENTS_HELP = `trainyard events [--project P] [--kind K] [--since T] [--limit N] [--follow] [--json]

The ML log: what happened to packages, datasets, runs, schedules and agents, oldest first.

  --project P   only project P's events (default: every project the token sees; a member or reader
                sees its own project's; agent events only an admin sees, without --project)
  --kind K      one kind, or a group: ${eventKindGroups.join(', ')}
                (kinds: ${eventKinds.join(', ')})
  --since T     from T on: RFC 3339 (2025-01-31T12:00:00Z) or a time ago (90s, 30m, 1h, 7d);
                without it, the last --limit events
  --limit N     how many (default 100, at most 1000)
  --follow      then print new events as they happen, until interrupted
  --json        a JSON array (with --follow: one JSON object per line); each event's data is an object

Events are kept for the scheduler's --events-retention-days (default 30).

Examples:
  trainyard events --since 1h --kind run.failed
  trainyard events --project vision --follow
  trainyard events --kind schedule --since 2025-01-31T00:00:00Z --json`;

const AGO = /^(\d+)(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** --since as RFC 3339, from an RFC 3339 time or a time ago (`30m`). */
export function parseSince(text: string, now = Date.now()): string {
  const ago = AGO.exec(text);
  if (ago) return new Date(now - Number(ago[1]) * UNIT_MS[ago[2] as keyof typeof UNIT_MS]).toISOString();
  const d = new Date(text);
  if (!/^\d{4}-\d\d-\d\dT/.test(text) || Number.isNaN(d.getTime())) throw invalid(`--since "${text}": expected an RFC 3339 time (2025-01-31T12:00:00Z) or a time ago (90s, 30m, 1h, 7d)`);
  return d.toISOString();
}

const asJson = (e: Event__Output) => ({ ...e, data: e.data_json ? JSON.parse(e.data_json) as unknown : {}, data_json: undefined });
const row = (e: Event__Output) => [e.at, safeText(e.kind), safeText(e.project) || '-', safeText(e.subject), safeText(e.detail)];
const colour = (kind: string, text: string) => (/\.(failed|refused|lost|missed)$/.test(kind) ? color.red(text) : /\.(succeeded|pushed|fired|joined)$/.test(kind) ? color.green(text) : text);

/** How long a follow waits for the scheduler (or a heartbeat) before it reconnects. */
const SILENCE_MS = 30_000;

export async function eventsCommand(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, {
    project: { type: 'string' }, kind: { type: 'string' }, since: { type: 'string' }, limit: { type: 'string' },
    follow: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  });
  if (values.help) { console.log(EVENTS_HELP); return 0; }
  if (positionals.length) throw invalid(`events takes no arguments, got "${positionals.join(' ')}"; see trainyard events --help`);
  const req: ListEventsRequest = {
    project: values.project ?? '', kind: values.kind ?? '', since: values.since ? parseSince(values.since) : '', limit: intFlag(values.limit, 'limit', 0, 1000),
  };
  const api = await Api.connect(address);
  try {
    if (!values.follow) {
      const { events } = await api.listEvents(req);
      if (values.json) console.log(JSON.stringify(events.map(asJson), null, 2));
      else console.log(table(['TIME', 'KIND', 'PROJECT', 'SUBJECT', 'DETAIL'], events.map((e) => row(e).map((c, i) => (i === 1 ? colour(e.kind, c) : c)))));
      return 0;
    }
    await follow(api, req, values.json === true);
    return 0;
  } finally {
    api.close();
  }
}

/** Streams until interrupted; after a dropped connection, resumes from the last event seen (each printed once). */
async function follow(api: Api, req: ListEventsRequest, json: boolean): Promise<never> {
  const seen = new Set<number>();
  let from = req;
  for (;;) {
    const call = api.client.FollowEvents(from);
    let timer = setTimeout(() => call.cancel(), SILENCE_MS);
    try {
      for await (const batch of streamOf(call)) {
        clearTimeout(timer);
        timer = setTimeout(() => call.cancel(), SILENCE_MS);
        for (const e of batch.events) {
          if (seen.has(e.id)) continue;
          seen.add(e.id);
          console.log(json ? JSON.stringify(asJson(e)) : row(e).map((c, i) => (i === 1 ? colour(e.kind, c) : c)).join('  '));
          // Resume a little before the last event: the scheduler skips nothing it commits late, we skip repeats.
          from = { ...req, since: new Date(new Date(e.at).getTime() - 10_000).toISOString(), limit: 1000 };
        }
      }
    } catch (err) {
      const retry = err instanceof TrainyardError && (err.code === ErrorCodes.Unavailable || err.code === ErrorCodes.Cancelled || err.code === ErrorCodes.Internal);
      if (!retry) throw err;
      console.error(color.dim(`(connection to the scheduler lost: ${safeText(err.message)}; resuming)`));
    } finally {
      clearTimeout(timer);
    }
    if (from === req && !req.since) from = { ...req, since: new Date(Date.now() - 10_000).toISOString(), limit: 1000 };
    await sleep(1000);
  }
}
