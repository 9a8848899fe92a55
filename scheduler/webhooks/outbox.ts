// The webhook outbox (migrations/025): claim due deliveries, send each, record what came back. Every
// scheduler runs this loop; FOR UPDATE SKIP LOCKED gives each due row to one of them, and the claim moves
// the row's next_at past the time a try may take, so a scheduler that dies mid-try (kill -9) leaves the
// row due again for another once that lease ends: at least once, and once in the normal case.
// A failed try is retried after --webhook-backoff-ms, doubling, at most 30 minutes apart, until
// --webhook-retry-minutes after the event; then the delivery is `failed`. Every try is in webhook_attempts.
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { periodic } from '../periodic.js';
import type { AllowList } from './address-guard.js';
import { sendDelivery, type DeliveryToSend, type TryResult } from './send.js';

/** How often a scheduler looks for due deliveries. */
const POLL_MS = 500;
/** Claimed per pass (and sent at once). */
const BATCH = 20;
/** The longest wait between two tries. */
const MAX_BACKOFF_S = 30 * 60;
/** Beyond the try's own timeout, before its claim lapses and another scheduler may try. */
const LEASE_MARGIN_MS = 2_000;

export interface OutboxOptions { db: Db; log: Logger; allow: AllowList; timeoutMs: number; backoffMs: number; retryMinutes: number }

type Claimed = DeliveryToSend & { attempts: number };

/** Claims due deliveries (up to `limit`, or the one named `id`): each one's try number is its new `attempts`. */
export async function claimDeliveries(o: OutboxOptions, only?: { id: string }): Promise<Claimed[]> {
  const leaseMs = o.timeoutMs + LEASE_MARGIN_MS;
  const which = only ? sql`id = ${only.id}` : sql`next_at <= now()`;
  const { rows } = await sql<Claimed>`
    WITH due AS (
      SELECT id FROM webhook_deliveries WHERE state = 'pending' AND ${which}
      ORDER BY next_at LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
    UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_at = now() + make_interval(secs => ${leaseMs / 1000})
    FROM due, webhooks w WHERE d.id = due.id AND w.id = d.webhook_id
    RETURNING d.id, w.name AS webhook, w.url, w.secret, w.format, d.event_id, d.kind, d.project, d.subject, d.detail, d.data, d.event_at, d.attempts`.execute(o.db);
  return rows;
}

/**
 * One statement: the try's row in the log, and the delivery's new state, fenced by its try number (a try
 * that outlived its claim is logged but changes nothing: a later claim owns the row).
 */
export async function recordTry(o: OutboxOptions, d: Claimed, r: TryResult): Promise<string> {
  const ok = r.status !== null && r.status >= 200 && r.status < 300;
  const { rows } = await sql<{ state: string }>`
    WITH t AS (
      INSERT INTO webhook_attempts (delivery_id, attempt, status, error, duration_ms)
      SELECT id, ${d.attempts}, ${r.status}, ${r.error}, ${r.durationMs} FROM webhook_deliveries WHERE id = ${d.id}
      ON CONFLICT DO NOTHING)
    UPDATE webhook_deliveries SET
      state = CASE WHEN ${ok} THEN 'delivered'
                   WHEN now() >= created_at + make_interval(mins => ${o.retryMinutes}) THEN 'failed' ELSE 'pending' END,
      delivered_at = CASE WHEN ${ok} THEN now() END,
      next_at = CASE WHEN ${ok} THEN next_at
                     ELSE now() + make_interval(secs => least(${MAX_BACKOFF_S}, ${o.backoffMs / 1000} * power(2, least(attempts - 1, 30)))) END,
      last_status = ${r.status}, last_error = ${r.error}
    WHERE id = ${d.id} AND attempts = ${d.attempts} AND state = 'pending'
    RETURNING state`.execute(o.db);
  return rows[0]?.state ?? 'superseded';
}

/** Sends one claimed delivery and records the outcome; returns its state after. */
export async function tryDelivery(o: OutboxOptions, d: Claimed, signal?: AbortSignal): Promise<{ state: string; result: TryResult }> {
  const result = await sendDelivery(d, { allow: o.allow, timeoutMs: o.timeoutMs, signal });
  // Stopped mid-try: nothing is known of this try; the claim lapses and the row is tried again.
  if (signal?.aborted) return { state: 'pending', result };
  const state = await recordTry(o, d, result);
  o.log.info({ delivery: d.id, webhook: d.webhook, kind: d.kind, attempt: d.attempts, status: result.status, error: result.error || undefined, state }, 'webhook delivery');
  return { state, result };
}

/** The loop every scheduler runs; stop() waits for the pass in flight. */
export class WebhookOutbox {
  readonly #abort = new AbortController();
  #done: Promise<void> | null = null;

  constructor(private readonly o: OutboxOptions) {}

  start(): void {
    this.#done = periodic('webhook delivery', this.o.log, this.#abort.signal, () => POLL_MS, async () => {
      for (;;) {
        const claimed = await claimDeliveries(this.o);
        await Promise.all(claimed.map((d) => tryDelivery(this.o, d, this.#abort.signal)));
        if (claimed.length < BATCH || this.#abort.signal.aborted) return;
      }
    });
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}
