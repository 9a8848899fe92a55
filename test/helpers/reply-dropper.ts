// A gRPC proxy for AgentLink that loses replies (issue 20): agents call it as their scheduler; it forwards
// every call to the real scheduler(s) and, for the methods and moments a test chooses, throws the answer
// away after the scheduler has committed and sends the agent UNAVAILABLE instead — the reply lost on the
// way back (a reset connection, a deadline passed), which no agent can tell from a call that never landed.
// Used by test/faults/handshakes.test.ts and the soak (bench/soak.ts).
import * as grpc from '@grpc/grpc-js';
import { channelOptions, grpcTarget, loadProto } from '../../shared/proto.js';

export interface ReplyDropper {
  /** host:port for agents' --scheduler. */
  readonly address: string;
  /** Replies thrown away, by method. */
  readonly dropped: Record<string, number>;
  close(): Promise<void>;
}

/**
 * `drop(method)`: whether to lose this reply (called once per answered call). `seen(method, request)`: told
 * of every call as it passes (what an agent says, e.g. each heartbeat's held list). `refuse(method)`:
 * whether to answer UNAVAILABLE without forwarding the call at all.
 */
export async function startReplyDropper(target: string, drop: (method: string) => boolean, seen?: (method: string, request: unknown) => void, refuse?: (method: string) => boolean): Promise<ReplyDropper> {
  const service = loadProto().trainyard.v1.AgentLink.service;
  const client = new grpc.Client(grpcTarget(target), grpc.credentials.createInsecure(), channelOptions);
  const dropped: Record<string, number> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(service)) {
    if (m.requestStream || m.responseStream) throw new Error(`AgentLink.${name} streams: the reply dropper forwards unary calls only`);
    handlers[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      seen?.(name, call.request);
      // Never forwarded: the call did not reach the scheduler (it is away, or a partition cuts this way).
      if (refuse?.(name)) return callback({ code: grpc.status.UNAVAILABLE, details: `${name} refused before the scheduler (reply dropper)` });
      const deadline = call.getDeadline();
      client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, call.request, call.metadata, { deadline: deadline === Infinity ? Date.now() + 60_000 : deadline },
        (err, res) => {
          if (err) return callback(err);
          if (drop(name)) {
            dropped[name] = (dropped[name] ?? 0) + 1;
            return callback({ code: grpc.status.UNAVAILABLE, details: `reply to ${name} lost on the way back (reply dropper)` });
          }
          callback(null, res);
        });
    };
  }
  const server = new grpc.Server(channelOptions);
  server.addService(service, handlers);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    dropped,
    close: () => new Promise<void>((resolve) => { server.tryShutdown(() => { client.close(); resolve(); }); }),
  };
}
