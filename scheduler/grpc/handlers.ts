// Adapters from async functions to grpc-js handlers: the one place where thrown errors become statuses.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toGrpcStatus, TrainyardError } from '../../shared/errors.js';

function report(log: Logger, method: string, err: unknown) {
  if (err instanceof TrainyardError) log.debug({ method, code: err.code, msg: err.message }, 'request refused');
  else log.error({ method, err }, 'request failed');
}

export function unary<Req, Res>(log: Logger, method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (res) => callback(null, res),
      (err: unknown) => { report(log, method, err); callback(toGrpcStatus(err)); },
    );
  };
}

export function clientStream<Req, Res>(log: Logger, method: string, fn: (call: grpc.ServerReadableStream<Req, Res>) => Promise<Res>): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    fn(call).then(
      (res) => callback(null, res),
      (err: unknown) => { report(log, method, err); callback(toGrpcStatus(err)); },
    );
  };
}

/** A server stream whose producer gets an AbortSignal that fires when the client goes away. */
export function serverStream<Req, Res>(log: Logger, method: string, fn: (req: Req, send: (msg: Res) => Promise<void>, signal: AbortSignal) => Promise<void>): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    call.on('close', () => ac.abort());
    const send = async (msg: Res) => {
      if (ac.signal.aborted) throw new Error('client went away');
      if (!call.write(msg)) await new Promise<void>((resolve) => { call.once('drain', resolve); ac.signal.addEventListener('abort', () => resolve(), { once: true }); });
    };
    fn(call.request, send, ac.signal).then(
      () => { if (!ac.signal.aborted) call.end(); },
      (err: unknown) => {
        if (ac.signal.aborted) return;
        report(log, method, err);
        // grpc-js sends the status from the stream's 'error' event (then ends the call); destroy() would
        // tear the stream down before that status is written, leaving the client waiting for ever.
        const status = toGrpcStatus(err);
        call.emit('error', Object.assign(new Error(status.details ?? 'error'), status));
      },
    );
  };
}
