// The agent's Prometheus metrics, served on --metrics-listen (empty, the default: not served). Counters
// are counted where the work happens (attempt.ts: transfers, attempts); the gauges read the daemon's
// state at scrape time (agent.ts hands them a reader).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import type { Logger } from 'pino';

const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

export const Directions = ['download', 'upload'] as const;
export type Direction = (typeof Directions)[number];

export const agentMetrics = {
  transferBytes: new client.Counter({
    name: 'trainyard_agent_transfer_bytes_total', help: 'bytes moved between this agent and the bucket (packages, data, outputs), by direction',
    labelNames: ['direction'], registers: [registry],
  }),
  transferErrors: new client.Counter({
    name: 'trainyard_agent_transfer_errors_total', help: 'failed storage calls, by direction: each retried failure, and each transfer that failed for good',
    labelNames: ['direction'], registers: [registry],
  }),
  attempts: new client.Counter({ name: 'trainyard_agent_attempts_total', help: 'attempts this agent ran, by how they ended', labelNames: ['outcome'], registers: [registry] }),
};

// Every direction's series exists from the start, at 0: a counter that appears only with its first
// error reads as "no data" on a dashboard, and rate() or increase() over it misses that first error.
for (const direction of Directions) {
  agentMetrics.transferBytes.inc({ direction }, 0);
  agentMetrics.transferErrors.inc({ direction }, 0);
}

/** Counts what a transfer moved (bytesOf its result), or that it failed (unless the attempt was stopped). */
export async function countTransfer<T>(direction: Direction, work: Promise<T>, bytesOf: (r: T) => number, signal: AbortSignal): Promise<T> {
  try {
    const r = await work;
    agentMetrics.transferBytes.inc({ direction }, bytesOf(r));
    return r;
  } catch (err) {
    if (!signal.aborted) agentMetrics.transferErrors.inc({ direction });
    throw err;
  }
}

/** What the gauges read from the daemon, at each scrape. */
export interface AgentGauges { attemptsRunning(): number; gpus(): number; state(): string }

export interface MetricsServer { readonly address: string; close(): Promise<void> }

/** "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464" → host and port (the URL parser reads bracketed IPv6). */
function hostPort(listen: string): { host: string; port: number } {
  const port = /:(\d{1,5})$/.exec(listen)?.[1];
  const url = URL.canParse(`http://${listen}`) ? new URL(`http://${listen}`) : null;
  if (!url?.hostname || port === undefined || Number(port) > 65535) throw new Error(`--metrics-listen: expected HOST:PORT, got "${listen}"`);
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(port) };
}

/** Serves GET /metrics (anything else: 404). */
export async function serveMetrics(listen: string, gauges: AgentGauges, log: Logger): Promise<MetricsServer> {
  const { host, port } = hostPort(listen);
  const g = (name: string, help: string, read: () => number) => new client.Gauge({ name, help, registers: [], collect() { this.set(read()); } });
  const state = new client.Gauge({ name: 'trainyard_agent_state', help: 'the daemon\'s state: 1 for the current one', labelNames: ['state'], registers: [],
    collect() { this.reset(); this.set({ state: gauges.state() }, 1); } });
  const own = new client.Registry();
  for (const m of [g('trainyard_agent_attempts_running', 'attempts running on this agent now', gauges.attemptsRunning), g('trainyard_agent_gpus', 'GPUs this agent found (nvidia-smi)', gauges.gpus), state]) own.registerMetric(m);
  const all = client.Registry.merge([registry, own]);
  const server = http.createServer((req, res) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
      return;
    }
    all.metrics().then((text) => {
      res.writeHead(200, { 'content-type': all.contentType, 'content-length': Buffer.byteLength(text) }).end(text);
    }, (err: unknown) => {
      log.error({ err }, 'metrics failed');
      res.writeHead(500).end();
    });
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot serve metrics on ${listen}: ${err.message} (--metrics-listen, TRAINYARD_METRICS_LISTEN)`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
