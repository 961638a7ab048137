import { describe, expect, it } from 'vitest';
import { checkSameOrigin, ConsoleSessions, constantTimeEqual, readCookie, sessionCookie } from '../../src/admin/console-session.js';

const TOKEN = 'session-test-token-0123456789';

function sessionsAt(start: number, token = TOKEN): { sessions: ConsoleSessions; clock: { now: number } } {
  const clock = { now: start };
  return { sessions: new ConsoleSessions({ adminToken: token, now: () => clock.now, ttlMs: 60_000 }), clock };
}

describe('console sessions', () => {
  it('verify the cookie they issued, with its CSRF token and expiry', () => {
    const { sessions } = sessionsAt(1_000_000);
    const { session, cookieValue } = sessions.create();
    expect(cookieValue).toMatch(/^v1\.[0-9a-z]+\.[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{43}$/);
    expect(cookieValue).not.toContain(TOKEN);
    expect(sessions.verify(cookieValue)).toEqual(session);
    expect(session.expiresAtMs).toBe(1_060_000);
    expect(session.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Two logins are two sessions with different CSRF tokens.
    expect(sessions.create().session.csrfToken).not.toBe(session.csrfToken);
  });

  it('refuse tampered, malformed, expired and logged-out cookies', () => {
    const { sessions, clock } = sessionsAt(1_000_000);
    const { session, cookieValue } = sessions.create();
    const [v, expiry, nonce, mac] = cookieValue.split('.') as [string, string, string, string];
    const later = (parseInt(expiry, 36) + 3_600_000).toString(36);
    for (const bad of [
      undefined,
      '',
      'garbage',
      `${v}.${later}.${nonce}.${mac}`, // extended expiry, old signature
      `${v}.${expiry}.${nonce}.${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`,
      `v2.${expiry}.${nonce}.${mac}`,
      `${cookieValue}.extra`,
    ]) {
      expect(sessions.verify(bad), String(bad)).toBeNull();
    }
    clock.now = session.expiresAtMs;
    expect(sessions.verify(cookieValue)).toBeNull();
    clock.now = 1_000_000;
    expect(sessions.verify(cookieValue)).not.toBeNull();
    sessions.revoke(session);
    expect(sessions.verify(cookieValue)).toBeNull();
  });

  it('survive a restart (same token) and end when the token changes', () => {
    const { sessions } = sessionsAt(5_000);
    const { cookieValue, session } = sessions.create();
    expect(sessionsAt(5_000).sessions.verify(cookieValue)).toEqual(session);
    expect(sessionsAt(5_000, 'another-token-0123456789ab').sessions.verify(cookieValue)).toBeNull();
  });

  it('forget revoked sessions once they would have expired anyway', () => {
    const { sessions, clock } = sessionsAt(0);
    const first = sessions.create();
    sessions.revoke(first.session);
    clock.now = 61_000;
    const second = sessions.create();
    sessions.revoke(second.session);
    expect((sessions as unknown as { revoked: Map<string, number> }).revoked.size).toBe(1);
    expect(sessions.verify(second.cookieValue)).toBeNull();
  });

  it('check the CSRF header against the session, in constant time', () => {
    const { sessions } = sessionsAt(0);
    const { session } = sessions.create();
    const other = sessions.create().session;
    expect(sessions.checkCsrf(session, session.csrfToken)).toEqual({ ok: true });
    expect(sessions.checkCsrf(session, undefined)).toEqual({ ok: false, why: 'missing x-csrf-token header' });
    expect(sessions.checkCsrf(session, '')).toEqual({ ok: false, why: 'missing x-csrf-token header' });
    expect(sessions.checkCsrf(session, other.csrfToken)).toEqual({ ok: false, why: 'wrong x-csrf-token header' });
    expect(sessions.checkCsrf(session, `${session.csrfToken}x`)).toEqual({ ok: false, why: 'wrong x-csrf-token header' });
    expect(constantTimeEqual('abc', 'abc')).toBe(true);
    expect(constantTimeEqual('abc', 'abd')).toBe(false);
    expect(constantTimeEqual('abc', 'ab')).toBe(false);
  });
});

describe('cookies', () => {
  it('are HttpOnly, SameSite=Strict, on the whole listener; Secure over TLS', () => {
    expect(sessionCookie('v', { maxAgeSeconds: 43200, secure: false })).toBe('qg_console=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200');
    expect(sessionCookie('v', { maxAgeSeconds: 43200, secure: true })).toBe('qg_console=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure');
    expect(sessionCookie('', { maxAgeSeconds: 0, secure: false })).toBe('qg_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0');
  });

  it('are read by name from a Cookie header', () => {
    expect(readCookie(undefined, 'qg_console')).toBeUndefined();
    expect(readCookie('a=1; qg_console=v1.x.y.z; b=2', 'qg_console')).toBe('v1.x.y.z');
    expect(readCookie('xqg_console=1', 'qg_console')).toBeUndefined();
    expect(readCookie('qg_console=first; qg_console=second', 'qg_console')).toBe('first');
    expect(readCookie('broken; qg_console=ok', 'qg_console')).toBe('ok');
  });
});

describe('same-origin check', () => {
  const host = { host: '192.0.2.1:9090' };
  it('passes the listener own origin and requests that are not from a browser page', () => {
    expect(checkSameOrigin({ ...host, origin: 'http://192.0.2.1:9090', 'sec-fetch-site': 'same-origin' }, false)).toEqual({ ok: true });
    expect(checkSameOrigin({ ...host, origin: 'https://192.0.2.1:9090' }, true)).toEqual({ ok: true });
    expect(checkSameOrigin({ ...host }, false)).toEqual({ ok: true });
    expect(checkSameOrigin({ ...host, 'sec-fetch-site': 'none' }, false)).toEqual({ ok: true });
  });

  it('refuses other origins, other schemes and cross-site fetches', () => {
    expect(checkSameOrigin({ ...host, origin: 'http://evil.example' }, false)).toEqual({ ok: false, why: 'request from another origin (http://evil.example)' });
    expect(checkSameOrigin({ ...host, origin: 'http://192.0.2.1:9090' }, true).ok).toBe(false);
    expect(checkSameOrigin({ ...host, origin: 'null' }, false).ok).toBe(false);
    expect(checkSameOrigin({ ...host, 'sec-fetch-site': 'cross-site' }, false)).toEqual({ ok: false, why: 'cross-site request (Sec-Fetch-Site: cross-site)' });
    expect(checkSameOrigin({ ...host, 'sec-fetch-site': 'same-site' }, false).ok).toBe(false);
    expect(checkSameOrigin({ origin: 'http://192.0.2.1:9090' }, false).ok).toBe(false);
  });
});
