// `trainyard events`: the ML log. A page of events (a table, or --json), or with --follow the events as
// they commit (one line each, or one JSON object per line), resuming by itself when the connection drops.
import { setTimeout as sleep } from 'node:timers/promises';
import { Api, streamOf, withApi } from '../client.js';
import { intFlag, jsonFlag } from '../args.js';
import { flags, verb, type Parsed } from '../verb.js';
import { color, safeText, table } from '../format.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import { eventKindGroups, eventKinds } from '../../shared/event-kinds.js';
import type { Event__Output, ListEventsRequest } from '../../shared/proto.js';

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

const eventsFlags = flags({
  project: { type: 'string', value: 'P', default: 'every project the token sees', description: 'only project P\'s events (agent events, which have no project, only an admin sees, without --project)' },
  kind: { type: 'string', value: 'K', description: `one kind, or a group: ${eventKindGroups.join(', ')} (kinds: ${eventKinds.join(', ')})` },
  since: { type: 'string', value: 'T', default: 'the last --limit events', description: 'from T on: RFC 3339 (2025-01-31T12:00:00Z) or a time ago (90s, 30m, 1h, 7d)' },
  limit: { type: 'string', value: 'N', default: '100', description: 'how many, at most 1000' },
  follow: { type: 'boolean', short: 'f', description: 'then print new events as they happen, until interrupted (resumes by itself)' },
  json: { ...jsonFlag, description: 'a JSON array (with --follow: one JSON object per line); each event\'s data is an object' },
});

async function events({ values }: Parsed<typeof eventsFlags>, address: string): Promise<number> {
  const req: ListEventsRequest = {
    project: values.project ?? '', kind: values.kind ?? '', since: values.since ? parseSince(values.since) : '', limit: intFlag(values.limit, 'limit', 0, 1000),
  };
  return withApi(address, async (api) => {
    if (!values.follow) {
      const { events: list } = await api.listEvents(req);
      if (values.json) console.log(JSON.stringify(list.map(asJson), null, 2));
      else console.log(table(['TIME', 'KIND', 'PROJECT', 'SUBJECT', 'DETAIL'], list.map((e) => row(e).map((c, i) => (i === 1 ? colour(e.kind, c) : c)))));
      return 0;
    }
    await follow(api, req, values.json === true);
    return 0;
  });
}

export const eventVerbs = [
  verb({
    path: ['events'], section: 'Schedules and events', summary: 'the ML log: packages, datasets, runs, schedules and agents, oldest first', flags: eventsFlags, run: events,
    examples: ['trainyard events --since 1h --kind run.failed', 'trainyard events --project vision --follow', 'trainyard events --kind schedule --since 2025-01-31T00:00:00Z --json'],
    details: 'Each event is committed with the change it reports. Events are kept for the scheduler\'s --events-retention-days (default 30).',
  }),
];

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
