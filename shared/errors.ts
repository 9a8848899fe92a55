// Typed errors. Every error a user can see carries a stable `code`; the gRPC boundary converts codes to
// status codes in one place (toGrpcStatus / fromGrpcError) and clients turn them back into the same class.
import { status as GrpcStatus, Metadata, type ServiceError } from '@grpc/grpc-js';

export const ErrorCodes = {
  InvalidArgument: 'INVALID_ARGUMENT',
  InvalidPackage: 'INVALID_PACKAGE',
  NotFound: 'NOT_FOUND',
  AlreadyExists: 'ALREADY_EXISTS',
  FailedPrecondition: 'FAILED_PRECONDITION',
  Unsatisfiable: 'UNSATISFIABLE',
  StaleLease: 'STALE_LEASE',
  Unavailable: 'UNAVAILABLE',
  StorageError: 'STORAGE_ERROR',
  /** Storage said no for good (NoSuchKey, AccessDenied, a size that does not match): retrying cannot help. */
  StorageRejected: 'STORAGE_REJECTED',
  Cancelled: 'CANCELLED',
  Internal: 'INTERNAL',
  /** No credential, or one that is unknown, revoked or expired. */
  Unauthenticated: 'UNAUTHENTICATED',
  /** A valid credential that may not do this (the message names the project or the role needed). */
  PermissionDenied: 'PERMISSION_DENIED',
  /** A per-caller limit (e.g. concurrent streams) is reached; try again once something ends. */
  ResourceExhausted: 'RESOURCE_EXHAUSTED',
  /** This scheduler does not do that (an older one, or a feature set off): the caller takes another way. */
  Unimplemented: 'UNIMPLEMENTED',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

const grpcStatusOf: Record<ErrorCode, GrpcStatus> = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  INVALID_PACKAGE: GrpcStatus.INVALID_ARGUMENT,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  FAILED_PRECONDITION: GrpcStatus.FAILED_PRECONDITION,
  UNSATISFIABLE: GrpcStatus.FAILED_PRECONDITION,
  STALE_LEASE: GrpcStatus.ABORTED,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  STORAGE_ERROR: GrpcStatus.UNAVAILABLE,
  STORAGE_REJECTED: GrpcStatus.FAILED_PRECONDITION,
  CANCELLED: GrpcStatus.CANCELLED,
  INTERNAL: GrpcStatus.INTERNAL,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  RESOURCE_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  UNIMPLEMENTED: GrpcStatus.UNIMPLEMENTED,
};

export class TrainyardError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'TrainyardError';
  }
}

export const invalid = (message: string) => new TrainyardError(ErrorCodes.InvalidArgument, message);
export const notFound = (message: string) => new TrainyardError(ErrorCodes.NotFound, message);
export const invalidPackage = (message: string) => new TrainyardError(ErrorCodes.InvalidPackage, message);

/**
 * Whether an error is worth another try, for every code: `retryable` means the call may not have happened
 * or the peer is restarting (try again with backoff); `permanent` means the answer will not change (stop,
 * and end whatever waits on it). `satisfies` makes a new ErrorCode or gRPC status impossible to forget.
 */
export type Retryability = 'retryable' | 'permanent';

export const errorCodeRetryability = {
  INVALID_ARGUMENT: 'permanent',
  INVALID_PACKAGE: 'permanent',
  NOT_FOUND: 'permanent',
  ALREADY_EXISTS: 'permanent',
  FAILED_PRECONDITION: 'permanent',
  UNSATISFIABLE: 'permanent',
  STALE_LEASE: 'permanent', // a newer attempt holds the run: nothing this one sends will ever be accepted
  UNAVAILABLE: 'retryable',
  STORAGE_ERROR: 'retryable', // storage retries were spent on a transient error; it may be back later
  STORAGE_REJECTED: 'permanent', // NoSuchKey, AccessDenied, a size that does not match
  CANCELLED: 'permanent',
  INTERNAL: 'retryable', // an unexpected error on the scheduler (a dropped database connection, ...)
  UNAUTHENTICATED: 'permanent', // the same credential will be refused again
  PERMISSION_DENIED: 'permanent',
  RESOURCE_EXHAUSTED: 'retryable', // a per-caller limit: free once another stream or call ends
  UNIMPLEMENTED: 'permanent',
} as const satisfies Record<ErrorCode, Retryability>;

export const grpcStatusRetryability = {
  [GrpcStatus.OK]: 'permanent',
  [GrpcStatus.CANCELLED]: 'permanent', // cancelled by us (our own signal) or by the server on purpose
  [GrpcStatus.UNKNOWN]: 'permanent',
  [GrpcStatus.INVALID_ARGUMENT]: 'permanent',
  [GrpcStatus.DEADLINE_EXCEEDED]: 'retryable',
  [GrpcStatus.NOT_FOUND]: 'permanent',
  [GrpcStatus.ALREADY_EXISTS]: 'permanent',
  [GrpcStatus.PERMISSION_DENIED]: 'permanent',
  // Without a trainyard code it is grpc-js's own: a message over the size limit, which the same message
  // will exceed again. The scheduler's per-caller limits carry their code (RESOURCE_EXHAUSTED, retryable).
  [GrpcStatus.RESOURCE_EXHAUSTED]: 'permanent',
  [GrpcStatus.FAILED_PRECONDITION]: 'permanent',
  [GrpcStatus.ABORTED]: 'permanent', // STALE_LEASE
  [GrpcStatus.OUT_OF_RANGE]: 'permanent',
  [GrpcStatus.UNIMPLEMENTED]: 'permanent',
  [GrpcStatus.INTERNAL]: 'retryable',
  [GrpcStatus.UNAVAILABLE]: 'retryable',
  [GrpcStatus.DATA_LOSS]: 'permanent',
  [GrpcStatus.UNAUTHENTICATED]: 'permanent',
} as const satisfies Record<GrpcStatus, Retryability>;

/** gRPC statuses worth retrying: the call may not have happened, or the peer is restarting. */
export const retryableGrpcStatuses: ReadonlySet<GrpcStatus> = new Set(
  (Object.keys(grpcStatusRetryability) as unknown as GrpcStatus[])
    .map(Number)
    .filter((s: GrpcStatus) => grpcStatusRetryability[s] === 'retryable'),
);

const CODE_KEY = 'trainyard-code';

/** The one place a thrown error becomes a gRPC status for the wire. */
export function toGrpcStatus(err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  if (err instanceof TrainyardError) {
    metadata.set(CODE_KEY, err.code);
    return { code: grpcStatusOf[err.code], details: err.message, metadata };
  }
  metadata.set(CODE_KEY, ErrorCodes.Internal);
  const message = err instanceof Error ? err.message : String(err);
  return { code: GrpcStatus.INTERNAL, details: `internal error: ${message}`, metadata };
}

/** The client side of toGrpcStatus: a ServiceError back into a TrainyardError with the server's code. */
export function fromGrpcError(err: unknown): TrainyardError {
  if (err instanceof TrainyardError) return err;
  const e = err as Partial<ServiceError>;
  const code = e.metadata?.get(CODE_KEY)?.[0];
  if (typeof code === 'string' && code in grpcStatusByCode) {
    return new TrainyardError(code as ErrorCode, e.details ?? e.message ?? 'error', { cause: err });
  }
  if (e.code === GrpcStatus.UNAVAILABLE || e.code === GrpcStatus.DEADLINE_EXCEEDED) {
    return new TrainyardError(ErrorCodes.Unavailable, `scheduler unreachable: ${e.details ?? e.message}`, { cause: err });
  }
  if (e.code === GrpcStatus.CANCELLED) return new TrainyardError(ErrorCodes.Cancelled, 'cancelled', { cause: err });
  // A method the scheduler does not have (an older one): the caller may know another way.
  if (e.code === GrpcStatus.UNIMPLEMENTED) return new TrainyardError(ErrorCodes.Unimplemented, e.details ?? 'not implemented by the scheduler', { cause: err });
  return new TrainyardError(ErrorCodes.Internal, e.details ?? e.message ?? String(err), { cause: err });
}
const grpcStatusByCode = grpcStatusOf;

/**
 * Whether a failed call is worth another try: a TrainyardError by its code, a gRPC ServiceError by the
 * server's trainyard code when it sent one (the same answer as its status, by the tables), else by status.
 * Anything else (a programming error, a local failure) is permanent.
 */
export function isRetryableGrpc(err: unknown): boolean {
  if (err instanceof TrainyardError) return errorCodeRetryability[err.code] === 'retryable';
  const e = err as Partial<ServiceError> | null;
  const wireCode = e?.metadata?.get?.(CODE_KEY)?.[0];
  if (typeof wireCode === 'string' && wireCode in errorCodeRetryability) return errorCodeRetryability[wireCode as ErrorCode] === 'retryable';
  const status = e?.code;
  return typeof status === 'number' && status in grpcStatusRetryability && grpcStatusRetryability[status as GrpcStatus] === 'retryable';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
