// `trainyard webhooks ...`: chosen kinds of events POSTed, signed, to a URL (scheduler/webhooks/).
import { readFileSync } from 'node:fs';
import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, group, verb, type Parsed } from '../verb.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import type { Webhook__Output, WebhookDelivery__Output } from '../../shared/proto.js';

const shown = (s: string) => safeText(s) || '-';

const createFlags = flags({
  project: { type: 'string', value: 'P', description: 'the project whose events it gets (default: the token\'s; an admin without it makes a fleet-wide hook: every project\'s events and agent.*)' },
  url: { type: 'string', value: 'URL', required: true, description: 'http(s) URL to POST to; loopback, link-local and private addresses are refused unless the scheduler allows them (--webhook-allow-hosts)' },
  events: { type: 'string', value: 'KIND,...', required: true, description: 'event kinds to send (trainyard events --help lists them): run.failed,run.succeeded,schedule.failed,...' },
  secret: { type: 'string', value: '@FILE', description: 'the signing secret, read from a file (at least 16 characters); default: one is made and printed once' },
  format: { type: 'string', value: 'json|slack', default: 'json', description: 'the body: the event as JSON, or Slack\'s {"text": ...}' },
  json: jsonFlag,
});

function readSecret(v: string | undefined): string {
  if (v === undefined) return '';
  if (!v.startsWith('@')) throw invalid('--secret: give it as @FILE (a secret on the command line is visible to every user in ps)');
  try { return readFileSync(v.slice(1), 'utf8').trim(); } catch (err) { throw invalid(`--secret ${v}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`); }
}

async function create({ values, positionals }: Parsed<typeof createFlags>, address: string): Promise<number> {
  const name = positionals[0] ?? '';
  const secret = readSecret(values.secret); // before the call: a bad --secret fails at once
  const created = await withApi(address, (api) => api.createWebhook({
    name, project: values.project ?? '', url: values.url ?? '', events: (values.events ?? '').split(','), secret, format: values.format ?? 'json',
  }));
  if (values.json) { console.log(JSON.stringify(created, null, 2)); return 0; }
  const w = created.webhook!;
  console.log(`${color.bold(safeText(w.name))} ${color.dim(w.project ? `project ${safeText(w.project)}` : 'fleet-wide')} → ${safeText(w.url)} (${safeText(w.events.join(','))}, ${safeText(w.format)})`);
  if (values.secret === undefined) console.log(`secret (shown once, verify X-Trainyard-Signature with it): ${created.secret}`);
  return 0;
}

async function list({ values }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const { webhooks } = await withApi(address, (api) => api.listWebhooks());
  if (values.json) console.log(JSON.stringify(webhooks, null, 2));
  else console.log(table(['WEBHOOK', 'PROJECT', 'URL', 'EVENTS', 'FORMAT', 'PENDING', 'DELIVERED', 'FAILED'], webhooks.map((w: Webhook__Output) => [
    safeText(w.name), w.project ? safeText(w.project) : '(fleet)', safeText(w.url), safeText(w.events.join(',')), safeText(w.format),
    String(w.pending), String(w.delivered), w.failed ? color.red(String(w.failed)) : '0',
  ])));
  return 0;
}

async function remove({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const w = await withApi(address, (api) => api.deleteWebhook(positionals[0] ?? ''));
  console.log(values.json ? JSON.stringify(w, null, 2) : `${safeText(w.name)} deleted (with its pending deliveries and log)`);
  return 0;
}

const outcome = (d: WebhookDelivery__Output) => (d.last_status ? `HTTP ${d.last_status}` : shown(d.last_error));

async function test({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const d = await withApi(address, (api) => api.testWebhook(positionals[0] ?? ''));
  if (values.json) console.log(JSON.stringify(d, null, 2));
  else console.log(`${safeText(d.id)}: ${d.state === 'delivered' ? color.green('delivered') : color.yellow(safeText(d.state))} (${safeText(outcome(d))}${d.last_error && d.last_status ? `: ${safeText(d.last_error)}` : ''})`);
  return d.state === 'delivered' ? 0 : 1;
}

const deliveriesFlags = flags({
  limit: { type: 'string', value: 'N', default: '50', description: 'the latest N deliveries (at most 1000)' },
  json: jsonFlag,
});

async function deliveries({ values, positionals }: Parsed<typeof deliveriesFlags>, address: string): Promise<number> {
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalid(`--limit "${values.limit}": expected a whole number from 1 to 1000`);
  const r = await withApi(address, (api) => api.listWebhookDeliveries({ name: positionals[0] ?? '', limit }));
  if (values.json) console.log(JSON.stringify(r.deliveries, null, 2));
  else console.log(table(['DELIVERY', 'EVENT', 'SUBJECT', 'STATE', 'TRIES', 'CODES', 'LAST', 'NEXT TRY', 'AT'], r.deliveries.map((d) => [
    safeText(d.id), safeText(d.kind), safeText(d.subject), d.state === 'delivered' ? color.green(d.state) : d.state === 'failed' ? color.red(d.state) : safeText(d.state),
    String(d.attempts), d.tries.map((a) => (a.status ? String(a.status) : '-')).join(','), safeText(outcome(d)), shown(d.next_at), shown(d.created_at),
  ])));
  return 0;
}

const nameArg = { name: 'NAME', description: 'the webhook\'s name (an admin may say PROJECT/NAME)' };

export const webhookVerbs = [
  group({ path: ['webhooks'], section: 'Schedules and events', summary: 'POST chosen events, signed, to a URL (run.failed, schedule.failed, agent.lost, ...)' }),
  verb({
    path: ['webhooks', 'create'], summary: 'a webhook: these kinds of events, POSTed to URL',
    args: [{ name: 'NAME', description: 'its name, unique in its project' }], flags: createFlags, run: create,
    examples: [
      'trainyard webhooks create alerts --project vision --url https://hooks.example.com/trainyard --events run.failed,run.succeeded,schedule.failed --secret @hook.secret',
      'trainyard webhooks create fleet --url https://hooks.slack.com/services/T/B/X --events agent.lost,agent.drained --format slack',
    ],
    details: 'Each event is delivered at least once, from an outbox written with the event: a scheduler that dies mid-delivery leaves it to another. Headers: X-Trainyard-Delivery (the same on every try: deduplicate on it), X-Trainyard-Event, X-Trainyard-Timestamp, and X-Trainyard-Signature: sha256=HMAC-SHA256(secret, "<timestamp>.<body>") in hex. A receiver answering other than 2xx (or not within the scheduler\'s --webhook-timeout-ms) is tried again after --webhook-backoff-ms, doubling up to 30 minutes, until --webhook-retry-minutes (default 24 h) after the event. Members manage their project\'s hooks; readers may not see them; fleet-wide hooks are admins\'.',
  }),
  verb({ path: ['webhooks', 'list'], summary: 'the hooks this token manages: URL, events, deliveries pending, delivered and failed', flags: { json: jsonFlag }, run: list, examples: ['trainyard webhooks list'] }),
  verb({ path: ['webhooks', 'delete'], summary: 'delete a hook (its pending deliveries and log go with it)', args: [nameArg], flags: { json: jsonFlag }, run: remove, examples: ['trainyard webhooks delete alerts'] }),
  verb({ path: ['webhooks', 'test'], summary: 'send a webhook.test delivery now and print the answer (exit 1 unless 2xx)', args: [nameArg], flags: { json: jsonFlag }, run: test, examples: ['trainyard webhooks test alerts'] }),
  verb({ path: ['webhooks', 'deliveries'], summary: 'the hook\'s latest deliveries: state, tries, each try\'s response code', args: [nameArg], flags: deliveriesFlags, run: deliveries, examples: ['trainyard webhooks deliveries alerts', 'trainyard webhooks deliveries alerts --json'] }),
];
