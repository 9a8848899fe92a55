// The retryable/permanent table (shared/errors.ts), code by code: every ErrorCode and every gRPC status
// has an explicit answer, an ErrorCode's answer is the same as that of the status it becomes on the wire,
// and isRetryableGrpc (what Link.call and the log shipper retry on) follows the table.
import t from 'tap';
import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import {
  ErrorCodes, TrainyardError, errorCodeRetryability, grpcStatusRetryability, isRetryableGrpc, retryableGrpcStatuses, toGrpcStatus, type ErrorCode,
} from '../../shared/errors.js';

const expectedCodes: Record<ErrorCode, 'retryable' | 'permanent'> = {
  INVALID_ARGUMENT: 'permanent',
  INVALID_PACKAGE: 'permanent',
  NOT_FOUND: 'permanent',
  ALREADY_EXISTS: 'permanent',
  FAILED_PRECONDITION: 'permanent',
  UNSATISFIABLE: 'permanent',
  STALE_LEASE: 'permanent',
  UNAVAILABLE: 'retryable',
  STORAGE_ERROR: 'retryable',
  STORAGE_REJECTED: 'permanent',
  CANCELLED: 'permanent',
  INTERNAL: 'retryable',
  UNAUTHENTICATED: 'permanent',
  PERMISSION_DENIED: 'permanent',
  RESOURCE_EXHAUSTED: 'retryable',
  UNIMPLEMENTED: 'permanent',
};

const expectedStatuses: Record<string, 'retryable' | 'permanent'> = {
  OK: 'permanent', CANCELLED: 'permanent', UNKNOWN: 'permanent', INVALID_ARGUMENT: 'permanent',
  DEADLINE_EXCEEDED: 'retryable', NOT_FOUND: 'permanent', ALREADY_EXISTS: 'permanent', PERMISSION_DENIED: 'permanent',
  RESOURCE_EXHAUSTED: 'permanent', FAILED_PRECONDITION: 'permanent', ABORTED: 'permanent', OUT_OF_RANGE: 'permanent',
  UNIMPLEMENTED: 'permanent', INTERNAL: 'retryable', UNAVAILABLE: 'retryable', DATA_LOSS: 'permanent', UNAUTHENTICATED: 'permanent',
};

t.test('every ErrorCode is in the table, with the expected answer', async (t) => {
  t.same(Object.keys(errorCodeRetryability).sort(), Object.values(ErrorCodes).sort(), 'no code missing, none extra');
  for (const code of Object.values(ErrorCodes)) {
    t.equal(errorCodeRetryability[code], expectedCodes[code], `${code} is ${expectedCodes[code]}`);
    t.equal(isRetryableGrpc(new TrainyardError(code, 'x')), expectedCodes[code] === 'retryable', `a TrainyardError ${code}`);
  }
});

t.test('every gRPC status is in the table, with the expected answer', async (t) => {
  const names = Object.keys(GrpcStatus).filter((k) => Number.isNaN(Number(k)));
  t.same(names.sort(), Object.keys(expectedStatuses).sort(), 'the test knows every status grpc-js has');
  for (const name of names) {
    const s = GrpcStatus[name as keyof typeof GrpcStatus];
    const want = expectedStatuses[name];
    t.equal(grpcStatusRetryability[s], want, `${name} is ${want}`);
    t.equal(isRetryableGrpc({ code: s, details: 'x', metadata: new Metadata() }), want === 'retryable', `a ServiceError with ${name} and no trainyard code`);
    t.equal(retryableGrpcStatuses.has(s), want === 'retryable', `retryableGrpcStatuses agrees on ${name}`);
  }
});

t.test('an ErrorCode and the status it becomes on the wire agree, and a wire error is judged by its code', async (t) => {
  for (const code of Object.values(ErrorCodes)) {
    const wire = toGrpcStatus(new TrainyardError(code, 'x'));
    // One exception, on purpose: RESOURCE_EXHAUSTED with the scheduler's code is a per-caller limit (free
    // once a stream ends), without it grpc-js's message-size refusal (issue 20: retried for ever before).
    if (code !== ErrorCodes.ResourceExhausted) t.equal(grpcStatusRetryability[wire.code!], errorCodeRetryability[code], `${code} → status ${GrpcStatus[wire.code!]}`);
    t.equal(isRetryableGrpc(wire), expectedCodes[code] === 'retryable', `${code} as received by an agent`);
  }
});

t.test('storage: a permanent refusal is FAILED_PRECONDITION and ends a report; a spent retry is UNAVAILABLE and is retried', async (t) => {
  t.equal(toGrpcStatus(new TrainyardError(ErrorCodes.StorageRejected, 'NoSuchKey')).code, GrpcStatus.FAILED_PRECONDITION);
  t.equal(toGrpcStatus(new TrainyardError(ErrorCodes.StorageError, 'slow down')).code, GrpcStatus.UNAVAILABLE);
  t.equal(toGrpcStatus(new TrainyardError(ErrorCodes.StaleLease, 'stale')).code, GrpcStatus.ABORTED);
});

t.test('anything that is not a gRPC or Trainyard error is permanent', async (t) => {
  t.notOk(isRetryableGrpc(new Error('a bug')));
  t.notOk(isRetryableGrpc(null));
  t.notOk(isRetryableGrpc({ code: 'ECONNRESET' }));
  t.notOk(isRetryableGrpc({ code: 99 }));
});

t.test('a message over the size limit is permanent; the scheduler\'s own per-caller limit is not', async (t) => {
  // What grpc-js says when a message is too large: its status, no trainyard code.
  t.notOk(isRetryableGrpc({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'Received message larger than max (17000000 vs. 16777216)', metadata: new Metadata() }), 'grpc-js\'s own: permanent');
  t.ok(isRetryableGrpc(toGrpcStatus(new TrainyardError(ErrorCodes.ResourceExhausted, 'too many streams'))), 'the stream cap: retryable');
});
