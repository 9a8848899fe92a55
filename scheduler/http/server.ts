// The scheduler's HTTP server (node:http, no framework): a small route table of "METHOD /path" → handler.
// Today it serves the probes (/healthz, /readyz; see health-routes.ts); a web console will add its routes
// to the same table. HEAD is answered by the GET route (node sends no body for HEAD).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>;
/** Keys are "GET /healthz": the method and the exact path (the query string is not part of it). */
export type Routes = Readonly<Record<string, RouteHandler>>;

export interface HttpServer {
  /** Where it listens, "host:port" (the real port when the setting asked for port 0). */
  readonly address: string;
  close(): Promise<void>;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** "127.0.0.1:8080", "[::1]:8080", ":8080" (every interface) → host and port. */
export function parseListen(listen: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen);
  if (!m || Number(m[3]) > 65535) throw new Error(`--http-listen: expected HOST:PORT, got "${listen}"`);
  return { host: m[1] ?? (m[2] || undefined), port: Number(m[3]) };
}

export async function startHttpServer(listen: string, routes: Routes, log: Logger): Promise<HttpServer> {
  const { host, port } = parseListen(listen);
  const paths = new Set(Object.keys(routes).map((k) => k.slice(k.indexOf(' ') + 1)));
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET';
    const route = routes[`${method} ${path}`];
    if (!route) {
      if (!paths.has(path)) return sendJson(res, 404, { error: `no route ${path}` });
      const allow = Object.keys(routes).filter((k) => k.endsWith(` ${path}`)).map((k) => k.split(' ')[0]).join(', ');
      res.setHeader('allow', allow);
      return sendJson(res, 405, { error: `${req.method} is not allowed on ${path}; allowed: ${allow}` });
    }
    route(req, res).catch((err: unknown) => {
      log.error({ err, path }, 'http request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  // Probes are short: a client that opened a connection and sent nothing is not kept for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => reject(new Error(`cannot serve HTTP on ${listen}: ${err.message} (set --http-listen or TRAINYARD_HTTP_LISTEN; empty serves no HTTP)`, { cause: err }));
    server.once('error', failed);
    server.listen(port, host, () => { server.off('error', failed); resolve(); });
  });
  const a = server.address() as AddressInfo;
  const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  return {
    address,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Keep-alive connections of probes would hold close() open until they time out.
      server.closeAllConnections();
    }),
  };
}
