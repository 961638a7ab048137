/**
 * Console logins: the admin token is exchanged once for a session cookie, and every state-changing request
 * made with that cookie must also carry the session's CSRF token in a header and come from the gateway's own
 * origin.
 *
 * Sessions are signed rather than stored: cookie = "v1.<expiry>.<nonce>.<mac>", the MAC an HMAC-SHA256 under
 * a key derived from the admin token. So an open page stays logged in across a gateway restart (it reconnects
 * by itself), and changing the token logs every console out. Logout revokes the nonce in memory until the
 * cookie's own expiry (the browser drops the cookie too). The CSRF token is an HMAC of the nonce under the
 * same key: per session, never sent in a cookie, checked in constant time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export const SESSION_COOKIE = 'qg_console';
export const CSRF_HEADER = 'x-csrf-token';
/** A console login lasts this long; then the page asks for the token again. */
export const DEFAULT_SESSION_TTL_MS = 12 * 3_600_000;

export interface ConsoleSession {
  readonly nonce: string;
  readonly expiresAtMs: number;
  readonly csrfToken: string;
}

export type CsrfVerdict = { readonly ok: true } | { readonly ok: false; readonly why: string };

export interface ConsoleSessionsOptions {
  readonly adminToken: string;
  /** Wall clock in ms (tests inject one). */
  readonly now?: () => number;
  readonly ttlMs?: number;
}

export class ConsoleSessions {
  private readonly key: Buffer;
  private readonly now: () => number;
  readonly ttlMs: number;
  /** Logged-out nonces and the expiry after which the cookie would be refused anyway. */
  private readonly revoked = new Map<string, number>();

  constructor(options: ConsoleSessionsOptions) {
    this.key = createHmac('sha256', options.adminToken).update('quicgate console session v1').digest();
    this.now = options.now ?? Date.now;
    this.ttlMs = options.ttlMs ?? DEFAULT_SESSION_TTL_MS;
  }

  /** A new session (after the admin token was checked). */
  create(): { session: ConsoleSession; cookieValue: string } {
    const expiresAtMs = this.now() + this.ttlMs;
    const nonce = randomBytes(18).toString('base64url');
    const body = `v1.${expiresAtMs.toString(36)}.${nonce}`;
    return { session: this.sessionOf(nonce, expiresAtMs), cookieValue: `${body}.${this.mac(body)}` };
  }

  /** The session a cookie value stands for, or null (bad signature, expired, logged out, malformed). */
  verify(cookieValue: string | undefined): ConsoleSession | null {
    if (cookieValue === undefined) return null;
    const parts = cookieValue.split('.');
    if (parts.length !== 4 || parts[0] !== 'v1') return null;
    const [, expiry = '', nonce = '', mac = ''] = parts;
    if (!/^[0-9a-z]{1,12}$/.test(expiry) || !/^[A-Za-z0-9_-]{24}$/.test(nonce)) return null;
    if (!constantTimeEqual(mac, this.mac(`v1.${expiry}.${nonce}`))) return null;
    const expiresAtMs = parseInt(expiry, 36);
    if (!(expiresAtMs > this.now()) || this.revoked.has(nonce)) return null;
    return this.sessionOf(nonce, expiresAtMs);
  }

  /** Logout: the cookie is refused from now on, also if the browser kept it. */
  revoke(session: ConsoleSession): void {
    const now = this.now();
    for (const [nonce, expiresAtMs] of this.revoked) if (expiresAtMs <= now) this.revoked.delete(nonce);
    this.revoked.set(session.nonce, session.expiresAtMs);
  }

  /** The header a request made with the session's cookie must carry. */
  checkCsrf(session: ConsoleSession, headerValue: string | undefined): CsrfVerdict {
    if (headerValue === undefined || headerValue === '') return { ok: false, why: `missing ${CSRF_HEADER} header` };
    return constantTimeEqual(headerValue, session.csrfToken) ? { ok: true } : { ok: false, why: `wrong ${CSRF_HEADER} header` };
  }

  private sessionOf(nonce: string, expiresAtMs: number): ConsoleSession {
    return { nonce, expiresAtMs, csrfToken: this.mac(`csrf.${nonce}`) };
  }

  private mac(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }
}

/** Compares two strings without an early exit on the first difference (lengths are not secret here). */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The value of one cookie from a Cookie header (RFC 6265 syntax; first occurrence wins). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export interface CookieOptions {
  /** Seconds; 0 deletes the cookie. */
  readonly maxAgeSeconds: number;
  /** Set when the console is reached over TLS (the browser then never sends the cookie in clear). */
  readonly secure: boolean;
}

export function sessionCookie(value: string, options: CookieOptions): string {
  const attributes = [`${SESSION_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${options.maxAgeSeconds}`];
  if (options.secure) attributes.push('Secure');
  return attributes.join('; ');
}

/**
 * Cross-origin requests are refused before the CSRF token is even looked at: a browser names the page's
 * origin in Origin (and Sec-Fetch-Site) on every POST, PATCH and DELETE, and it must be this listener's own.
 * A request without either header is not from a browser page and passes on to the token check.
 */
export function checkSameOrigin(headers: IncomingHttpHeaders, secure: boolean): CsrfVerdict {
  const site = headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return { ok: false, why: `cross-site request (Sec-Fetch-Site: ${site})` };
  const origin = headers.origin;
  if (origin === undefined) return { ok: true };
  const host = headers.host;
  if (host === undefined) return { ok: false, why: 'Origin header without a Host header' };
  const expected = `${secure ? 'https' : 'http'}://${host}`;
  return origin.toLowerCase() === expected.toLowerCase() ? { ok: true } : { ok: false, why: `request from another origin (${origin})` };
}
