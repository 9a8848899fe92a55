// The agent's gRPC client for AgentLink, with the retry policy in one place: transient failures (the
// scheduler restarting, a network blip) are retried with backoff until the AbortSignal fires; anything
// else is the scheduler's answer and is returned to the caller as a TrainyardError.
import * as grpc from '@grpc/grpc-js';
import { loadProto, channelOptions, grpcTarget } from '../shared/proto.js';
import type { AgentLinkClient } from '../shared/proto/gen/trainyard/v1/AgentLink.js';
import { fromGrpcError, isRetryableGrpc } from '../shared/errors.js';
import { retry } from '../shared/retry.js';
import { AGENT_NAME_HEADER, authInterceptor, bearer } from '../shared/call-auth.js';
import type {
  AppendLogsRequest, AppendLogsResponse__Output, AppendMetricsRequest, ClaimAttemptRequest, Dispatch__Output, FinishAttemptRequest, FinishAttemptResponse__Output, HeartbeatRequest,
  HeartbeatResponse__Output, RegisterRequest, RegisterResponse__Output, RenewStorageRequest, ReportStatusRequest, ReportStatusResponse__Output,
  StorageCredentials__Output, PeekNextRunRequest, NextRun__Output,
} from '../shared/proto.js';

type Unary<Req, Res> = (req: Req, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

export class Link {
  readonly client: AgentLinkClient;
  /** What every call presents: the agent's name and its credential (or, before it has one, a join token). */
  #auth: Record<string, string> = {};

  constructor(address: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {
    const proto = loadProto();
    this.client = new proto.trainyard.v1.AgentLink(grpcTarget(address), credentials, { ...channelOptions, interceptors: [authInterceptor(() => this.#auth)] });
  }

  #hasCredential: () => void = () => {};
  /**
   * Resolves once calls present the agent's own credential. A doorbell can ring as soon as Register
   * commits, before its answer (the new credential) is here: a claim waits for it rather than be refused.
   */
  readonly #credentialReady = new Promise<void>((resolve) => { this.#hasCredential = resolve; });

  /**
   * Calls from now on present this agent name and secret: its credential, or (`joining`) a join token that
   * only Register accepts.
   */
  authenticateAs(name: string, secret: string, o: { joining?: boolean } = {}): void {
    this.#auth = { [AGENT_NAME_HEADER]: name, ...bearer(secret) };
    if (!o.joining) this.#hasCredential();
  }

  /** One call with a deadline; the signal cancels it in flight (a stopping agent does not wait 15 s). */
  once<Req, Res>(method: Unary<Req, Res>, req: Req, timeoutMs = 15_000, signal?: AbortSignal): Promise<Res> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => call.cancel();
      const call = method.call(this.client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err); else resolve(res as Res);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Calls until it gets an answer: transient failures (shared/errors.ts's table) are retried with backoff
   * until the signal fires, which throws the signal's reason; anything else is the scheduler's answer and
   * is thrown as a TrainyardError.
   */
  async call<Req, Res>(method: Unary<Req, Res>, req: Req, signal: AbortSignal, onRetry?: (err: unknown) => void): Promise<Res> {
    try {
      // A CANCELLED this agent did not cause (its signal is not aborted) is the scheduler's: a scheduler
      // shutting down cancels the calls still in flight after its grace. Retried, as the scheduler that
      // answers next may be another (taken as permanent, it turned a good run's success report into Failed).
      const retryable = (err: unknown) => isRetryableGrpc(err) || (!signal.aborted && (err as { code?: unknown } | null)?.code === grpc.status.CANCELLED);
      return await retry(() => this.once(method, req, 15_000, signal), {
        retries: Infinity, baseMs: 100, capMs: 5000, jitter: 0.25, signal, isRetryable: retryable,
        ...(onRetry ? { onRetry: (err: unknown) => onRetry(err) } : {}),
      });
    } catch (err) {
      if (signal.aborted) throw err;
      throw fromGrpcError(err);
    }
  }

  // Typed entry points (grpc-js's overloads defeat inference through a generic method reference).
  register = (req: RegisterRequest, signal: AbortSignal, onRetry?: (err: unknown) => void) =>
    this.call<RegisterRequest, RegisterResponse__Output>(this.client.Register as never, req, signal, onRetry);
  heartbeat = (req: HeartbeatRequest) => this.once<HeartbeatRequest, HeartbeatResponse__Output>(this.client.Heartbeat as never, req, 5000);
  reportStatus = (req: ReportStatusRequest, signal: AbortSignal) =>
    this.call<ReportStatusRequest, ReportStatusResponse__Output>(this.client.ReportStatus as never, req, signal);
  appendLogs = (req: AppendLogsRequest, signal?: AbortSignal) =>
    this.once<AppendLogsRequest, AppendLogsResponse__Output>(this.client.AppendLogs as never, req, 15_000, signal);
  appendMetrics = (req: AppendMetricsRequest, signal?: AbortSignal) =>
    this.once<AppendMetricsRequest, AppendLogsResponse__Output>(this.client.AppendMetrics as never, req, 15_000, signal);
  finishAttempt = (req: FinishAttemptRequest, signal: AbortSignal, onRetry?: (err: unknown) => void) =>
    this.call<FinishAttemptRequest, FinishAttemptResponse__Output>(this.client.FinishAttempt as never, req, signal, onRetry);

  renewStorage = (req: RenewStorageRequest, signal: AbortSignal) =>
    this.call<RenewStorageRequest, StorageCredentials__Output>(this.client.RenewStorage as never, req, signal);

  /** One try: a preparation is a guess, and is asked again on the next round rather than retried. */
  peekNextRun = (req: PeekNextRunRequest, signal: AbortSignal) =>
    this.once<PeekNextRunRequest, NextRun__Output>(this.client.PeekNextRun as never, req, 15_000, signal);

  claimAttempt = async (req: ClaimAttemptRequest, signal: AbortSignal) => {
    await Promise.race([this.#credentialReady, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    return this.call<ClaimAttemptRequest, Dispatch__Output>(this.client.ClaimAttempt as never, req, signal);
  };

  close(): void { this.client.close(); }
}
