/**
 * The console on the admin listener, over real HTTP with the fake backend: static files and their headers,
 * login / cookie / logout, CSRF and origin checks on cookie requests, bearer access unchanged, the new routes,
 * and the live feed's cost (one snapshot per interval, whatever the number of open pages).
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsoleAssets, CONSOLE_CSP } from '../../src/admin/console-assets.js';
import { pastSessionsCsv } from '../../src/admin/routes.js';
import { hourlyViewSchema, overviewViewSchema, pastSessionsViewSchema, userUpdateResultSchema } from '../../src/admin/schemas.js';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { FakeClock } from '../../src/clock.js';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';
import { captureLog, type CapturedLog } from '../support/log-capture.js';

const TOKEN = 'console-test-token-0123456789';
let backend: FakeAdminBackend;
let metrics: MetricsExporter;
let server: AdminServer;
let base: string;
let origin: string;
let clock: FakeClock;
let log: CapturedLog;
let assetsDir: string;

function writeAssets(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>t</title><link rel="stylesheet" href="app.css"><script type="module" src="app.js"></script>');
  writeFileSync(join(dir, 'app.js'), 'console.log("console");'.repeat(50));
  writeFileSync(join(dir, 'app.css'), 'body{margin:0}');
}

beforeEach(async () => {
  backend = new FakeAdminBackend();
  backend.addUser('alice', { bandwidth: 1_250_000 });
  backend.addUser('bob');
  backend.addSession('s-alice-1', 'alice', { transport: 'h3' });
  backend.addSession('s-bob-1', 'bob');
  metrics = new MetricsExporter(backend, { defaultMetrics: false });
  clock = new FakeClock(Date.UTC(2026, 0, 1));
  log = captureLog('debug');
  assetsDir = mkdtempSync(join(tmpdir(), 'qg-console-assets-'));
  writeAssets(assetsDir);
  const started = await startAdminServer({
    config: { enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN },
    backend,
    metrics,
    logger: log.logger,
    clock,
    consoleAssets: ConsoleAssets.load(assetsDir),
  });
  if (started === null) throw new Error('admin server did not start');
  server = started;
  base = `http://127.0.0.1:${server.port}`;
  origin = base;
});

afterEach(async () => {
  await server.close();
  metrics.close();
  rmSync(assetsDir, { recursive: true, force: true });
});

async function loginCookie(): Promise<{ cookie: string; csrf: string }> {
  const res = await fetch(`${base}/api/console/login`, { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: origin }, body: JSON.stringify({ token: TOKEN }) });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get('set-cookie') ?? '';
  const { csrfToken } = (await res.json()) as { csrfToken: string };
  return { cookie: setCookie.split(';')[0] ?? '', csrf: csrfToken };
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('console files', () => {
  it('are served to anyone with a strict CSP, gzip, ETag; / goes to /console/', async () => {
    const root = await fetch(`${base}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/console/');
    const page = await fetch(`${base}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).not.toMatch(/unsafe-inline|unsafe-eval|\*|https?:/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(await page.text()).toContain('<script type="module" src="app.js">');
    const script = await fetch(`${base}/console/app.js`);
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(script.headers.get('content-encoding')).toBe('gzip');
    const etag = script.headers.get('etag') ?? '';
    expect((await fetch(`${base}/console/app.js`, { headers: { 'If-None-Match': etag } })).status).toBe(304);
  });

  it('are only plain names of the build; other methods are refused', async () => {
    for (const path of ['/console/nothing.js', '/console/..%2Fpackage.json', '/console/a/b.js', '/console/.env']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
    }
    expect((await fetch(`${base}/console/`, { method: 'POST' })).status).toBe(405);
  });

  it('answer 503 with the reason when the console was not built', async () => {
    const missing = await startAdminServer({
      config: { enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN },
      backend,
      metrics,
      logger: log.logger,
      consoleAssets: ConsoleAssets.load(join(assetsDir, 'absent')),
    });
    try {
      const res = await fetch(`http://127.0.0.1:${missing?.port}/console/`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('QG_ERR_ADMIN_UNAVAILABLE');
      expect(body.error.message).toMatch(/npm run build/);
    } finally {
      await missing?.close();
    }
  });
});

describe('console login', () => {
  it('refuses a wrong token without a cookie, and never logs the token', async () => {
    const res = await fetch(`${base}/api/console/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: 'wrong-token-0123456789' }) });
    expect(res.status).toBe(401);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await errorCode(res)).toBe('QG_ERR_ADMIN_UNAUTHORIZED');
    await loginCookie();
    const text = JSON.stringify(log.lines);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('wrong-token-0123456789');
    expect(log.lines.some((l) => l.msg === 'console: logged in')).toBe(true);
  });

  it('sets an HttpOnly SameSite=Strict cookie that authenticates API reads', async () => {
    const res = await fetch(`${base}/api/console/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) });
    expect(res.headers.get('set-cookie')).toMatch(/^qg_console=v1\.[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    const { cookie, csrf } = await loginCookie();
    const sessions = await fetch(`${base}/api/sessions`, { headers: { Cookie: cookie } });
    expect(sessions.status).toBe(200);
    const me = (await (await fetch(`${base}/api/console/session`, { headers: { Cookie: cookie } })).json()) as { csrfToken: string };
    expect(me.csrfToken).toBe(csrf);
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: 'qg_console=v1.forged.cookie.value' } })).status).toBe(401);
  });

  it('behind a TLS reverse proxy (X-Forwarded-Proto: https): Secure cookie, https origin expected', async () => {
    const proxied = { 'Content-Type': 'application/json', 'X-Forwarded-Proto': 'https', Origin: origin.replace('http:', 'https:') };
    const res = await fetch(`${base}/api/console/login`, { method: 'POST', headers: proxied, body: JSON.stringify({ token: TOKEN }) });
    expect(res.status).toBe(200);
    expect(res.headers.get('set-cookie')).toMatch(/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure$/);
    const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const { csrfToken } = (await res.json()) as { csrfToken: string };
    const kill = (headers: Record<string, string>) => fetch(`${base}/api/sessions/s-bob-1`, { method: 'DELETE', headers: { Cookie: cookie, 'X-CSRF-Token': csrfToken, ...headers } });
    expect((await kill({ 'X-Forwarded-Proto': 'https', Origin: origin })).status).toBe(403);
    expect((await kill({ 'X-Forwarded-Proto': 'https', Origin: origin.replace('http:', 'https:') })).status).toBe(200);
  });

  it('refuses a login posted from another origin', async () => {
    const res = await fetch(`${base}/api/console/login`, { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'http://evil.example' }, body: JSON.stringify({ token: TOKEN }) });
    expect(res.status).toBe(403);
    expect(res.headers.get('set-cookie')).toBeNull();
  });

  it('logout ends the session, also for a copy of the cookie', async () => {
    const { cookie, csrf } = await loginCookie();
    const out = await fetch(`${base}/api/console/logout`, { method: 'POST', headers: { Cookie: cookie, 'X-CSRF-Token': csrf, Origin: origin } });
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toMatch(/^qg_console=; .*Max-Age=0/);
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: cookie } })).status).toBe(401);
  });
});

describe('CSRF protection', () => {
  it('refuses state changes with the cookie but without the right header, and kills nothing', async () => {
    const { cookie, csrf } = await loginCookie();
    const attempts: [string, Record<string, string>][] = [
      ['no header', { Cookie: cookie }],
      ['wrong header', { Cookie: cookie, 'X-CSRF-Token': `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` }],
      ['other origin', { Cookie: cookie, 'X-CSRF-Token': csrf, Origin: 'http://evil.example' }],
      ['cross-site fetch', { Cookie: cookie, 'X-CSRF-Token': csrf, 'Sec-Fetch-Site': 'cross-site' }],
    ];
    for (const [what, headers] of attempts) {
      const res = await fetch(`${base}/api/sessions/s-alice-1`, { method: 'DELETE', headers });
      expect(res.status, what).toBe(403);
      expect(await errorCode(res), what).toBe('QG_ERR_ADMIN_FORBIDDEN');
    }
    const patch = await fetch(`${base}/api/users/alice`, { method: 'PATCH', headers: { Cookie: cookie, 'Content-Type': 'application/json' }, body: '{"disabled":true}' });
    expect(patch.status).toBe(403);
    expect(backend.ended).toEqual([]);
    expect(backend.userUpdates).toEqual([]);

    const ok = await fetch(`${base}/api/sessions/s-alice-1`, { method: 'DELETE', headers: { Cookie: cookie, 'X-CSRF-Token': csrf, Origin: origin, 'Sec-Fetch-Site': 'same-origin' } });
    expect(ok.status).toBe(200);
    expect(backend.ended).toEqual([{ id: 's-alice-1', reason: 'admin_kill' }]);
  });

  it('does not apply to bearer-token requests (the API works as before)', async () => {
    const res = await fetch(`${base}/api/users/bob/sessions`, { method: 'DELETE', headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ user: 'bob', sessionsClosed: 1, reason: 'admin_kill' });
    expect((await fetch(`${base}/api/sessions`)).status).toBe(401);
  });
});

describe('routes for the console', () => {
  const bearer = { Authorization: `Bearer ${TOKEN}` };

  it('PATCH /api/users/:name takes a rate with its unit, bytes per second, unlimited or disabled', async () => {
    const patch = (name: string, body: unknown) =>
      fetch(`${base}/api/users/${name}`, { method: 'PATCH', headers: { ...bearer, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const res = await patch('alice', { bandwidth: '5 Mbit/s' });
    expect(res.status).toBe(200);
    const result = userUpdateResultSchema.parse(await res.json());
    expect(result.changes).toEqual(['bandwidth 1250000 -> 625000']);
    expect(result.reload).not.toBeNull();
    await patch('alice', { bandwidth: 1000 });
    await patch('alice', { bandwidth: 'unlimited' });
    await patch('bob', { disabled: true });
    expect(backend.userUpdates).toEqual([
      { name: 'alice', changes: { bandwidth: 625_000 } },
      { name: 'alice', changes: { bandwidth: 1000 } },
      { name: 'alice', changes: { bandwidth: null } },
      { name: 'bob', changes: { disabled: true } },
    ]);
    for (const [body, parameter] of [
      [{}, 'body'],
      [{ bandwidth: 'fast' }, 'body.bandwidth'],
      [{ bandwidth: '0 Mbit/s' }, 'body.bandwidth'],
      [{ bandwidth: -5 }, 'body.bandwidth'],
      [{ disabled: 'yes' }, 'body.disabled'],
      [{ password: 'x' }, 'body.password'],
    ] as const) {
      const bad = await patch('alice', body);
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(((await bad.json()) as { error: { details: { parameter: string } } }).error.details.parameter).toBe(parameter);
    }
    expect((await patch('nobody', { disabled: true })).status).toBe(404);
    expect(backend.userUpdates).toHaveLength(4);
  });

  it('GET /api/overview, /api/history/hourly and /api/history/sessions answer what their schemas say', async () => {
    backend.hourlyRows = [{ hour: '2026-01-01T00:00:00.000Z', sessions: 2, bytesIn: 10, bytesOut: 20 }];
    backend.past = [
      { id: 'p1', user: 'alice', ipv4: '198.18.0.2', ipv6: null, peer: '192.0.2.11:1', transport: 'h3', startedAt: '2026-01-01T00:00:00.000Z', endedAt: '2026-01-01T00:01:00.000Z', durationSeconds: 60, bytesIn: 1, bytesOut: 2, status: 'closed', endReason: 'admin_kill', endMessage: 'closed by the administrator', gateway: 'gw-a' },
      { id: 'p2', user: 'bob', ipv4: null, ipv6: null, peer: '192.0.2.12:1', transport: 'h2', startedAt: '2026-01-01T00:00:00.000Z', endedAt: null, durationSeconds: null, bytesIn: 0, bytesOut: 0, status: 'open', endReason: null, endMessage: null, gateway: 'gw-a' },
    ];
    const overview = overviewViewSchema.parse(await (await fetch(`${base}/api/overview`, { headers: bearer })).json());
    expect(overview.sessions.map((s) => s.id)).toEqual(['s-alice-1', 's-bob-1']);
    expect(overview.users.map((u) => [u.name, u.sessions])).toEqual([['alice', 1], ['bob', 1]]);
    const hourly = hourlyViewSchema.parse(await (await fetch(`${base}/api/history/hourly?window_hours=6`, { headers: bearer })).json());
    expect(hourly).toEqual({ windowHours: 6, available: true, hours: backend.hourlyRows });
    const past = pastSessionsViewSchema.parse(await (await fetch(`${base}/api/history/sessions?q=admin_kill`, { headers: bearer })).json());
    expect(past.sessions.map((s) => s.id)).toEqual(['p1']);
    const csv = await fetch(`${base}/api/history/sessions?format=csv`, { headers: bearer });
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(csv.headers.get('content-disposition')).toBe('attachment; filename="quicgate-sessions.csv"');
    expect((await csv.text()).split('\r\n')).toEqual([
      'id,user,ipv4,ipv6,peer,transport,startedAt,endedAt,durationSeconds,bytesIn,bytesOut,status,endReason,endMessage,gateway',
      'p1,alice,198.18.0.2,,192.0.2.11:1,h3,2026-01-01T00:00:00.000Z,2026-01-01T00:01:00.000Z,60,1,2,closed,admin_kill,closed by the administrator,gw-a',
      'p2,bob,,,192.0.2.12:1,h2,2026-01-01T00:00:00.000Z,,,0,0,open,,,gw-a',
      '',
    ]);
    for (const query of ['limit=0', 'limit=20000', 'window_hours=0', 'format=xml', 'q=a&q=b', 'other=1', 'gateway=a%20b']) {
      expect((await fetch(`${base}/api/history/sessions?${query}`, { headers: bearer })).status, query).toBe(400);
    }
  });

  it('CSV quotes what needs quoting and defuses spreadsheet formulas', () => {
    const csv = pastSessionsCsv({
      available: true,
      sessions: [{ id: 'x', user: '=cmd()', ipv4: null, ipv6: null, peer: 'p', transport: 'h2', startedAt: 's', endedAt: null, durationSeconds: 1.5, bytesIn: 0, bytesOut: 0, status: 'closed', endReason: 'error', endMessage: 'said "no", then\nleft', gateway: 'gw-a' }],
    });
    expect(csv.split('\r\n')[1]).toBe(`x,'=cmd(),,,p,h2,s,,1.5,0,0,closed,error,"said ""no"", then\nleft",gw-a`);
  });
});

describe('live feed', () => {
  /** Opens the event stream and resolves with a reader of its text. */
  function openStream(cookie: string): Promise<{ next: () => Promise<string>; close: () => void }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${base}/api/console/events`, { headers: { Cookie: cookie } }, (res) => {
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
        res.setEncoding('utf8');
        let buffer = '';
        const waiting: ((event: string) => void)[] = [];
        const queued: string[] = [];
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (!event.startsWith('event: overview')) continue;
            const waiter = waiting.shift();
            if (waiter === undefined) queued.push(event);
            else waiter(event);
          }
        });
        const next = (): Promise<string> => {
          const event = queued.shift();
          return event === undefined ? new Promise((r) => waiting.push(r)) : Promise.resolve(event);
        };
        resolve({ next, close: () => req.destroy() });
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('sends one shared snapshot per interval to every open page, and stops when none is open', async () => {
    for (let i = 0; i < 1000; i++) backend.addSession(`load-${i}`, i % 2 === 0 ? 'alice' : 'bob');
    const { cookie } = await loginCookie();
    const timersBefore = clock.pendingTimers;
    const pages = await Promise.all(Array.from({ length: 10 }, () => openStream(cookie)));
    const first = await Promise.all(pages.map((p) => p.next()));
    expect(overviewViewSchema.parse(JSON.parse(first[0]!.slice(first[0]!.indexOf('data: ') + 6))).sessions).toHaveLength(1002);
    // The first page took the snapshot; the nine others got the same one.
    expect(backend.overviewCalls).toBe(1);
    for (let tick = 1; tick <= 3; tick++) {
      const next = Promise.all(pages.map((p) => p.next()));
      clock.advance(1000);
      const frames = await next;
      expect(new Set(frames).size).toBe(1);
      expect(backend.overviewCalls).toBe(1 + tick);
    }
    expect(clock.pendingTimers).toBe(timersBefore + 1);
    for (const p of pages) p.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(clock.pendingTimers).toBe(timersBefore);
    clock.advance(5000);
    expect(backend.overviewCalls).toBe(4);
  });

  it('refuses the stream without a login', async () => {
    expect((await fetch(`${base}/api/console/events`)).status).toBe(401);
  });
});
