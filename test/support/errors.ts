import { isQuicgateError, type ErrorCode } from '../../src/errors.js';

/** The QuicgateError code `fn` throws, or 'no error'; anything else it throws is rethrown. */
export function codeOf(fn: () => unknown): ErrorCode | 'no error' {
  try {
    fn();
  } catch (err) {
    if (isQuicgateError(err)) return err.code;
    throw err;
  }
  return 'no error';
}
