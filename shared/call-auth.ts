// Credentials on every outgoing call, as metadata: `authorization: Bearer …` (and, for agents,
// `trainyard-agent: NAME`). A client interceptor, so every call of a client — unary or streaming —
// carries them without each call site remembering to. `headers` is read per call: an agent that was just
// issued its credential sends it from the next call on.
import * as grpc from '@grpc/grpc-js';

export const AGENT_NAME_HEADER = 'trainyard-agent';

export function authInterceptor(headers: () => Readonly<Record<string, string>>): grpc.Interceptor {
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      for (const [k, v] of Object.entries(headers())) if (v) metadata.set(k, v);
      next(metadata, listener);
    },
  });
}

export const bearer = (secret: string): Record<string, string> => (secret ? { authorization: `Bearer ${secret}` } : {});
