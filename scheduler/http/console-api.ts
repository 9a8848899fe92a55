// The web console's JSON API, under /api/ on the scheduler's HTTP server. Each route is a thin adapter like
// the gRPC handlers (scheduler/grpc/client-service.ts): the caller is authenticated from the request's
// `authorization: Bearer tyt_…` header by the same function and the same token verifier as gRPC calls,
// then the policy (scheduler/auth/policy.ts) is asked exactly as the matching gRPC handler asks it, and one
// call goes into the same module (runs/read.ts, runs/logs.ts, runs/outputs.ts, packages/versions.ts, ...).
//
// No cookie is ever read, so a cross-site request carries no credential: there is nothing for CSRF to ride
// on. Streams (a run's changes, its log) are Server-Sent Events read by the page with fetch() (EventSource
// cannot send a header); each holds one of the token's stream slots, like gRPC streams, and ends (an
// `event: error` with the 401 body) when its token is revoked or expires.
import type http from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { SchedulerContext } from '../context.js';
import { sendJson, type Params, type RouteHandler, type Routes } from './server.js';
import { httpError } from './errors.js';
import { attachmentDisposition, outputContentType } from './content-types.js';
import { authenticateBearer } from '../auth/authenticate.js';
import type { TokenVerifier } from '../auth/tokens.js';
import type { StreamLimiter } from '../auth/streams.js';
import type { Principal } from '../auth/principal.js';
import { Actions, allowed, authorize, visibleProject } from '../auth/policy.js';
import { authorizeRun, getRun, listRuns, runChanges } from '../runs/read.js';
import { streamLogs } from '../runs/logs.js';
import { getRunMetrics } from '../runs/metrics-read.js';
import { compareRuns } from '../runs/compare.js';
import { listRunOutputs, openRunOutput } from '../runs/outputs.js';
import { killRun } from '../runs/kill.js';
import { listPackages } from '../packages/list.js';
import { listPackageVersions } from '../packages/versions.js';
import { packageLineage } from '../runs/lineage.js';
import { listDatasets } from '../datasets/list.js';
import { datasetFiles } from '../datasets/files.js';
import { listAgents } from '../agents/list.js';
import { drainAgent } from '../agents/drain.js';
import { listProjects } from '../projects.js';
import { projectUsage } from '../usage/project-usage.js';
import { listSchedules } from '../schedules/read.js';
import { listEvents } from '../events/read.js';
import { RunStatus } from '../../shared/run-states.js';
import { pipelines } from '../../shared/pipelines.js';
import { eventKindGroups, eventKinds } from '../../shared/event-kinds.js';
import { invalid } from '../../shared/errors.js';

export interface ConsoleAuth {
  /** The gRPC API's verifier: a revocation is seen by both at once. */
  readonly tokens: TokenVerifier;
  /** The gRPC API's stream cap: a token's console streams count with its gRPC ones. */
  readonly streams: StreamLimiter;
}

/** A log stream sends what it has after this long, or as soon as this many lines wait. */
const LOG_FLUSH_MS = 100;
const LOG_BATCH_LINES = 2000;
/** A comment line on an idle stream, so a proxy or the page sees that the connection lives. */
const STREAM_HEARTBEAT_MS = 15_000;

type Call = { caller: Principal; params: Params; query: URLSearchParams; signal: AbortSignal };

/** An AbortSignal that fires when the client goes away before the response is complete. */
function clientGone(res: http.ServerResponse): AbortSignal {
  const ac = new AbortController();
  res.on('close', () => { if (!res.writableFinished) ac.abort(); });
  return ac.signal;
}

/** Answers a refusal (a TrainyardError) with its status; anything else is rethrown (the server logs a 500). */
function refuse(res: http.ServerResponse, err: unknown): void {
  const e = httpError(err);
  if (!e) throw err;
  sendJson(res, e.status, e.body);
}

async function authenticated(auth: ConsoleAuth, req: http.IncomingMessage, res: http.ServerResponse, params: Params): Promise<Call> {
  const caller = await authenticateBearer(auth.tokens, req.headers.authorization);
  const query = new URL(req.url ?? '/', 'http://console').searchParams;
  return { caller, params, query, signal: clientGone(res) };
}

function json(auth: ConsoleAuth, fn: (c: Call) => Promise<unknown>): RouteHandler {
  return async (req, res, params) => {
    try {
      sendJson(res, 200, await fn(await authenticated(auth, req, res, params)));
    } catch (err) {
      refuse(res, err);
    }
  };
}

type Send = (event: string, data: unknown, id?: string) => Promise<void>;

/**
 * A Server-Sent Events stream: `check` authorizes (a refusal is a plain JSON answer with its status), then
 * the headers go out and `produce` sends events until it returns (then `event: end`) or the client leaves.
 * An error after the headers is sent as `event: error` with the refusal's body.
 */
function stream(auth: ConsoleAuth, ctx: SchedulerContext, check: (c: Call) => Promise<void>, produce: (c: Call, send: Send) => Promise<void>): RouteHandler {
  return async (req, res, params) => {
    let release = () => {};
    let heartbeat: NodeJS.Timeout | undefined;
    let call: Call | undefined;
    // The token died while the stream was open (auth/streams.ts): `event: error` with the 401 body, the
    // response ends, and the producer is stopped (what it then returns or throws is not sent).
    const dead = new AbortController();
    const end = (err: unknown) => {
      if (dead.signal.aborted) return;
      dead.abort();
      clearInterval(heartbeat);
      if (!res.headersSent) { refuse(res, err); return; }
      res.end(`event: error\ndata: ${JSON.stringify(httpError(err)?.body ?? {})}\n\n`);
    };
    try {
      call = await authenticated(auth, req, res, params);
      call = { ...call, signal: AbortSignal.any([call.signal, dead.signal]) };
      release = auth.streams.acquire(call.caller, end);
      await check(call);
      if (dead.signal.aborted) return;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
      res.write(': open\n\n');
      heartbeat = setInterval(() => res.write(': heartbeat\n\n'), STREAM_HEARTBEAT_MS);
      const signal = call.signal;
      const send: Send = async (event, data, id) => {
        if (signal.aborted) throw new Error('client went away');
        const ok = res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        if (!ok) await new Promise<void>((resolve) => { res.once('drain', resolve); signal.addEventListener('abort', () => resolve(), { once: true }); });
      };
      await produce(call, send);
      if (signal.aborted) return;
      res.end('event: end\ndata: {}\n\n');
    } catch (err) {
      if (call?.signal.aborted) return;
      if (!res.headersSent) return refuse(res, err);
      const e = httpError(err);
      if (!e) ctx.log.error({ err, path: req.url?.split('?')[0] }, 'console stream failed');
      res.end(`event: error\ndata: ${JSON.stringify(e?.body ?? { error: 'internal error' })}\n\n`);
    } finally {
      clearInterval(heartbeat);
      release();
    }
  };
}

/** "A:S" (the last line the page has: attempt A, line S), or nothing for the start. */
function parseAfter(v: string | null): { afterAttempt: number; afterSeq: number } {
  if (!v) return { afterAttempt: 0, afterSeq: 0 };
  const m = /^(\d{1,9}):(\d{1,15})$/.exec(v);
  if (!m) throw invalid(`after must be ATTEMPT:SEQ, got "${v}"`);
  return { afterAttempt: Number(m[1]), afterSeq: Number(m[2]) };
}

/** A list filter on a project: a token's own project (or any, for an admin); another is refused as gRPC refuses it. */
function projectFilter(caller: Principal, action: Parameters<typeof authorize>[1], asked: string | null): string | null {
  if (!asked) return visibleProject(caller);
  authorize(caller, action, asked);
  return asked;
}

export function consoleApiRoutes(ctx: SchedulerContext, auth: ConsoleAuth): Routes {
  const param = (c: Call, name: string) => c.params[name] ?? '';
  return {
    'GET /api/me': json(auth, async ({ caller }) => ({
      ...(caller.kind === 'user' ? { token_id: caller.tokenId, role: caller.role, project: caller.project } : {}),
      statuses: Object.values(RunStatus), pipelines, event_kinds: [...eventKindGroups, ...eventKinds],
    })),

    'GET /api/runs': json(auth, async ({ caller, query }) => ({
      runs: await listRuns(ctx, {
        status: query.get('status') ?? '', limit: Number(query.get('limit') ?? 0) || 0, schedule: query.get('schedule') ?? '',
        package: query.get('package') ?? '', pipeline: query.get('pipeline') ?? '',
        project: projectFilter(caller, Actions.ReadRun, query.get('project')),
      }),
    })),
    'GET /api/runs/:id': json(auth, async (c) => {
      await authorizeRun(ctx, c.caller, param(c, 'id'), Actions.ReadRun);
      const run = await getRun(ctx, param(c, 'id'));
      return { run, can_kill: allowed(c.caller, Actions.KillRun, run.project ?? '') };
    }),
    'POST /api/runs/:id/kill': json(auth, async (c) => {
      await authorizeRun(ctx, c.caller, param(c, 'id'), Actions.KillRun);
      await killRun(ctx, param(c, 'id'));
      return { run: await getRun(ctx, param(c, 'id')) };
    }),
    'GET /api/runs/:id/watch': stream(auth, ctx,
      (c) => authorizeRun(ctx, c.caller, param(c, 'id'), Actions.ReadRun),
      async (c, send) => { for await (const run of runChanges(ctx, param(c, 'id'), c.signal)) await send('run', run); }),
    'GET /api/runs/:id/logs': stream(auth, ctx,
      async (c) => { parseAfter(c.query.get('after')); await authorizeRun(ctx, c.caller, param(c, 'id'), Actions.ReadRun); },
      async (c, send) => {
        // Lines go out in batches (one event per LOG_FLUSH_MS or LOG_BATCH_LINES), as compact arrays
        // [attempt, seq, stream, text, at]; the event id is the last line's "attempt:seq", to resume after.
        let batch: [number, number, string, string, string][] = [];
        let timer: NodeJS.Timeout | undefined;
        const flush = async () => {
          clearTimeout(timer);
          timer = undefined;
          if (!batch.length) return;
          const lines = batch;
          batch = [];
          const last = lines.at(-1)!;
          await send('lines', { lines }, `${last[0]}:${last[1]}`);
        };
        const o = { runId: param(c, 'id'), follow: c.query.get('follow') !== '0', ...parseAfter(c.query.get('after')) };
        try {
          for await (const l of streamLogs(ctx, o, c.signal)) {
            batch.push([l.attempt ?? 0, Number(l.seq ?? 0), l.stream ?? '', l.text ?? '', l.at ?? '']);
            if (batch.length >= LOG_BATCH_LINES) await flush();
            else timer ??= setTimeout(() => void flush().catch(() => {}), LOG_FLUSH_MS);
          }
          await flush();
        } finally {
          clearTimeout(timer);
        }
      }),
    // The run's metrics for its charts, downsampled per name to max_points (default 2,000) on the server.
    'GET /api/runs/:id/metrics': json(auth, async (c) => {
      await authorizeRun(ctx, c.caller, param(c, 'id'), Actions.ReadRun);
      const max = c.query.get('max_points');
      return getRunMetrics(ctx, { run_id: param(c, 'id'), names: c.query.getAll('name'), max_points: max === null ? 2000 : Number(max), after: [] });
    }),
    // What differs from run `against` to this one (the console's Compare page; `run diff` shows the same).
    'GET /api/runs/:id/diff': json(auth, async (c) => {
      const against = c.query.get('against') ?? '';
      if (!against) throw invalid('give the run to compare with: ?against=RUN');
      await authorizeRun(ctx, c.caller, param(c, 'id'), Actions.ReadRun);
      await authorizeRun(ctx, c.caller, against, Actions.ReadRun);
      return compareRuns(ctx, against, param(c, 'id'));
    }),
    'GET /api/runs/:id/files': json(auth, async (c) => {
      await authorizeRun(ctx, c.caller, param(c, 'id'), Actions.ReadRun);
      return listRunOutputs(ctx, param(c, 'id'), c.signal);
    }),
    // One output file, streamed through the scheduler: the browser never gets storage keys or a presigned
    // URL. Sandboxed by CSP, never sniffed, inline only for the types content-types.ts lets be previewed.
    'GET /api/runs/:id/file': async (req, res, params) => {
      let release = () => {};
      try {
        const c = await authenticated(auth, req, res, params);
        await authorizeRun(ctx, c.caller, param(c, 'id'), Actions.ReadRun);
        // A download lives no longer than its token: cut off mid-body (the length is then short).
        release = auth.streams.acquire(c.caller, () => res.destroy());
        const rel = c.query.get('path') ?? '';
        const file = await openRunOutput(ctx, param(c, 'id'), rel, c.signal);
        const { type, inline } = outputContentType(rel);
        res.writeHead(200, {
          'content-type': type, 'content-length': file.size,
          'content-disposition': inline && c.query.get('download') !== '1' ? 'inline' : attachmentDisposition(rel),
          'content-security-policy': "sandbox; default-src 'none'", 'x-content-type-options': 'nosniff', 'cache-control': 'private, no-store',
        });
        await pipeline(file.body, res).catch(() => { res.destroy(); });
      } catch (err) {
        refuse(res, err);
      } finally {
        release();
      }
    },

    'GET /api/packages': json(auth, async ({ caller }) => ({ packages: await listPackages(ctx, visibleProject(caller)) })),
    'GET /api/packages/:name/versions': json(auth, async (c) => ({ versions: await listPackageVersions(ctx, param(c, 'name'), c.caller) })),
    'GET /api/packages/:name/lineage': json(auth, async (c) => packageLineage(ctx, { name: param(c, 'name'), version: c.query.get('version') ?? '' }, c.caller)),

    'GET /api/datasets': json(auth, async ({ caller }) => ({ datasets: await listDatasets(ctx, visibleProject(caller)) })),
    'GET /api/datasets/:name/files': json(auth, async (c) => ({ files: await datasetFiles(ctx, param(c, 'name'), c.caller, c.signal) })),

    'GET /api/agents': json(auth, async ({ caller }) => {
      authorize(caller, Actions.Admin);
      return { agents: await listAgents(ctx) };
    }),
    'POST /api/agents/:name/drain': json(auth, async (c) => {
      authorize(c.caller, Actions.Admin);
      return { agent: await drainAgent(ctx, param(c, 'name')) };
    }),

    'GET /api/projects': json(auth, async ({ caller }) => {
      const only = visibleProject(caller);
      return { projects: (await listProjects(ctx)).filter((p) => only === null || p.name === only) };
    }),
    // The Usage page: the same figures as `trainyard projects usage`, asked of the policy the same way.
    'GET /api/usage': json(auth, async ({ caller, query }) => projectUsage(ctx, caller, {
      since: query.get('since') ?? '', project: query.get('project') ?? '', bucket_hours: Number(query.get('bucket_hours') ?? 0) || 0,
    })),
    'GET /api/schedules': json(auth, async ({ caller }) => ({ schedules: await listSchedules(ctx, caller) })),
    'GET /api/events': json(auth, async ({ caller, query }) => ({
      events: await listEvents(ctx, caller, {
        project: query.get('project') ?? '', kind: query.get('kind') ?? '', since: query.get('since') ?? '', limit: Number(query.get('limit') ?? 0) || 0,
      }),
    })),
  };
}
