// One try of one webhook delivery: the body (JSON, or Slack's {"text"}), its signature, one POST to the
// checked address. What came back is the caller's to record; this never throws for the receiver's sake.
//
// Headers a receiver reads:
//   X-Trainyard-Delivery   the delivery's id: the same on every try of it (deduplicate on it)
//   X-Trainyard-Event      the event's kind (run.failed, ...; webhook.test for `webhooks test`)
//   X-Trainyard-Timestamp  Unix seconds when this try was signed
//   X-Trainyard-Signature  sha256=HEX: HMAC-SHA256 with the hook's secret of "<timestamp>.<body>"
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { checkTarget, parseWebhookUrl, type AllowList } from './address-guard.js';
import { deadline } from '../../shared/deadline.js';

export interface DeliveryToSend {
  id: string; webhook: string; url: string; secret: string; format: string;
  event_id: string | null; kind: string; project: string | null; subject: string; detail: string; data: unknown; event_at: Date;
}

export interface TryResult {
  /** The response's HTTP status; null when there was none (refused address, connection error, timeout). */
  status: number | null;
  error: string;
  durationMs: number;
}

/** Response bodies are read (so the connection ends cleanly) but not kept past this. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export function deliveryBody(d: DeliveryToSend): string {
  const event = { id: d.event_id === null ? null : Number(d.event_id), at: d.event_at.toISOString(), kind: d.kind, project: d.project ?? '', subject: d.subject, detail: d.detail, data: d.data };
  if (d.format === 'slack') {
    const where = d.project ? ` (project ${d.project})` : '';
    return JSON.stringify({ text: `trainyard: ${d.kind} ${d.subject}${where}${d.detail ? `: ${d.detail}` : ''}` });
  }
  return JSON.stringify({ delivery_id: d.id, webhook: d.webhook, event });
}

export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export async function sendDelivery(d: DeliveryToSend, o: { allow: AllowList; timeoutMs: number; signal?: AbortSignal }): Promise<TryResult> {
  const started = Date.now();
  const done = (status: number | null, error: string): TryResult => ({ status, error, durationMs: Date.now() - started });
  let target;
  try {
    target = await checkTarget(parseWebhookUrl(d.url), o.allow);
  } catch (err) {
    return done(null, (err as Error).message);
  }
  const body = deliveryBody(d);
  const timestamp = String(Math.floor(Date.now() / 1000));
  // Connect to the address that was checked, whatever the name resolves to by now.
  const pinned: LookupFunction = (_host, opts, cb) => {
    if (opts.all) cb(null, [{ address: target.address, family: target.family }]);
    else cb(null, target.address, target.family);
  };
  const signal = deadline(o.timeoutMs, o.signal);
  const client = target.url.protocol === 'https:' ? https : http;
  return new Promise<TryResult>((resolve) => {
    const req = client.request(target.url, {
      method: 'POST', lookup: pinned, signal, agent: false,
      headers: {
        'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': 'trainyard-webhooks',
        'x-trainyard-delivery': d.id, 'x-trainyard-event': d.kind, 'x-trainyard-timestamp': timestamp,
        'x-trainyard-signature': signature(d.secret, timestamp, body),
      },
    }, (res) => {
      let read = 0;
      res.on('data', (c: Buffer) => { read += c.length; if (read > MAX_RESPONSE_BYTES) res.destroy(); });
      res.on('error', () => {});
      res.on('close', () => {
        const status = res.statusCode ?? null;
        resolve(done(status, status !== null && status >= 200 && status < 300 ? '' : `HTTP ${status}`));
      });
    });
    req.on('error', (err) => {
      const timedOut = signal.aborted && !o.signal?.aborted;
      resolve(done(null, timedOut ? `no answer within ${o.timeoutMs} ms` : String((err as NodeJS.ErrnoException).code ?? err.message)));
    });
    req.end(body);
  });
}
