import { request as httpRequest } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import type { AdminConfig } from '../../src/config/types.js';
import { silentLogger } from '../../src/log.js';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';

const TOKEN = 'test-token-0123456789abcdef';
const config = (extra: Partial<AdminConfig> = {}): AdminConfig => ({ enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN, ...extra });

interface ErrorJson {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

let backend: FakeAdminBackend;
let metrics: MetricsExporter;
let server: AdminServer;
let base: string;

async function call(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const { token = TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set('Authorization', `Bearer ${token}`);
  return fetch(`${base}${path}`, { ...rest, headers });
}

async function errorOf(res: Response): Promise<ErrorJson['error']> {
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return ((await res.json()) as ErrorJson).error;
}

beforeEach(async () => {
  backend = new FakeAdminBackend();
  backend.addUser('alice', { bandwidth: 1_000_000, historyBytesIn: 10_000, historyBytesOut: 20_000, historySessions: 4 });
  backend.addUser('bob');
  backend.addUser('carol');
  backend.addSession('s-alice-1', 'alice', { transport: 'h3', bytesIn: 1500, bytesOut: 9000 });
  backend.addSession('s-alice-2', 'alice', { transport: 'h2' });
  backend.addSession('s-bob-1', 'bob', { transport: 'h2', ipv6: 'fd00::2' });
  metrics = new MetricsExporter(backend, { defaultMetrics: false });
  const started = await startAdminServer({ config: config(), backend, metrics, logger: silentLogger() });
  if (started === null) throw new Error('admin server did not start');
  server = started;
  base = `http://127.0.0.1:${server.port}`;
});

afterEach(async () => {
  await server.close();
  metrics.close();
});

describe('startup', () => {
  it('does not start without a token, or when disabled', async () => {
    const logged: string[] = [];
    const logger = silentLogger();
    logger.warn = ((msg: string) => void logged.push(msg)) as typeof logger.warn;
    expect(await startAdminServer({ config: config({ token: null }), backend, metrics, logger })).toBeNull();
    expect(await startAdminServer({ config: config({ token: '' }), backend, metrics, logger })).toBeNull();
    expect(logged.some((m) => m.includes('no admin.token'))).toBe(true);
    expect(await startAdminServer({ config: config({ enabled: false }), backend, metrics, logger: silentLogger() })).toBeNull();
  });

  it('binds to the configured address and reports the real port', () => {
    expect(server.port).toBeGreaterThan(0);
  });
});

describe('authentication', () => {
  const protectedRoutes: [string, string][] = [
    ['GET', '/api/sessions'],
    ['GET', '/api/sessions/s-alice-1'],
    ['DELETE', '/api/sessions/s-alice-1'],
    ['GET', '/api/users/alice'],
    ['DELETE', '/api/users/alice/sessions'],
    ['GET', '/api/stats'],
    ['POST', '/api/reload'],
    ['GET', '/metrics'],
    ['GET', '/api/openapi.json'],
    ['GET', '/api/no-such-route'],
  ];

  it.each(protectedRoutes)('%s %s refuses a missing token with 401', async (method, path) => {
    const res = await call(path, { method, token: null });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_ADMIN_UNAUTHORIZED');
    expect(error.message).toMatch(/missing/);
  });

  it.each(protectedRoutes)('%s %s refuses a wrong token with 401', async (method, path) => {
    const res = await call(path, { method, token: `${TOKEN}x` });
    expect(res.status).toBe(401);
    expect((await errorOf(res)).code).toBe('QG_ERR_ADMIN_UNAUTHORIZED');
  });

  it('refuses other schemes and an empty bearer, and changes nothing', async () => {
    for (const header of [`Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`, 'Bearer ', TOKEN]) {
      const res = await call('/api/sessions/s-alice-1', { method: 'DELETE', token: null, headers: { Authorization: header } });
      expect(res.status).toBe(401);
      expect((await errorOf(res)).code).toBe('QG_ERR_ADMIN_UNAUTHORIZED');
    }
    expect(backend.sessions.has('s-alice-1')).toBe(true);
  });

  it('accepts the scheme name in any case', async () => {
    const res = await call('/api/sessions', { token: null, headers: { Authorization: `bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
  });
});

describe('GET /api/sessions', () => {
  it('lists every live session with addresses, transport, times, counters and rates', async () => {
    const res = await call('/api/sessions');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as { sessions: Record<string, unknown>[] };
    expect(body.sessions.map((s) => s.id).sort()).toEqual(['s-alice-1', 's-alice-2', 's-bob-1']);
    expect(body.sessions.find((s) => s.id === 's-alice-1')).toEqual(backend.getSession('s-alice-1'));
    expect(body.sessions.find((s) => s.id === 's-bob-1')).toMatchObject({ user: 'bob', ipv6: 'fd00::2', transport: 'h2' });
  });

  it('refuses unknown query parameters, naming them', async () => {
    const res = await call('/api/sessions?user=alice');
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_ADMIN_BAD_REQUEST');
    expect(error.details).toEqual({ parameter: 'user' });
  });
});

describe('GET /api/sessions/:id', () => {
  it('returns the session', async () => {
    const res = await call('/api/sessions/s-alice-1');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(backend.getSession('s-alice-1'));
  });

  it('answers 404 QG_ERR_SESSION_NOT_FOUND for an unknown id', async () => {
    const res = await call('/api/sessions/nope');
    expect(res.status).toBe(404);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_SESSION_NOT_FOUND');
    expect(error.message).toContain('nope');
  });

  it('answers 400 naming the parameter for a malformed id', async () => {
    const res = await call(`/api/sessions/${encodeURIComponent('bad id!')}`);
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_ADMIN_BAD_REQUEST');
    expect(error.details).toEqual({ parameter: 'id' });
    expect(error.message).toMatch(/^invalid id:/);
  });

  it('answers 400 for a broken percent-escape', async () => {
    const res = await call('/api/sessions/%E0%A4%A');
    expect(res.status).toBe(400);
    expect((await errorOf(res)).details).toEqual({ parameter: 'id' });
  });
});

describe('DELETE /api/sessions/:id', () => {
  it('kills the session with reason admin_kill', async () => {
    const res = await call('/api/sessions/s-alice-2', { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: 's-alice-2', closed: true, reason: 'admin_kill' });
    expect(backend.sessions.has('s-alice-2')).toBe(false);
    expect(backend.ended).toEqual([{ id: 's-alice-2', reason: 'admin_kill' }]);

    const again = await call('/api/sessions/s-alice-2', { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect((await errorOf(again)).code).toBe('QG_ERR_SESSION_NOT_FOUND');
    const list = (await (await call('/api/sessions')).json()) as { sessions: { id: string }[] };
    expect(list.sessions.map((s) => s.id).sort()).toEqual(['s-alice-1', 's-bob-1']);
  });
});

describe('/api/users/:name', () => {
  it('GET returns limit, live rate, sessions, usage and quota', async () => {
    backend.users.get('alice')!.quota = {
      bytes: 1e9,
      period: 'month',
      periodKey: '2026-01',
      used: 4e8,
      remaining: 6e8,
      action: 'throttle',
      exceeded: false,
    };
    const res = await call('/api/users/alice');
    expect(res.status).toBe(200);
    const user = (await res.json()) as Record<string, unknown> & { sessions: { id: string }[] };
    expect(user).toMatchObject({
      name: 'alice',
      bandwidth: 1_000_000,
      rateIn: 200,
      rateOut: 1000,
      usage: { sessions: 6, bytesIn: 10_000 + 1500 + 1000, bytesOut: 20_000 + 9000 + 5000 },
      quota: { used: 4e8, period: 'month', action: 'throttle' },
    });
    expect(user.sessions.map((s) => s.id).sort()).toEqual(['s-alice-1', 's-alice-2']);
  });

  it('GET answers 404 QG_ERR_USER_NOT_FOUND for an unknown user and 400 for a malformed name', async () => {
    const missing = await call('/api/users/mallory');
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe('QG_ERR_USER_NOT_FOUND');

    const malformed = await call(`/api/users/${encodeURIComponent('../etc')}`);
    expect(malformed.status).toBe(400);
    expect((await errorOf(malformed)).details).toEqual({ parameter: 'name' });
  });

  it("DELETE .../sessions kills all of the user's sessions and only theirs", async () => {
    const res = await call('/api/users/alice/sessions', { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ user: 'alice', sessionsClosed: 2, reason: 'admin_kill' });
    expect([...backend.sessions.keys()]).toEqual(['s-bob-1']);
    expect(backend.ended.every((e) => e.reason === 'admin_kill')).toBe(true);

    const none = await call('/api/users/carol/sessions', { method: 'DELETE' });
    expect(await none.json()).toEqual({ user: 'carol', sessionsClosed: 0, reason: 'admin_kill' });

    const unknown = await call('/api/users/mallory/sessions', { method: 'DELETE' });
    expect(unknown.status).toBe(404);
    expect((await errorOf(unknown)).code).toBe('QG_ERR_USER_NOT_FOUND');
  });
});

describe('GET /api/stats', () => {
  it('defaults to a 24 hour window and returns the backend stats', async () => {
    backend.rejections.auth_failed = 3;
    const res = await call('/api/stats');
    expect(res.status).toBe(200);
    const stats = (await res.json()) as Record<string, unknown>;
    expect(stats).toMatchObject({
      windowHours: 24,
      activeSessions: 3,
      activeUsers: 2,
      topUsers: [
        { user: 'alice', bytes: 1500 + 9000 + 1000 + 5000 },
        { user: 'bob', bytes: 6000 },
      ],
      rejections: { auth_failed: 3 },
    });
  });

  it('passes window_hours through, bounds included', async () => {
    for (const hours of [1, 168, 8760]) {
      const res = await call(`/api/stats?window_hours=${hours}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { windowHours: number }).windowHours).toBe(hours);
    }
    expect(backend.statsWindows).toEqual([1, 168, 8760]);
  });

  it.each(['0', '8761', '-1', '1.5', 'abc', '', '1e3', '99999999999'])('refuses window_hours=%s with 400 naming it', async (value) => {
    const res = await call(`/api/stats?window_hours=${value}`);
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_ADMIN_BAD_REQUEST');
    expect(error.details).toEqual({ parameter: 'window_hours' });
    expect(error.message).toMatch(/^invalid window_hours:/);
    expect(backend.statsWindows).toEqual([]);
  });

  it('refuses window_hours given twice', async () => {
    const res = await call('/api/stats?window_hours=1&window_hours=2');
    expect(res.status).toBe(400);
    expect((await errorOf(res)).details).toEqual({ parameter: 'window_hours' });
  });
});

describe('POST /api/reload', () => {
  it('reloads and returns what changed', async () => {
    backend.reloadOutcome = { bandwidthChanged: ['alice'], usersRemoved: ['bob'], sessionsClosed: 1, needRestart: [], changed: [] };
    const res = await call('/api/reload', { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ bandwidthChanged: ['alice'], usersRemoved: ['bob'], sessionsClosed: 1, needRestart: [], changed: [] });
    const withEmptyObject = await call('/api/reload', { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } });
    expect(withEmptyObject.status).toBe(200);
    expect(backend.reloadCalls).toBe(2);
  });

  it('surfaces a refused reload as 409 QG_ERR_RELOAD_FAILED with the backend message', async () => {
    backend.failNextReloads('users.yaml: users[2].bandwidth: expected a rate like "10mbit", got "fast"');
    const res = await call('/api/reload', { method: 'POST' });
    expect(res.status).toBe(409);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_RELOAD_FAILED');
    expect(error.message).toBe('users.yaml: users[2].bandwidth: expected a rate like "10mbit", got "fast"');
  });

  it('surfaces an unexpected reload failure as 500 QG_ERR_RELOAD_FAILED', async () => {
    backend.reloadOutcome = new Error('EACCES: permission denied, open /etc/quicgate/users.yaml');
    const res = await call('/api/reload', { method: 'POST' });
    expect(res.status).toBe(500);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_RELOAD_FAILED');
    expect(error.message).toContain('EACCES');
  });

  it('refuses bodies that are not an empty JSON object, naming the problem', async () => {
    const notJson = await call('/api/reload', { method: 'POST', body: '{nope' });
    expect(notJson.status).toBe(400);
    expect((await errorOf(notJson)).details).toEqual({ parameter: 'body' });

    const unknownField = await call('/api/reload', { method: 'POST', body: JSON.stringify({ force: true }) });
    expect(unknownField.status).toBe(400);
    expect((await errorOf(unknownField)).details).toEqual({ parameter: 'body.force' });

    const array = await call('/api/reload', { method: 'POST', body: '[]' });
    expect(array.status).toBe(400);
    expect(backend.reloadCalls).toBe(0);
  });

  it('refuses an oversize body with 413 without calling the backend', async () => {
    const res = await call('/api/reload', { method: 'POST', body: JSON.stringify({ pad: 'x'.repeat(64 * 1024) }) });
    expect(res.status).toBe(413);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_ADMIN_BAD_REQUEST');
    expect(error.details).toMatchObject({ parameter: 'body' });
    expect(backend.reloadCalls).toBe(0);
  });

  it('refuses an oversize chunked body (no Content-Length) with 413', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${base}/api/reload`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write(Buffer.alloc(1024, 0x20));
      req.end();
    });
    expect(status).toBe(413);
    expect(backend.reloadCalls).toBe(0);
  });
});

describe('routing', () => {
  it('answers 404 QG_ERR_ADMIN_NOT_FOUND for an unknown route (with a token)', async () => {
    for (const path of ['/api/nothing', '/api/sessions/', '/api/users/alice/other', '/nothing']) {
      const res = await call(path);
      expect(res.status, path).toBe(404);
      expect((await errorOf(res)).code).toBe('QG_ERR_ADMIN_NOT_FOUND');
    }
  });

  it('answers 405 with Allow for a known path and the wrong method', async () => {
    const res = await call('/api/sessions/s-alice-1', { method: 'PUT', body: '{}' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, DELETE');
    expect((await errorOf(res)).details).toEqual({ allowed: ['GET', 'DELETE'] });

    const reload = await call('/api/reload');
    expect(reload.status).toBe(405);
    expect(reload.headers.get('allow')).toBe('POST');
    expect(backend.reloadCalls).toBe(0);
  });

  it('answers 500 QG_ERR_ADMIN_INTERNAL without leaking the message when the backend throws', async () => {
    backend.listSessions = () => {
      throw new Error('secret internal detail');
    };
    const res = await call('/api/sessions');
    expect(res.status).toBe(500);
    const error = await errorOf(res);
    expect(error.code).toBe('QG_ERR_ADMIN_INTERNAL');
    expect(error.message).not.toContain('secret');
  });
});

describe('GET /healthz', () => {
  it('answers the status only without a token, 200 when ok', async () => {
    const res = await call('/healthz', { token: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers all checks with a valid token', async () => {
    const res = await call('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(backend.healthView);
  });

  it('answers 503 when degraded, details only with the token', async () => {
    backend.healthView = {
      status: 'degraded',
      uptimeSeconds: 99,
      checks: { tun: 'ok', listener: 'ok', history: 'degraded', historyError: 'SQLITE_FULL: database or disk is full' },
    };
    const anonymous = await call('/healthz', { token: null });
    expect(anonymous.status).toBe(503);
    expect(await anonymous.json()).toEqual({ status: 'degraded' });

    const detailed = await call('/healthz');
    expect(detailed.status).toBe(503);
    expect(await detailed.json()).toMatchObject({ status: 'degraded', checks: { history: 'degraded', historyError: 'SQLITE_FULL: database or disk is full' } });
  });

  it('refuses a wrong token rather than silently answering anonymously', async () => {
    const res = await call('/healthz', { token: 'wrong-token-wrong-token' });
    expect(res.status).toBe(401);
    expect((await errorOf(res)).code).toBe('QG_ERR_ADMIN_UNAUTHORIZED');
  });
});

describe('GET /metrics', () => {
  it('serves Prometheus text with values from the backend snapshot', async () => {
    const res = await call('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('quicgate_sessions_active 3');
    expect(text).toContain('quicgate_user_bytes_total{user="alice",direction="out"} 14000');
    expect(text).toContain('quicgate_sessions_by_transport{transport="h3"} 1');
  });
});

describe('GET /api/openapi.json', () => {
  it('serves an OpenAPI 3 document', async () => {
    const res = await call('/api/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toContain('/api/sessions/{id}');
  });
});

describe('close()', () => {
  it('stops listening, also with a keep-alive connection open', async () => {
    expect((await call('/api/sessions')).status).toBe(200);
    await server.close();
    await expect(call('/api/sessions')).rejects.toThrow();
  });
});
