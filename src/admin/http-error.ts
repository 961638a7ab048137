/**
 * Errors the admin API answers with: a stable code, an HTTP status and a message, sent as
 * `{ "error": { "code", "message", "details"? } }`. Everything a handler throws ends up as one of these.
 */
import { QuicgateError, isQuicgateError, type ErrorCode } from '../errors.js';

export class AdminHttpError extends QuicgateError {
  readonly status: number;
  /** Extra response headers, e.g. Allow on 405 or WWW-Authenticate on 401. */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: number,
    code: ErrorCode,
    message: string,
    options?: { details?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'AdminHttpError';
    this.status = status;
    this.headers = options?.headers ?? {};
  }
}

export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly details?: Readonly<Record<string, unknown>> };
}

/** HTTP status for a QuicgateError raised by the backend. */
const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  QG_ERR_ADMIN_UNAUTHORIZED: 401,
  QG_ERR_ADMIN_BAD_REQUEST: 400,
  QG_ERR_ADMIN_FORBIDDEN: 403,
  QG_ERR_ADMIN_THROTTLED: 429,
  QG_ERR_ADMIN_UNAVAILABLE: 503,
  // The users are not in a file the console can edit (inline in the server config).
  QG_ERR_CONFIG_INVALID: 409,
  QG_ERR_ADMIN_NOT_FOUND: 404,
  QG_ERR_SESSION_NOT_FOUND: 404,
  QG_ERR_USER_NOT_FOUND: 404,
  // The running config stays; the request conflicts with what is on disk.
  QG_ERR_RELOAD_FAILED: 409,
  // The fleet's Redis is unreachable, or the gateway that owns the session does not answer.
  QG_ERR_FLEET_UNAVAILABLE: 503,
  QG_ERR_FLEET_UNREACHABLE: 502,
  QG_ERR_FLEET_TIMEOUT: 504,
};

/**
 * Turns anything thrown into an answer. A QuicgateError keeps its code and message (they are meant for
 * operators); any other error is internal and its message is not sent (it may hold paths or secrets).
 */
export function toAdminHttpError(err: unknown): AdminHttpError {
  if (err instanceof AdminHttpError) return err;
  if (isQuicgateError(err)) {
    const options = err.details === undefined ? { cause: err } : { cause: err, details: { ...err.details } };
    return new AdminHttpError(STATUS_BY_CODE[err.code] ?? 500, err.code, err.message, options);
  }
  return new AdminHttpError(500, 'QG_ERR_ADMIN_INTERNAL', 'internal error while handling the request (see the gateway log)', { cause: err });
}

export function errorBody(err: AdminHttpError): ErrorBody {
  return { error: { code: err.code, message: err.message, ...(err.details === undefined ? {} : { details: err.details }) } };
}
