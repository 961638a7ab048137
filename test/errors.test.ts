import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, QuicgateError, isQuicgateError } from '../src/errors.js';
import { renderErrorsDoc } from '../scripts/errors-doc.js';

describe('error codes', () => {
  it('are all documented in docs/errors.md (regenerate with npx tsx scripts/errors-doc.ts)', () => {
    expect(readFileSync(resolve(import.meta.dirname, '../docs/errors.md'), 'utf8')).toBe(renderErrorsDoc());
  });

  it('follow the QG_ERR_ naming and carry code, message and cause', () => {
    for (const code of Object.keys(ErrorCodes)) expect(code).toMatch(/^QG_ERR_[A-Z0-9_]+$/);
    const cause = new Error('disk');
    const err = new QuicgateError('QG_ERR_HISTORY', 'write failed', { cause, details: { file: 'x' } });
    expect(isQuicgateError(err, 'QG_ERR_HISTORY')).toBe(true);
    expect(isQuicgateError(err, 'QG_ERR_TLS')).toBe(false);
    expect(err.cause).toBe(cause);
    expect(err.details).toEqual({ file: 'x' });
  });
});
