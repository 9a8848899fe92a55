// The scheduler's HTTP server (node:http, no framework): a small route table of "METHOD /path" → handler.
// It serves the probes (/healthz, /readyz; see health-routes.ts) from the start, and the web console (its
// static files and its JSON API, console-routes.ts) once the scheduler's services are up (mount).
// A path segment written `:name` matches any one segment and is handed to the handler as params.name.
// HEAD is answered by the GET route (node sends no body for HEAD).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

export type Params = Readonly<Record<string, string>>;
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse, params: Params) => Promise<void>;
/** Keys are "GET /healthz" or "GET /api/runs/:id": the method and the path (the query string is not part of it). */
export type Routes = Readonly<Record<string, RouteHandler>>;

export interface HttpServer {
  /** Where it listens, "host:port" (the real port when the setting asked for port 0). */
  readonly address: string;
  /** Adds routes to the table (the console's, once the scheduler is up). */
  mount(routes: Routes): void;
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

interface Route { method: string; pattern: string; segments: string[]; handler: RouteHandler }

/** The params if `path` matches the route's segments; null otherwise (or when a segment is not valid %-encoding). */
function match(route: Route, parts: string[]): Record<string, string> | null {
  if (route.segments.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (const [i, seg] of route.segments.entries()) {
    const part = parts[i]!;
    if (seg.startsWith(':')) {
      if (!part) return null;
      try { params[seg.slice(1)] = decodeURIComponent(part); } catch { return null; }
    } else if (seg !== part) return null;
  }
  return params;
}

export async function startHttpServer(listen: string, routes: Routes, log: Logger): Promise<HttpServer> {
  const { host, port } = parseListen(listen);
  const table: Route[] = [];
  const mount = (more: Routes) => {
    for (const [key, handler] of Object.entries(more)) {
      const [method, pattern] = key.split(' ') as [string, string];
      table.push({ method, pattern, segments: pattern.split('/'), handler });
    }
  };
  mount(routes);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET';
    const parts = path.split('/');
    const matching = table.map((r) => ({ r, params: match(r, parts) })).filter((m) => m.params !== null);
    const found = matching.find((m) => m.r.method === method);
    if (!found) {
      if (matching.length === 0) return sendJson(res, 404, { error: `no route ${path}` });
      const allow = [...new Set(matching.map((m) => m.r.method))].join(', ');
      res.setHeader('allow', allow);
      return sendJson(res, 405, { error: `${req.method} is not allowed on ${path}; allowed: ${allow}` });
    }
    found.r.handler(req, res, found.params!).catch((err: unknown) => {
      log.error({ err, path: found.r.pattern }, 'http request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  // Requests are short (the console's streams are responses, which these do not bound): a client that
  // opened a connection and sent nothing is not kept for long.
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
    mount,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Keep-alive connections of probes, and the console's open streams, would hold close() open.
      server.closeAllConnections();
    }),
  };
}
