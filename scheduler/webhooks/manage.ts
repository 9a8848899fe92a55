// Webhooks as users manage them: create (every check before the row exists), list, delete, test, and the
// delivery log. Who may: a project's members its hooks; admins every hook, and fleet-wide ones (no project,
// every project's events and agent.*). A hook of a project the caller may not manage is answered as a
// missing one (NOT_FOUND), and no answer ever holds a secret but create's, once.
import { randomBytes } from 'node:crypto';
import { customAlphabet } from 'nanoid';
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type {
  CreateWebhookRequest__Output, CreatedWebhook, ListWebhookDeliveriesRequest__Output, Webhook, WebhookDelivery,
} from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, invalid, notFound } from '../../shared/errors.js';
import { checkName } from '../../shared/names.js';
import { eventKinds } from '../../shared/event-kinds.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorize, authorizeObject, visibleProject } from '../auth/policy.js';
import { AllowList, checkTarget, parseWebhookUrl } from './address-guard.js';
import { claimDeliveries, tryDelivery, type OutboxOptions } from './outbox.js';

const newId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 14);
export const WebhookFormats = ['json', 'slack'] as const;
/** Kinds only a fleet-wide hook may ask for: fleet events have no project. */
const fleetOnly = (kind: string) => kind.startsWith('agent.');
const DELIVERIES_DEFAULT = 50;
const DELIVERIES_MAX = 1000;
/** The kind of a `webhooks test` delivery: not an event (no event has it), so no hook asks for it. */
export const TEST_KIND = 'webhook.test';

export function outboxOptions(ctx: SchedulerContext): OutboxOptions {
  const s = ctx.settings;
  return { db: ctx.db, log: ctx.log, allow: new AllowList(s.webhookAllowHosts), timeoutMs: s.webhookTimeoutMs, backoffMs: s.webhookBackoffMs, retryMinutes: s.webhookRetryMinutes };
}

interface WebhookRow { id: string; name: string; project: string | null; url: string; events: string[]; format: string; created_at: Date; created_by: string; pending?: string; delivered?: string; failed?: string }

function toProto(w: WebhookRow): Webhook {
  return {
    id: w.id, name: w.name, project: w.project ?? '', url: w.url, events: w.events, format: w.format, created_at: w.created_at.toISOString(), created_by: w.created_by,
    pending: Number(w.pending ?? 0), delivered: Number(w.delivered ?? 0), failed: Number(w.failed ?? 0),
  };
}

const COLUMNS = sql`w.id, w.name, w.project, w.url, w.events, w.format, w.created_at, w.created_by,
  (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'pending') AS pending,
  (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'delivered') AS delivered,
  (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'failed') AS failed`;

export async function createWebhook(ctx: SchedulerContext, req: CreateWebhookRequest__Output, caller: Principal): Promise<CreatedWebhook> {
  const name = checkName('webhook', req.name);
  // No --project: a member's hook is its project's; an admin's is fleet-wide.
  const project = req.project ? checkName('project', req.project) : caller.kind === 'user' && caller.role !== 'admin' ? caller.project : null;
  if (project === null) authorize(caller, Actions.Admin);
  else authorize(caller, Actions.ManageWebhooks, project);
  const events = [...new Set(req.events.flatMap((e) => e.split(',')).map((e) => e.trim()).filter(Boolean))];
  if (events.length === 0) throw invalid(`--events: name at least one event kind (${eventKinds.join(', ')})`);
  for (const e of events) {
    if (!(eventKinds as readonly string[]).includes(e)) throw invalid(`--events: "${e}" is not an event kind; expected some of ${eventKinds.join(', ')}`);
    if (project !== null && fleetOnly(e)) throw invalid(`--events: ${e} is a fleet event (no project has it): only an admin's fleet-wide hook (no --project) may get it`);
  }
  const format = req.format || 'json';
  if (!(WebhookFormats as readonly string[]).includes(format)) throw invalid(`--format "${format}": expected ${WebhookFormats.join(' or ')}`);
  const url = parseWebhookUrl(req.url);
  await checkTarget(url, new AllowList(ctx.settings.webhookAllowHosts));
  if (req.secret && req.secret.length < 16) throw invalid('--secret: at least 16 characters (or leave it out and one is made)');
  const secret = req.secret || randomBytes(32).toString('hex');
  const who = caller.kind === 'user' ? caller.tokenId : '';
  const { rows: [row] } = await sql<WebhookRow>`
    INSERT INTO webhooks AS w (id, name, project, url, events, format, secret, created_by)
    VALUES (${`whk_${newId()}`}, ${name}, ${project}, ${url.toString()}, ${events}::text[], ${format}, ${secret}, ${who})
    ON CONFLICT (COALESCE(project, ''), name) DO NOTHING
    RETURNING w.id, w.name, w.project, w.url, w.events, w.format, w.created_at, w.created_by`.execute(ctx.db);
  if (!row) throw new TrainyardError(ErrorCodes.AlreadyExists, `webhook "${name}" already exists ${project === null ? 'among fleet-wide hooks' : `in project "${project}"`}; pick another name or delete it first`);
  ctx.log.info({ webhook: row.id, name, project, events, by: who }, 'webhook created');
  return { webhook: toProto(row), secret };
}

/**
 * The hook named `name` that the caller may manage (NOT_FOUND, the same for a missing hook as for another
 * project's). A member names its project's; an admin names any, as PROJECT/NAME when several share it
 * (a fleet-wide hook by its bare name).
 */
async function authorizedWebhook(ctx: SchedulerContext, caller: Principal, name: string): Promise<WebhookRow> {
  const missing = () => notFound(`webhook "${name}" not found`);
  const slash = name.indexOf('/');
  const only = visibleProject(caller);
  const [project, bare] = slash >= 0 ? [name.slice(0, slash), name.slice(slash + 1)] : [only, name];
  const { rows } = await sql<WebhookRow>`SELECT ${COLUMNS} FROM webhooks w
    WHERE w.name = ${bare} AND (${project}::text IS NULL OR w.project = ${project}) ORDER BY w.project NULLS FIRST LIMIT 2`.execute(ctx.db);
  if (rows.length > 1 && rows[0]!.project !== null) throw invalid(`webhook "${bare}" exists in several projects (${rows.map((r) => r.project).join(', ')}, ...): name it as PROJECT/${bare}`);
  const w = rows[0];
  if (!w) throw missing();
  if (w.project === null) {
    if (only !== null) throw missing();
    authorize(caller, Actions.Admin);
  } else {
    authorizeObject(caller, Actions.ManageWebhooks, w.project, missing);
  }
  return w;
}

export async function listWebhooks(ctx: SchedulerContext, caller: Principal): Promise<Webhook[]> {
  const only = visibleProject(caller);
  if (only !== null) authorize(caller, Actions.ManageWebhooks, only);
  const { rows } = await sql<WebhookRow>`SELECT ${COLUMNS} FROM webhooks w
    WHERE ${only}::text IS NULL OR w.project = ${only} ORDER BY w.project NULLS FIRST, w.name`.execute(ctx.db);
  return rows.map(toProto);
}

export async function deleteWebhook(ctx: SchedulerContext, caller: Principal, name: string): Promise<Webhook> {
  const w = await authorizedWebhook(ctx, caller, name);
  await sql`DELETE FROM webhooks WHERE id = ${w.id}`.execute(ctx.db);
  ctx.log.info({ webhook: w.id, name: w.name, project: w.project, by: caller.kind === 'user' ? caller.tokenId : '' }, 'webhook deleted');
  return toProto(w);
}

interface DeliveryRow {
  id: string; event_id: string | null; kind: string; subject: string; state: string; attempts: number; next_at: Date; created_at: Date;
  delivered_at: Date | null; last_status: number | null; last_error: string;
  tries: { attempt: number; at: string; status: number | null; error: string; duration_ms: number }[];
}

async function deliveries(ctx: SchedulerContext, w: WebhookRow, where: ReturnType<typeof sql>, limit: number): Promise<WebhookDelivery[]> {
  const { rows } = await sql<DeliveryRow>`
    SELECT d.id, d.event_id, d.kind, d.subject, d.state, d.attempts, d.next_at, d.created_at, d.delivered_at, d.last_status, d.last_error,
      COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'at', a.at, 'status', a.status, 'error', a.error, 'duration_ms', a.duration_ms) ORDER BY a.attempt)
                FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]'::jsonb) AS tries
    FROM webhook_deliveries d WHERE d.webhook_id = ${w.id} AND ${where} ORDER BY d.created_at DESC, d.id LIMIT ${limit}`.execute(ctx.db);
  return rows.map((d) => ({
    id: d.id, webhook: w.name, event_id: Number(d.event_id ?? 0), kind: d.kind, subject: d.subject, state: d.state, attempts: d.attempts,
    next_at: d.state === 'pending' ? d.next_at.toISOString() : '', created_at: d.created_at.toISOString(), delivered_at: d.delivered_at?.toISOString() ?? '',
    last_status: d.last_status ?? 0, last_error: d.last_error,
    tries: d.tries.map((a) => ({ attempt: a.attempt, at: new Date(a.at).toISOString(), status: a.status ?? 0, error: a.error, duration_ms: a.duration_ms })),
  }));
}

export async function listWebhookDeliveries(ctx: SchedulerContext, caller: Principal, req: ListWebhookDeliveriesRequest__Output): Promise<WebhookDelivery[]> {
  if (!Number.isInteger(req.limit) || req.limit < 0 || req.limit > DELIVERIES_MAX) throw invalid(`limit must be 0 (${DELIVERIES_DEFAULT}) to ${DELIVERIES_MAX}, got ${req.limit}`);
  const w = await authorizedWebhook(ctx, caller, req.name);
  return deliveries(ctx, w, sql`true`, req.limit || DELIVERIES_DEFAULT);
}

/** A webhook.test delivery, tried at once by this scheduler; a failed one stays pending and is retried like any other. */
export async function testWebhook(ctx: SchedulerContext, caller: Principal, name: string): Promise<WebhookDelivery> {
  const w = await authorizedWebhook(ctx, caller, name);
  const who = caller.kind === 'user' ? caller.tokenId : '';
  const { rows: [made] } = await sql<{ id: string }>`
    INSERT INTO webhook_deliveries (webhook_id, kind, project, subject, detail, data)
    VALUES (${w.id}, ${TEST_KIND}, ${w.project}, ${w.name}, 'a test from trainyard webhooks test', ${JSON.stringify({ by: who })}::jsonb) RETURNING id`.execute(ctx.db);
  const o = outboxOptions(ctx);
  const [claimed] = await claimDeliveries(o, { id: made!.id });
  if (claimed) await tryDelivery(o, claimed);
  const [d] = await deliveries(ctx, w, sql`d.id = ${made!.id}`, 1);
  return d!;
}
