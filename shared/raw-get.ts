// One HTTP GET whose body is read from the socket straight into memory the caller hands out and reuses
// (issue 21: a large object's ranges). Node's http module, and any socket read through 'data' events,
// allocate a fresh Buffer for every read the kernel gives (64 KiB): measured here, 1 GiB received that way
// cost 1.2-1.9 s of CPU (those allocations and the garbage collection of them), against 0.2-0.35 s read
// into reused memory with net's `onread`, which is curl's wall time. In the agent, a 1 GiB pull spent
// 1.4-1.7 s on its main thread and as much again on V8's collector threads.
//
// It speaks only what a presigned S3 GET needs: one request, `Connection: close`, a body of the
// Content-Length the response gives (no chunked encoding, which MinIO does not send for an object), over
// plain TCP or TLS. A status other than the ones expected becomes an error carrying the S3 error's Code
// (so `isPermanentStorageError` judges it as it judges minio-js's), its body read to a bound.
import net from 'node:net';
import tls from 'node:tls';

/** Where the body goes. */
export interface BodySink {
  /** Memory for the next read from the socket; the body's bytes come back to `body` as a view of it. */
  next(): Buffer;
  /** The response's status (an expected one) and headers, before any of its body; a throw ends the GET. */
  head?(status: number, headers: ReadonlyMap<string, string>): void;
  /**
   * The body's next bytes: a view of the memory `next` last gave, which the sink owns from here. A
   * promise holds the socket (nothing more is read) until it settles; a rejection or a throw ends the GET.
   */
  body(bytes: Buffer): void | Promise<void>;
}

export interface RawGetOptions {
  signal?: AbortSignal;
  /** Nothing read or sent for this long (while not held by the sink) fails the GET: a stalled connection is retried, not waited on. */
  idleMs?: number;
  /** Extra TLS options for an https URL (a test's CA); the system's CAs and NODE_EXTRA_CA_CERTS otherwise. */
  tls?: tls.ConnectionOptions;
}

/** A status the caller did not expect, with the S3 error's Code and Message when the body had them. */
export class HttpStatusError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'HttpStatusError';
  }
}

/** What of an error body is kept (an S3 error is a few hundred bytes). */
const ERROR_BODY_MAX = 16 * 1024;
/** What the response's head may be. */
const HEAD_MAX = 64 * 1024;
export const IDLE_MS = 60_000;
/**
 * The last TLS session of each server, to resume: per set of extra TLS options (a session resumed is not
 * verified again, so one made under other trust must not be used).
 */
const systemSessions = new Map<string, Buffer>();
const optionSessions = new WeakMap<tls.ConnectionOptions, Map<string, Buffer>>();
function sessionsFor(o: tls.ConnectionOptions | undefined): Map<string, Buffer> {
  if (!o) return systemSessions;
  let m = optionSessions.get(o);
  if (!m) optionSessions.set(o, (m = new Map()));
  return m;
}

/**
 * GETs `url` with `headers` (the URL is presigned: nothing here signs), expecting one of `expect`; the body
 * goes to `sink`. Resolves with the status and headers once the whole body (its Content-Length) is in.
 */
export function rawGet(url: string, headers: Record<string, string>, expect: readonly number[], sink: BodySink, o: RawGetOptions = {}): Promise<{ status: number; headers: Map<string, string> }> {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return Promise.reject(new Error(`rawGet: ${u.protocol} is not http or https`));
  const secure = u.protocol === 'https:';
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port ? Number(u.port) : secure ? 443 : 80;
  o.signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    let head: Buffer | null = Buffer.alloc(0); // the response's head as it comes in; null once parsed
    let status = 0;
    const resHeaders = new Map<string, string>();
    let length = -1; // the body's Content-Length
    let got = 0;
    let errBody: Buffer[] | null = null; // an unexpected status: its body, to a bound
    let errBytes = 0;
    let settled = false;
    let complete = false; // the whole body is in
    const pending = new Set<Promise<void>>(); // the sink's promises not settled yet: reading waits for them
    let current: Buffer | null = null; // what the read in progress goes into

    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      o.signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      if (err) reject(err);
      else resolve({ status, headers: resHeaders });
    };
    const onAbort = () => finish(o.signal!.reason instanceof Error ? o.signal!.reason : new Error(String(o.signal!.reason)));
    const failStatus = () => {
      const text = Buffer.concat(errBody ?? []).toString('utf8');
      const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? `HTTP${status}`;
      const msg = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? text.slice(0, 200);
      finish(new HttpStatusError(status, code, `GET ${u.pathname}: HTTP ${status} ${code}${msg ? `: ${msg}` : ''}`));
    };

    /** Takes in `b`, this read's bytes; false holds the socket. */
    const onRead = (b: Buffer): boolean => {
      if (settled) return false;
      let body = b;
      if (head) {
        const all: Buffer = head.length ? Buffer.concat([head, b]) : b;
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) {
          if (all.length > HEAD_MAX) { finish(new Error(`GET ${u.pathname}: a response head over ${HEAD_MAX} bytes`)); return false; }
          head = Buffer.from(all); // a copy: `b` is read into again
          return true;
        }
        const lines = all.subarray(0, end).toString('latin1').split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
        if (!m) { finish(new Error(`GET ${u.pathname}: not an HTTP response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`)); return false; }
        status = Number(m[1]);
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          if (i > 0) resHeaders.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
        }
        const cl = resHeaders.get('content-length');
        length = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : -1;
        // The body's first bytes, as a view of the memory read into (the head's bytes before it are the
        // sink's to reuse): all ends with b, so its last bytes are b's.
        const bodyLen = all.length - end - 4;
        body = b.subarray(b.length - bodyLen);
        head = null;
        if (!expect.includes(status)) errBody = [];
        else if (resHeaders.get('transfer-encoding') || length < 0) {
          finish(new Error(`GET ${u.pathname}: HTTP ${status} without a Content-Length`));
          return false;
        } else {
          try {
            sink.head?.(status, resHeaders);
          } catch (err) {
            finish(err as Error);
            return false;
          }
        }
      }
      if (errBody) {
        if (errBytes < ERROR_BODY_MAX) { errBody.push(Buffer.from(body.subarray(0, ERROR_BODY_MAX - errBytes))); errBytes += body.length; }
        // An S3 error is a few hundred bytes: a body past the bound is not one (a proxy that ignored the
        // Range and sends the whole object with a 200, say), and is not read to its end.
        if (errBytes >= ERROR_BODY_MAX || (length >= 0 && (got += body.length) >= length)) {
          failStatus();
          return false;
        }
        return true;
      }
      if (body.length === 0) {
        if (length !== 0) return true;
        finish(null);
        return false;
      }
      if (got + body.length > length) { finish(new Error(`GET ${u.pathname}: the server sent more than its Content-Length ${length}`)); return false; }
      got += body.length;
      let wait: void | Promise<void>;
      try {
        wait = sink.body(body);
      } catch (err) {
        finish(err as Error);
        return false;
      }
      if (got === length) {
        // All of it is in: from here only the sink's promises decide (a close, or the idle time passing
        // while it writes, is no longer a failure).
        complete = true;
        sock.setTimeout(0);
        // Done once every promise the sink gave has settled, not only this last one's.
        Promise.all([...pending, ...(wait ? [wait] : [])]).then(() => finish(null), (err: Error) => finish(err));
        return false;
      }
      if (wait) {
        // Held until every promise the sink gave settles: over TLS, records already decrypted are still
        // handed over after the socket is paused, and one may come with a promise of its own.
        if (pending.size === 0) sock.setTimeout(0);
        const w = wait;
        pending.add(w);
        w.then(() => {
          pending.delete(w);
          if (pending.size > 0 || settled || complete) return;
          sock.setTimeout(o.idleMs ?? IDLE_MS);
          sock.resume();
        }, (err: Error) => finish(err));
      }
      return pending.size === 0;
    };

    const onread = {
      // Called for each read: the memory it goes into, then what came.
      buffer: () => (current = sink.next()),
      callback: (n: number) => onRead(current!.subarray(0, n)),
    };
    const server = `${host}:${port}`;
    const sessions = sessionsFor(o.tls);
    const session = secure ? sessions.get(server) : undefined;
    const sock: net.Socket = secure
      ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ...(session ? { session } : {}), ...o.tls, onread } as tls.ConnectionOptions)
      : net.connect({ host, port, onread });
    // Each GET is a connection of its own; over TLS the next one resumes this one's session (no full
    // handshake per range).
    if (secure) sock.on('session', (s: Buffer) => { sessions.set(server, s); });
    sock.setNoDelay(true);
    sock.setTimeout(o.idleMs ?? IDLE_MS, () => { if (pending.size === 0 && !complete) finish(new Error(`GET ${u.pathname}: nothing received for ${(o.idleMs ?? IDLE_MS) / 1000} s`)); });
    sock.once(secure ? 'secureConnect' : 'connect', () => {
      const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, 'Connection: close', 'User-Agent: trainyard'];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      sock.write(lines.join('\r\n') + '\r\n\r\n');
    });
    // Once the whole body is in, only the sink's promises decide (a reset after the last byte is no failure).
    sock.on('error', (err) => { if (!complete) finish(err); });
    // A body cut short is a ShortBody (what came is good); an error body without a length ends with the
    // connection. ('end' is not relied on: with `onread` the socket is never read as a stream.)
    sock.on('close', () => {
      if (errBody) failStatus();
      else if (!complete) finish(new ShortBody(`GET ${u.pathname}: the connection closed after ${got} of ${length < 0 ? '?' : length} bytes of the body`));
    });
    o.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The connection ended before the body did: what came is good, the rest may be asked for again. */
export class ShortBody extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShortBody';
  }
}
