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
  Cancelled: 'CANCELLED',
  Internal: 'INTERNAL',
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
  CANCELLED: GrpcStatus.CANCELLED,
  INTERNAL: GrpcStatus.INTERNAL,
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

/** gRPC statuses worth retrying: the call may not have happened, or the peer is restarting. */
export const retryableGrpcStatuses: ReadonlySet<GrpcStatus> = new Set([
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.RESOURCE_EXHAUSTED,
  GrpcStatus.INTERNAL,
]);

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
  return new TrainyardError(ErrorCodes.Internal, e.details ?? e.message ?? String(err), { cause: err });
}
const grpcStatusByCode = grpcStatusOf;

export function isRetryableGrpc(err: unknown): boolean {
  const code = (err as Partial<ServiceError>).code;
  return typeof code === 'number' && retryableGrpcStatuses.has(code);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
