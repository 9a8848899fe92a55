// The client side of the Trainyard service, promisified, with server errors turned back into TrainyardErrors.
import * as grpc from '@grpc/grpc-js';
import { loadProto, channelOptions, grpcTarget } from '../shared/proto.js';
import { cliChannelCredentials, tlsHint } from '../shared/tls.js';
import type { TrainyardClient } from '../shared/proto/gen/trainyard/v1/Trainyard.js';
import { ErrorCodes, TrainyardError, fromGrpcError } from '../shared/errors.js';
import { authInterceptor, bearer } from '../shared/call-auth.js';
import { cliToken } from './token.js';

/** A client whose every call carries `token` (default: the CLI's, from --token, TRAINYARD_TOKEN or the token file). */
function newClient(address: string, token?: string): TrainyardClient {
  const proto = loadProto();
  const headers = bearer(token ?? cliToken());
  return new proto.trainyard.v1.Trainyard(grpcTarget(address), cliChannelCredentials(), { ...channelOptions, interceptors: [authInterceptor(() => headers)] });
}

/** How long a command waits to reach the scheduler before it says it cannot. */
const CONNECT_TIMEOUT_MS = 10_000;

/** A client whose channel is connected, or a clear error naming the address after CONNECT_TIMEOUT_MS. */
export async function connectClient(address: string, token?: string): Promise<TrainyardClient> {
  const client = newClient(address, token);
  await new Promise<void>((resolve, reject) => {
    client.waitForReady(Date.now() + CONNECT_TIMEOUT_MS, (err) => {
      if (!err) return resolve();
      client.close();
      reject(new TrainyardError(ErrorCodes.Unavailable,
        `cannot reach the scheduler at ${address} within ${CONNECT_TIMEOUT_MS / 1000} s (is \`trainyard scheduler\` running there? set --scheduler or TRAINYARD_SCHEDULER${tlsHint()})`));
    });
  });
  return client;
}

type Cb<Res> = (err: grpc.ServiceError | null, res?: Res) => void;

/** Calls a unary method; waits for the scheduler to be ready for a few seconds rather than failing at once. */
export function unaryCall<Req, Res>(client: TrainyardClient, method: (req: Req, opts: grpc.CallOptions, cb: Cb<Res>) => unknown, req: Req, timeoutMs = 60_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, { deadline: Date.now() + timeoutMs, waitForReady: true } as grpc.CallOptions, (err: grpc.ServiceError | null, res?: Res) =>
      err ? reject(fromGrpcError(err)) : resolve(res as Res));
  });
}

/** Iterates a server stream, converting its error. */
export async function* streamOf<T>(stream: grpc.ClientReadableStream<T>): AsyncGenerator<T> {
  try {
    for await (const msg of stream) yield msg as T;
  } catch (err) {
    throw fromGrpcError(err);
  }
}

import type * as P from '../shared/proto.js';

/** The unary calls, typed one by one (grpc-js's overloads defeat inference through a generic reference). */
export class Api {
  readonly client: TrainyardClient;
  /**
   * Without waiting for the connection: calls then wait for it (waitForReady) up to their deadline.
   * `token`: what to call with (default: the CLI's token, see cli/token.ts).
   */
  constructor(address: string, o: { token?: string; client?: TrainyardClient } = {}) { this.client = o.client ?? newClient(address, o.token); }
  /** Connected, or a clear error within a few seconds: what the CLI uses. */
  static async connect(address: string): Promise<Api> { return new Api(address, { client: await connectClient(address) }); }
  #u<Req, Res>(m: unknown, req: Req, timeoutMs?: number): Promise<Res> {
    return unaryCall<Req, Res>(this.client, m as never, req, timeoutMs);
  }
  listPackageVersions = (req: P.ListPackageVersionsRequest) => this.#u<P.ListPackageVersionsRequest, P.ListPackageVersionsResponse__Output>(this.client.ListPackageVersions, req);
  packageLineage = (req: P.PackageLineageRequest) => this.#u<P.PackageLineageRequest, P.PackageLineageResponse__Output>(this.client.PackageLineage, req);
  listDatasets = () => this.#u<P.ListDatasetsRequest, P.ListDatasetsResponse__Output>(this.client.ListDatasets, {});
  submitRun = (req: P.SubmitRunRequest) => this.#u<P.SubmitRunRequest, P.Run__Output>(this.client.SubmitRun, req);
  submitRuns = (req: P.SubmitRunsRequest) => this.#u<P.SubmitRunsRequest, P.SubmitRunsResponse__Output>(this.client.SubmitRuns, req);
  getRun = (id: string) => this.#u<P.GetRunRequest, P.Run__Output>(this.client.GetRun, { id });
  getRunMetrics = (req: P.GetRunMetricsRequest) => this.#u<P.GetRunMetricsRequest, P.RunMetrics__Output>(this.client.GetRunMetrics, req);
  listRuns = (req: P.ListRunsRequest) => this.#u<P.ListRunsRequest, P.ListRunsResponse__Output>(this.client.ListRuns, req);
  killRun = (id: string) => this.#u<P.KillRunRequest, P.Run__Output>(this.client.KillRun, { id });
  listAgents = () => this.#u<P.ListAgentsRequest, P.ListAgentsResponse__Output>(this.client.ListAgents, {});
  drainAgent = (name: string) => this.#u<P.DrainAgentRequest, P.Agent__Output>(this.client.DrainAgent, { name });
  removeAgent = (name: string, force: boolean) => this.#u<P.RemoveAgentRequest, P.RemoveAgentResponse__Output>(this.client.RemoveAgent, { name, force });
  setProjectLimits = (req: P.ProjectLimits) => this.#u<P.ProjectLimits, P.Project__Output>(this.client.SetProjectLimits, req);
  listProjects = () => this.#u<P.ListProjectsRequest, P.ListProjectsResponse__Output>(this.client.ListProjects, {});
  createToken = (req: P.CreateTokenRequest) => this.#u<P.CreateTokenRequest, P.CreatedToken__Output>(this.client.CreateToken, req);
  listTokens = () => this.#u<P.ListTokensRequest, P.ListTokensResponse__Output>(this.client.ListTokens, {});
  revokeToken = (id: string) => this.#u<P.RevokeTokenRequest, P.TokenInfo__Output>(this.client.RevokeToken, { id });
  createJoinToken = (req: P.CreateJoinTokenRequest) => this.#u<P.CreateJoinTokenRequest, P.CreatedToken__Output>(this.client.CreateJoinToken, req);
  createSchedule = (req: P.CreateScheduleRequest) => this.#u<P.CreateScheduleRequest, P.Schedule__Output>(this.client.CreateSchedule, req);
  listSchedules = () => this.#u<P.ListSchedulesRequest, P.ListSchedulesResponse__Output>(this.client.ListSchedules, {});
  getSchedule = (name: string) => this.#u<P.ScheduleRef, P.Schedule__Output>(this.client.GetSchedule, { name });
  pauseSchedule = (name: string) => this.#u<P.ScheduleRef, P.Schedule__Output>(this.client.PauseSchedule, { name });
  resumeSchedule = (name: string) => this.#u<P.ScheduleRef, P.Schedule__Output>(this.client.ResumeSchedule, { name });
  deleteSchedule = (name: string) => this.#u<P.ScheduleRef, P.Schedule__Output>(this.client.DeleteSchedule, { name });
  runScheduleNow = (name: string) => this.#u<P.ScheduleRef, P.Run__Output>(this.client.RunScheduleNow, { name });
  createWebhook = (req: P.CreateWebhookRequest) => this.#u<P.CreateWebhookRequest, P.CreatedWebhook__Output>(this.client.CreateWebhook, req);
  listWebhooks = () => this.#u<P.ListWebhooksRequest, P.ListWebhooksResponse__Output>(this.client.ListWebhooks, {});
  deleteWebhook = (name: string) => this.#u<P.WebhookRef, P.Webhook__Output>(this.client.DeleteWebhook, { name });
  testWebhook = (name: string) => this.#u<P.WebhookRef, P.WebhookDelivery__Output>(this.client.TestWebhook, { name });
  projectUsage = (req: P.ProjectUsageRequest) => this.#u<P.ProjectUsageRequest, P.ProjectUsageResponse__Output>(this.client.ProjectUsage, req);
  listWebhookDeliveries = (req: P.ListWebhookDeliveriesRequest) => this.#u<P.ListWebhookDeliveriesRequest, P.ListWebhookDeliveriesResponse__Output>(this.client.ListWebhookDeliveries, req);
  listEvents = (req: P.ListEventsRequest) => this.#u<P.ListEventsRequest, P.ListEventsResponse__Output>(this.client.ListEvents, req);
  close(): void { this.client.close(); }
}

/** Connects (or says clearly why not), runs `fn`, and closes the channel however `fn` ends. */
export async function withApi<T>(address: string, fn: (api: Api) => Promise<T>): Promise<T> {
  const api = await Api.connect(address);
  try {
    return await fn(api);
  } finally {
    api.close();
  }
}
