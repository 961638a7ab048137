/**
 * Bearer token check for the admin API. Both sides are hashed before the constant-time comparison so that
 * neither the content nor the length of the configured token leaks through response timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export type TokenCheck = 'valid' | 'missing' | 'invalid';

export type TokenChecker = (authorizationHeader: string | undefined) => TokenCheck;

/** Whether a candidate is the admin token (the console's login form sends it once in a POST body). */
export function createSecretCheck(token: string): (candidate: string) => boolean {
  const expected = sha256(token);
  return (candidate) => timingSafeEqual(sha256(candidate), expected);
}

export function createTokenChecker(token: string): TokenChecker {
  const isToken = createSecretCheck(token);
  return (header) => {
    if (header === undefined || header.trim() === '') return 'missing';
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (match === null) return 'invalid';
    return isToken(match[1] ?? '') ? 'valid' : 'invalid';
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
