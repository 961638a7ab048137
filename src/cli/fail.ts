/**
 * How the CLI ends: a one-line reason on stderr and an exit code a script can tell apart.
 *   1 runtime failure (also: the client gave up after reconnect.max_attempts), 2 bad usage or config (also: the
 *   gateway's certificate does not verify with the configured CA or pins, QG_ERR_TLS), 3 refused or closed by
 *   the gateway for good (bad password, disabled or removed user, admin kill, quota spent, replaced by a newer
 *   session). docs/operations.md lists them for init systems.
 */
import { isQuicgateError } from '../errors.js';

export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;
export const EXIT_REJECTED = 3;

export function exitCodeFor(err: unknown): number {
  if (isQuicgateError(err)) {
    if (['QG_ERR_CONFIG_INVALID', 'QG_ERR_CONFIG_NOT_FOUND', 'QG_ERR_UNIT_INVALID', 'QG_ERR_ADDRESS_UNAVAILABLE', 'QG_ERR_TLS'].includes(err.code)) {
      return EXIT_USAGE;
    }
    if (err.code === 'QG_ERR_REJECTED') return EXIT_REJECTED;
  }
  return EXIT_RUNTIME;
}

/** The message for a person: the code first (for grepping), then what went wrong. */
export function describeFailure(err: unknown): string {
  if (isQuicgateError(err)) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

export function fail(err: unknown): never {
  process.stderr.write(`quicgate: ${describeFailure(err)}\n`);
  process.exit(exitCodeFor(err));
}
