// An HTTP proxy to MinIO that holds the requests a test picks (a slow link made total) and sends them on
// when let go: gpu-free.test.ts holds every write, prepare-next.test.ts one dataset's reads.
import http from 'node:http';
import type net from 'node:net';

export interface HoldingStore {
  /** The proxy's address, for an agent's TRAINYARD_MINIO_ENDPOINT. */
  readonly endpoint: string;
  /** Holds the requests `which` picks from now on (default: every write, PUT or POST). */
  hold(which?: (req: http.IncomingMessage) => boolean): void;
  /** Requests held now. */
  readonly held: number;
  /** Sends every held request on, and holds nothing more. */
  letGo(): void;
}

const writes = (req: http.IncomingMessage) => req.method === 'PUT' || req.method === 'POST';

export async function holdingStore(t: { teardown(fn: () => void): void }, target: string): Promise<HoldingStore> {
  const up = new URL(target);
  let holding: ((req: http.IncomingMessage) => boolean) | null = null;
  let held: (() => void)[] = [];
  const server = http.createServer((req, res) => {
    const forward = () => {
      const out = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      out.on('error', () => res.destroy());
      req.pipe(out);
    };
    if (holding?.(req)) held.push(forward);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    hold: (which = writes) => { holding = which; },
    get held() { return held.length; },
    letGo: () => { holding = null; const h = held; held = []; for (const f of h) f(); },
  };
}
