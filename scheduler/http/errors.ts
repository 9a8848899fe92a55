// Typed errors to HTTP statuses, in one place (the gRPC boundary has its own table in shared/errors.ts).
import { TrainyardError, type ErrorCode } from '../../shared/errors.js';

const httpStatusOf = {
  INVALID_ARGUMENT: 400,
  INVALID_PACKAGE: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  FAILED_PRECONDITION: 409,
  UNSATISFIABLE: 409,
  STALE_LEASE: 409,
  UNAVAILABLE: 503,
  STORAGE_ERROR: 503,
  STORAGE_REJECTED: 502,
  CANCELLED: 499,
  INTERNAL: 500,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  UNIMPLEMENTED: 501,
} as const satisfies Record<ErrorCode, number>;

/** The status and body for a refusal; null for an error that is not a TrainyardError (a 500, logged). */
export function httpError(err: unknown): { status: number; body: { error: string; code: ErrorCode } } | null {
  if (!(err instanceof TrainyardError)) return null;
  return { status: httpStatusOf[err.code], body: { error: err.message, code: err.code } };
}

