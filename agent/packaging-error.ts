// The failure of a venv's build (the attempt ends PackagingFailed with its message): a pip that failed, a
// build that left something unsafe in the venv, requirements whose key cannot be computed.
import { ErrorCodes, TrainyardError } from '../shared/errors.js';

export class PackagingError extends TrainyardError {
  constructor(message: string) {
    super(ErrorCodes.FailedPrecondition, message);
    this.name = 'PackagingError';
  }
}
