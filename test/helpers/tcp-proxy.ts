// A TCP proxy in front of MinIO for transfer tests (issue 21): it counts the bytes each way and the most
// connections open at once (parallel transfers open several; a serial one reuses one keep-alive
// connection), and can cut one connection once the server has sent a given number of bytes through it —
// a dropped connection in the middle of an object. Started with tamperBodiesOver, it also changes one
// byte of every request body of at least that many bytes on its way to the server, and with rewritePost
// it rewrites every POST's body: requests altered in transit, which MinIO must refuse (the bodies are not
// signed; their checksums are, shared/storage.ts).
import net from 'node:net';

export interface TcpProxy {
  /** http://127.0.0.1:PORT, for createMinioClient. */
  readonly endpoint: string;
  /** Bytes the server sent to clients, and clients to the server, in all. */
  readonly down: number;
  readonly up: number;
  /** The most connections open at once. */
  readonly maxOpen: number;
  /**
   * Connections that carried a request since the last reset: a serial client reuses one keep-alive
   * connection, a parallel one opens several (idle ones kept from before do not count).
   */
  readonly used: number;
  /** Connections cut by dropAfter. */
  readonly dropped: number;
  /** Request bodies changed on the way (tamperBodiesOver, rewritePost). */
  readonly tampered: number;
  /** Cut the next connection through which the server has sent more than `bytes` (once). */
  dropAfter(bytes: number): void;
  /** Forget the counts (not the drop armed); maxOpen starts again from the connections open now. */
  reset(): void;
  close(): Promise<void>;
}

/**
 * Changes requests on their way up, following the requests of one keep-alive connection one after another
 * (HTTP/1.1, Content-Length framed, as minio-js sends them): the first body byte of each request with a
 * body of at least `over` bytes is flipped; a POST's whole body is given to `rewritePost` and replaced by
 * what it returns (its Content-Length set to match).
 */
function requestTamperer(o: { over?: number; rewritePost?: (body: string) => string }, onTamper: () => void): (c: Buffer) => Buffer {
  let head = Buffer.alloc(0);
  let body = 0; // body bytes of the current request still to pass
  let flip = false;
  let held: { head: string; parts: Buffer[] } | null = null; // a POST being gathered for rewritePost
  return (c) => {
    const out: Buffer[] = [];
    while (c.length > 0) {
      if (body > 0) {
        const take = c.subarray(0, Math.min(body, c.length));
        body -= take.length;
        c = c.subarray(take.length);
        if (held) {
          held.parts.push(take);
          if (body === 0) {
            const was = Buffer.concat(held.parts).toString('latin1');
            const now = Buffer.from(o.rewritePost!(was), 'latin1');
            if (now.toString('latin1') !== was) onTamper();
            out.push(Buffer.from(held.head.replace(/\r\ncontent-length:\s*\d+/i, `\r\nContent-Length: ${now.length}`) + '\r\n\r\n', 'latin1'), now);
            held = null;
          }
          continue;
        }
        if (flip) { const b = Buffer.from(take); b[0]! ^= 0xff; out.push(b); flip = false; onTamper(); } else out.push(take);
        continue;
      }
      head = Buffer.concat([head, c]);
      const at = head.indexOf('\r\n\r\n');
      if (at < 0) return Buffer.concat(out); // the head is not all here yet: held until it is
      const text = head.subarray(0, at).toString('latin1');
      c = head.subarray(at + 4);
      head = Buffer.alloc(0);
      body = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
      if (o.rewritePost && text.startsWith('POST ') && body > 0) { held = { head: text, parts: [] }; continue; }
      out.push(Buffer.from(`${text}\r\n\r\n`, 'latin1'));
      flip = o.over !== undefined && body >= o.over;
    }
    return Buffer.concat(out);
  };
}

export async function startTcpProxy(target: { host: string; port: number }, o: { tamperBodiesOver?: number; rewritePost?: (body: string) => string } = {}): Promise<TcpProxy> {
  let down = 0, up = 0, open = 0, maxOpen = 0, dropped = 0, tampered = 0;
  let drop: number | null = null;
  let used = new Set<net.Socket>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    open++;
    maxOpen = Math.max(maxOpen, open);
    let sent = 0;
    let closed = false;
    const tamper = o.tamperBodiesOver === undefined && !o.rewritePost ? null
      : requestTamperer({ ...(o.tamperBodiesOver !== undefined ? { over: o.tamperBodiesOver } : {}), ...(o.rewritePost ? { rewritePost: o.rewritePost } : {}) }, () => tampered++);
    const end = () => {
      if (closed) return;
      closed = true;
      open--;
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (c: Buffer) => { up += c.length; used.add(client); upstream.write(tamper ? tamper(c) : c); });
    upstream.on('data', (c: Buffer) => {
      sent += c.length;
      if (drop !== null && sent > drop) {
        drop = null;
        dropped++;
        // Forward half of this chunk, then cut both sides mid-body.
        const half = c.subarray(0, c.length >>> 1);
        down += half.length;
        upstream.pause();
        client.write(half, () => end());
        return;
      }
      down += c.length;
      client.write(c);
    });
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get down() { return down; },
    get up() { return up; },
    get maxOpen() { return maxOpen; },
    get used() { return used.size; },
    get dropped() { return dropped; },
    get tampered() { return tampered; },
    dropAfter(bytes) { drop = bytes; },
    reset() { down = 0; up = 0; maxOpen = open; used = new Set(); },
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}
