// A webhook receiver for tests: a real HTTP server on loopback that records every POST (headers, body,
// whether its signature verifies against the secret it is given) and answers as the test says: 200, a
// status (500), or not at all until told (to catch a scheduler mid-delivery).
import http from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface Received {
  delivery: string; event: string; timestamp: string; signature: string; body: string; json: any; verified: boolean;
}

export class WebhookReceiver {
  readonly received: Received[] = [];
  /** 'hold': requests wait (unanswered) until release(). A number: answer with that status. */
  mode: 'hold' | number = 200;
  /** Answer these statuses first, one per request, then `mode` (a receiver that fails, then recovers). */
  script: number[] = [];
  #held: http.ServerResponse[] = [];
  #server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const h = (n: string) => String(req.headers[n] ?? '');
      const timestamp = h('x-trainyard-timestamp');
      const signature = h('x-trainyard-signature');
      const want = `sha256=${createHmac('sha256', this.secret).update(`${timestamp}.${body}`).digest('hex')}`;
      const verified = signature.length === want.length && timingSafeEqual(Buffer.from(signature), Buffer.from(want));
      let json: unknown = null;
      try { json = JSON.parse(body); } catch { /* recorded as is */ }
      this.received.push({ delivery: h('x-trainyard-delivery'), event: h('x-trainyard-event'), timestamp, signature, body, json, verified });
      const scripted = this.script.shift();
      if (scripted !== undefined) { res.writeHead(scripted).end(); return; }
      if (this.mode === 'hold') { this.#held.push(res); return; }
      res.writeHead(this.mode).end('ok');
    });
  });
  url = '';

  constructor(readonly secret: string) {}

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/hook`;
    return this;
  }

  /** Answers the held requests (their sender may be gone) and goes back to 200. */
  release(): void {
    this.mode = 200;
    for (const r of this.#held.splice(0)) r.writeHead(200).end();
  }

  get held(): number { return this.#held.length; }

  /** Each delivery id once, in the order first seen (what a receiver that deduplicates keeps). */
  unique(): Received[] {
    const seen = new Set<string>();
    return this.received.filter((r) => (seen.has(r.delivery) ? false : (seen.add(r.delivery), true)));
  }

  async stop(): Promise<void> {
    this.release();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
