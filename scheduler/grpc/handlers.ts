// Adapters from async functions to grpc-js handlers: the one place where callers are authenticated and
// where thrown errors become statuses. Every handler is given the caller as a typed Principal; what that
// caller may do is decided by scheduler/auth/policy.ts, which the handlers (or the modules they call) ask.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toGrpcStatus, TrainyardError } from '../../shared/errors.js';
import type { Principal } from '../auth/principal.js';
import type { StreamLimiter } from '../auth/streams.js';

/** How a service's calls are authenticated, and the per-caller cap on its server streams. */
export interface Gate {
  readonly log: Logger;
  /** The caller, from the call's metadata; throws UNAUTHENTICATED. */
  authenticate(metadata: grpc.Metadata): Promise<Principal>;
  readonly streams?: StreamLimiter;
}

function report(log: Logger, method: string, err: unknown) {
  if (err instanceof TrainyardError) log.debug({ method, code: err.code, msg: err.message }, 'request refused');
  else log.error({ method, err }, 'request failed');
}

export function unary<Req, Res>(gate: Gate, method: string, fn: (req: Req, caller: Principal, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    gate.authenticate(call.metadata).then((caller) => fn(call.request, caller, call)).then(
      (res) => callback(null, res),
      (err: unknown) => { report(gate.log, method, err); callback(toGrpcStatus(err)); },
    );
  };
}

export function clientStream<Req, Res>(gate: Gate, method: string, fn: (call: grpc.ServerReadableStream<Req, Res>, caller: Principal) => Promise<Res>): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    gate.authenticate(call.metadata).then((caller) => fn(call, caller)).then(
      (res) => callback(null, res),
      (err: unknown) => { report(gate.log, method, err); callback(toGrpcStatus(err)); },
    );
  };
}

/**
 * A server stream whose producer gets an AbortSignal that fires when the client goes away. It holds one of
 * the caller's stream slots (gate.streams) from authentication until it ends, however it ends, and ends
 * with UNAUTHENTICATED when the caller's token is revoked or expires meanwhile.
 */
export function serverStream<Req, Res>(gate: Gate, method: string, fn: (req: Req, caller: Principal, send: (msg: Res) => Promise<void>, signal: AbortSignal) => Promise<void>): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const ac = new AbortController();
    let release = () => {};
    call.on('cancelled', () => ac.abort());
    call.on('close', () => ac.abort());
    ac.signal.addEventListener('abort', () => release(), { once: true });
    const send = async (msg: Res) => {
      if (ac.signal.aborted) throw new Error('client went away');
      if (!call.write(msg)) await new Promise<void>((resolve) => { call.once('drain', resolve); ac.signal.addEventListener('abort', () => resolve(), { once: true }); });
    };
    // The caller's token died while the stream was open (auth/streams.ts): the client is told why, with
    // that status, and the producer is stopped; whatever it then returns or throws is not sent.
    const end = (err: TrainyardError) => {
      if (ac.signal.aborted) return;
      ac.abort();
      const status = toGrpcStatus(err);
      call.emit('error', Object.assign(new Error(status.details ?? 'error'), status));
    };
    gate.authenticate(call.metadata).then((caller) => {
      if (gate.streams) release = gate.streams.acquire(caller, end);
      if (ac.signal.aborted) release();
      return fn(call.request, caller, send, ac.signal);
    }).then(
      () => { release(); if (!ac.signal.aborted) call.end(); },
      (err: unknown) => {
        release();
        if (ac.signal.aborted) return;
        report(gate.log, method, err);
        // grpc-js sends the status from the stream's 'error' event (then ends the call); destroy() would
        // tear the stream down before that status is written, leaving the client waiting for ever.
        const status = toGrpcStatus(err);
        call.emit('error', Object.assign(new Error(status.details ?? 'error'), status));
      },
    );
  };
}
