/**
 * Typed errors with stable codes. Code strings never change once released: operators grep logs for them,
 * clients show them, tests assert on them. docs/errors.md lists them; keep both in step.
 */
export const ErrorCodes = {
  QG_ERR_CONFIG_NOT_FOUND: 'a configuration file does not exist or cannot be read',
  QG_ERR_CONFIG_INVALID: 'a configuration file is not valid (names file, field path and what was expected)',
  QG_ERR_UNIT_INVALID: 'a rate, size or duration string could not be parsed',
  QG_ERR_POOL_EXHAUSTED: 'no free tunnel address is left in the pool',
  QG_ERR_ADDRESS_UNAVAILABLE: 'a requested or static address is outside the pool, reserved or in use',
  QG_ERR_AUTH_FAILED: 'unknown user or wrong password (deliberately not told apart)',
  QG_ERR_USER_DISABLED: 'the user is disabled in config',
  QG_ERR_USER_LIMIT: 'the user is at their session limit and the policy is reject',
  QG_ERR_SERVER_LIMIT: 'the gateway is at its total session limit',
  QG_ERR_THROTTLED: 'too many connection or authentication attempts from this source address',
  QG_ERR_QUOTA_EXCEEDED: "the user's data quota for the period is spent",
  QG_ERR_SESSION_NOT_FOUND: 'no live session has that id',
  QG_ERR_USER_NOT_FOUND: 'no user has that name',
  QG_ERR_TUN_OPEN: 'the TUN device could not be opened (needs root or CAP_NET_ADMIN)',
  QG_ERR_TUN_CONFIGURE: 'the TUN device could not be configured (address, MTU, routes)',
  QG_ERR_TUN_IO: 'reading from the TUN device failed for good (e.g. the device was deleted)',
  QG_ERR_NATIVE_MISSING: 'the native TUN addon is not built',
  QG_ERR_TRANSPORT_UNAVAILABLE: 'the requested transport is not installed, not usable, or turned off on the gateway (transports.h2: false)',
  QG_ERR_CONNECT_FAILED: 'the WebTransport session could not be established',
  QG_ERR_LISTEN: 'the tunnel listener or the admin API could not bind its address and port (the message names both and the cause, e.g. in use), or the listener has no transport left to serve',
  QG_ERR_REJECTED: 'the gateway refused the session, or closed it and said not to reconnect (see the reason)',
  QG_ERR_CONTROL_MALFORMED: 'a control message was not valid JSON or did not match the protocol',
  QG_ERR_PROTOCOL: 'the peer broke the tunnel protocol (e.g. no assignment in time, or a malformed session request: HTTP 400)',
  QG_ERR_TLS: 'certificates could not be created, loaded or verified (a client stops at once: exit 2)',
  QG_ERR_HISTORY: 'the session history database failed',
  QG_ERR_ADMIN_UNAUTHORIZED: 'admin API request without a valid bearer token',
  QG_ERR_ADMIN_BAD_REQUEST: 'admin API request failed validation',
  QG_ERR_ADMIN_NOT_FOUND: 'admin API route or object not found',
  QG_ERR_ADMIN_THROTTLED: 'too many wrong admin tokens from one source; retry after the Retry-After seconds',
  QG_ERR_ADMIN_FORBIDDEN: 'a console request without its CSRF token or from another origin was refused',
  QG_ERR_ADMIN_UNAVAILABLE: 'the admin listener cannot serve this now (console not built, too many open console pages)',
  QG_ERR_ADMIN_INTERNAL: 'the admin API failed unexpectedly while handling a request (details in the gateway log)',
  QG_ERR_RELOAD_FAILED: 'a reload was refused; the running config stays',
  QG_ERR_CLOSED: 'the object was already closed',
  QG_ERR_FLEET_UNAVAILABLE: 'Redis, which the fleet shares its sessions through, cannot be reached: fleet-wide lists and kills are unavailable (this gateway still serves its own)',
  QG_ERR_FLEET_UNREACHABLE: 'the gateway that owns the session is not listening on its fleet channel (down or cut off from Redis)',
  QG_ERR_FLEET_TIMEOUT: 'the gateway that owns the session did not answer a routed request in time (the session may still end)',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class QuicgateError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'QuicgateError';
    this.code = code;
    this.details = options?.details;
  }
}

export function isQuicgateError(err: unknown, code?: ErrorCode): err is QuicgateError {
  return err instanceof QuicgateError && (code === undefined || err.code === code);
}
