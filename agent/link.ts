// The agent's gRPC client for AgentLink, with the retry policy in one place: transient failures (the
// scheduler restarting, a network blip) are retried with backoff until the AbortSignal fires; anything
// else is the scheduler's answer and is returned to the caller as a TrainyardError.
import * as grpc from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadProto, channelOptions, grpcTarget } from '../shared/proto.js';
import type { AgentLinkClient } from '../shared/proto/gen/trainyard/v1/AgentLink.js';
import { fromGrpcError, isRetryableGrpc } from '../shared/errors.js';
import type {
  AppendLogsRequest, AppendLogsResponse__Output, FinishAttemptRequest, FinishAttemptResponse__Output, HeartbeatRequest,
  HeartbeatResponse__Output, RegisterRequest, RegisterResponse__Output, ReportStatusRequest, ReportStatusResponse__Output,
} from '../shared/proto.js';

type Unary<Req, Res> = (req: Req, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

export class Link {
  readonly client: AgentLinkClient;

  constructor(address: string) {
    const proto = loadProto();
    this.client = new proto.trainyard.v1.AgentLink(grpcTarget(address), grpc.credentials.createInsecure(), channelOptions);
  }

  once<Req, Res>(method: Unary<Req, Res>, req: Req, timeoutMs = 15_000): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.client, req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
    });
  }

  /** Calls until it gets an answer; only transient errors are retried. */
  async call<Req, Res>(method: Unary<Req, Res>, req: Req, signal: AbortSignal, onRetry?: (err: unknown) => void): Promise<Res> {
    for (let attempt = 0; ; attempt++) {
      signal.throwIfAborted();
      try {
        return await this.once(method, req);
      } catch (err) {
        if (!isRetryableGrpc(err)) throw fromGrpcError(err);
        onRetry?.(err);
        await sleep(Math.min(5000, 100 * 2 ** attempt) * (0.75 + Math.random() * 0.5), undefined, { signal });
      }
    }
  }

  // Typed entry points (grpc-js's overloads defeat inference through a generic method reference).
  register = (req: RegisterRequest, signal: AbortSignal, onRetry?: (err: unknown) => void) =>
    this.call<RegisterRequest, RegisterResponse__Output>(this.client.Register as never, req, signal, onRetry);
  heartbeat = (req: HeartbeatRequest) => this.once<HeartbeatRequest, HeartbeatResponse__Output>(this.client.Heartbeat as never, req, 5000);
  reportStatus = (req: ReportStatusRequest, signal: AbortSignal) =>
    this.call<ReportStatusRequest, ReportStatusResponse__Output>(this.client.ReportStatus as never, req, signal);
  appendLogs = (req: AppendLogsRequest) => this.once<AppendLogsRequest, AppendLogsResponse__Output>(this.client.AppendLogs as never, req);
  finishAttempt = (req: FinishAttemptRequest, signal: AbortSignal, onRetry?: (err: unknown) => void) =>
    this.call<FinishAttemptRequest, FinishAttemptResponse__Output>(this.client.FinishAttempt as never, req, signal, onRetry);

  close(): void { this.client.close(); }
}
