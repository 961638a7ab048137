/**
 * Console logins: the admin token is exchanged once for a session cookie, and every state-changing request
 * made with that cookie must also carry the session's CSRF token in a header and come from the gateway's own
 * origin.
 *
 * Sessions are signed rather than stored: cookie = "v1.<expiry>.<nonce>.<mac>", the MAC an HMAC-SHA256 under
 * a key derived from the admin token. So an open page stays logged in across a gateway restart (it reconnects
 * by itself), and changing the token logs every console out. Logout revokes the nonce until the cookie's own
 * expiry (the browser drops the cookie too); revocations are kept in a file in the data directory
 * (console-logouts.json, written atomically before the logout is answered), so a logged-out cookie stays
 * refused after a gateway restart. A file that cannot be read fails closed: every cookie issued before this
 * start is refused. The CSRF token is an HMAC of the nonce under the same key: per session, never sent in a
 * cookie, checked in constant time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { z } from 'zod';

export const SESSION_COOKIE = 'qg_console';
export const CSRF_HEADER = 'x-csrf-token';
/** A console login lasts this long; then the page asks for the token again. */
export const DEFAULT_SESSION_TTL_MS = 12 * 3_600_000;
/** Where logouts are kept, in the gateway's data directory. */
export const REVOCATIONS_FILE = 'console-logouts.json';

const revocationsFile = z.strictObject({
  version: z.literal(1),
  /** nonce -> the cookie's expiry (ms); entries past it are dropped. */
  revoked: z.record(z.string().regex(/^[A-Za-z0-9_-]{24}$/), z.number().int().nonnegative()),
});

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
  /** File that keeps logouts across restarts (null: memory only, for tests of other parts). */
  readonly revocationsFile?: string | null;
}

export class ConsoleSessions {
  private readonly key: Buffer;
  private readonly now: () => number;
  readonly ttlMs: number;
  /** Logged-out nonces and the expiry after which the cookie would be refused anyway. */
  private readonly revoked = new Map<string, number>();
  private readonly file: string | null;
  /** Cookies issued before this (ms) are refused: set when the logouts of earlier runs could not be read. */
  private readonly notBeforeMs: number;
  /** Why the logouts file could not be read at start (null when it could, or did not exist). */
  readonly loadProblem: string | null;
  /** Writes of the file, one after another (the last one holds every revocation). */
  private saving: Promise<void> = Promise.resolve();

  constructor(options: ConsoleSessionsOptions) {
    this.key = createHmac('sha256', options.adminToken).update('quicgate console session v1').digest();
    this.now = options.now ?? Date.now;
    this.ttlMs = options.ttlMs ?? DEFAULT_SESSION_TTL_MS;
    this.file = options.revocationsFile ?? null;
    this.loadProblem = this.file === null ? null : this.load(this.file);
    this.notBeforeMs = this.loadProblem === null ? 0 : this.now();
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
    if (!(expiresAtMs > this.now()) || this.revoked.has(nonce) || expiresAtMs - this.ttlMs < this.notBeforeMs) return null;
    return this.sessionOf(nonce, expiresAtMs);
  }

  /**
   * Logout: the cookie is refused from now on, also if the browser kept it, also after a restart. Resolves when
   * the revocation is on disk; rejects when it could not be written (it still holds until this process ends).
   */
  revoke(session: ConsoleSession): Promise<void> {
    const now = this.now();
    for (const [nonce, expiresAtMs] of this.revoked) if (expiresAtMs <= now) this.revoked.delete(nonce);
    this.revoked.set(session.nonce, session.expiresAtMs);
    if (this.file === null) return Promise.resolve();
    const file = this.file;
    const text = `${JSON.stringify({ version: 1, revoked: Object.fromEntries(this.revoked) })}\n`;
    const write = this.saving.catch(() => undefined).then(() => writeAtomically(file, text));
    this.saving = write;
    return write;
  }

  /** Reads the logouts of earlier runs; returns what is wrong with the file, or null. */
  private load(file: string): string | null {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      return `cannot read ${file}: ${(err as Error).message}`;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return `${file} is not JSON: ${(err as Error).message}`;
    }
    const result = revocationsFile.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0];
      return `${file}: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(top)'}: ${issue.message}`}`;
    }
    const now = this.now();
    for (const [nonce, expiresAtMs] of Object.entries(result.data.revoked)) if (expiresAtMs > now) this.revoked.set(nonce, expiresAtMs);
    return null;
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

/** Temp file, then rename: a crash leaves the old list or the new one, never half of one. */
async function writeAtomically(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600, flush: true });
  await rename(tmp, file);
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
