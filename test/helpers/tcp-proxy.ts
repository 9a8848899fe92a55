// A TCP proxy in front of MinIO for transfer tests (issue 21): it counts the bytes each way and the most
// connections open at once (parallel transfers open several; a serial one reuses one keep-alive
// connection), and can cut one connection once the server has sent a given number of bytes through it —
// a dropped connection in the middle of an object.
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
  /** Cut the next connection through which the server has sent more than `bytes` (once). */
  dropAfter(bytes: number): void;
  /** Forget the counts (not the drop armed); maxOpen starts again from the connections open now. */
  reset(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let down = 0, up = 0, open = 0, maxOpen = 0, dropped = 0;
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
    const end = () => {
      if (closed) return;
      closed = true;
      open--;
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (c: Buffer) => { up += c.length; used.add(client); upstream.write(c); });
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
    dropAfter(bytes) { drop = bytes; },
    reset() { down = 0; up = 0; maxOpen = open; used = new Set(); },
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}
