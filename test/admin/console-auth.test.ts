/**
 * The admin listener's token checks under guessing, and logouts across a restart, over real HTTP with the fake
 * backend: wrong tokens (console login or bearer) are throttled per source with 429 + Retry-After before the
 * token is compared, counted in metrics; a logged-out cookie stays refused after the admin server (the gateway)
 * is started again on the same data directory; an unreadable logouts file fails closed.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REVOCATIONS_FILE } from '../../src/admin/console-session.js';
import { ConsoleAssets } from '../../src/admin/console-assets.js';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { FakeClock } from '../../src/clock.js';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';
import { captureLog, type CapturedLog } from '../support/log-capture.js';

const TOKEN = 'console-auth-test-token-0123456789';
const BUDGET = 5;
let backend: FakeAdminBackend;
let metrics: MetricsExporter;
let server: AdminServer | null = null;
let base: string;
let clock: FakeClock;
let log: CapturedLog;
let dataDir: string;
let assetsDir: string;

async function start(): Promise<void> {
  log = captureLog('debug');
  const started = await startAdminServer({
    config: { enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN },
    backend,
    metrics,
    logger: log.logger,
    clock,
    consoleAssets: ConsoleAssets.load(assetsDir),
    dataDir,
    authAttemptsPerMinute: BUDGET,
  });
  if (started === null) throw new Error('admin server did not start');
  server = started;
  base = `http://127.0.0.1:${server.port}`;
}

async function restart(): Promise<void> {
  await server?.close();
  server = null;
  await start();
}

beforeEach(async () => {
  backend = new FakeAdminBackend();
  metrics = new MetricsExporter(backend, { defaultMetrics: false });
  clock = new FakeClock(Date.UTC(2026, 0, 1));
  dataDir = mkdtempSync(join(tmpdir(), 'qg-console-data-'));
  assetsDir = mkdtempSync(join(tmpdir(), 'qg-console-assets-'));
  writeFileSync(join(assetsDir, 'index.html'), '<!doctype html><title>t</title>');
  await start();
});

afterEach(async () => {
  await server?.close();
  server = null;
  metrics.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(assetsDir, { recursive: true, force: true });
});

const login = (token: string): Promise<Response> =>
  fetch(`${base}/api/console/login`, { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: base }, body: JSON.stringify({ token }) });

async function loginCookie(): Promise<{ cookie: string; csrf: string }> {
  const res = await login(TOKEN);
  expect(res.status).toBe(200);
  const { csrfToken } = (await res.json()) as { csrfToken: string };
  return { cookie: (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '', csrf: csrfToken };
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

async function refusedMetric(reason: string): Promise<number> {
  const text = await metrics.render();
  const line = text.split('\n').find((l) => l.startsWith(`quicgate_admin_auth_refused_total{reason="${reason}"}`));
  return Number(line?.split(' ')[1] ?? NaN);
}

describe('wrong admin tokens are throttled per source', () => {
  it('console login: the budget of wrong tokens, then 429 with Retry-After even for the right token, until the window ends', async () => {
    // Right logins give their attempt back: many in a row are never throttled.
    for (let i = 0; i < BUDGET * 3; i++) expect((await login(TOKEN)).status).toBe(200);
    for (let i = 0; i < BUDGET; i++) {
      const res = await login(`wrong-${i}`);
      expect(res.status).toBe(401);
      expect(await errorCode(res)).toBe('QG_ERR_ADMIN_UNAUTHORIZED');
    }
    clock.advance(20_000);
    const refused = await login('wrong-again');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('40');
    expect(await errorCode(refused)).toBe('QG_ERR_ADMIN_THROTTLED');
    // Not compared while throttled: the right token gets the same answer, so guessing on learns nothing.
    const right = await login(TOKEN);
    expect(right.status).toBe(429);
    expect(await refusedMetric('wrong_token')).toBe(BUDGET);
    expect(await refusedMetric('throttled')).toBe(2);

    clock.advance(40_000); // the window ends: the budget is back
    expect((await login(TOKEN)).status).toBe(200);
  });

  it('bearer tokens share the budget; a valid bearer token is not throttled by right requests', async () => {
    const get = (token: string): Promise<Response> => fetch(`${base}/api/sessions`, { headers: { Authorization: `Bearer ${token}` } });
    for (let i = 0; i < BUDGET * 3; i++) expect((await get(TOKEN)).status).toBe(200);
    for (let i = 0; i < BUDGET - 1; i++) expect((await get(`guess-${i}`)).status).toBe(401);
    expect((await login('one-more-guess')).status).toBe(401); // the same source's budget, through the login
    const throttled = await get(TOKEN);
    expect(throttled.status).toBe(429);
    expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // A console cookie is not a guess: a page logged in before keeps working while its source is throttled.
    expect(await refusedMetric('wrong_token')).toBe(BUDGET);
  });
});

describe('logouts survive a restart', () => {
  it('a logged-out cookie is refused after the gateway restarts; other logins keep working', async () => {
    const out = await loginCookie();
    const kept = await loginCookie();
    const logout = await fetch(`${base}/api/console/logout`, { method: 'POST', headers: { Cookie: out.cookie, 'X-CSRF-Token': out.csrf, Origin: base } });
    expect(logout.status).toBe(200);
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: out.cookie } })).status).toBe(401);

    await restart();
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: out.cookie } })).status).toBe(401);
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: kept.cookie } })).status).toBe(200);

    // Expired revocations are dropped from the file as it is rewritten (it does not grow without bound).
    clock.advance(13 * 3_600_000);
    const fresh = await loginCookie();
    await fetch(`${base}/api/console/logout`, { method: 'POST', headers: { Cookie: fresh.cookie, 'X-CSRF-Token': fresh.csrf, Origin: base } });
    const { readFileSync } = await import('node:fs');
    const saved = JSON.parse(readFileSync(join(dataDir, REVOCATIONS_FILE), 'utf8')) as { revoked: Record<string, number> };
    expect(Object.keys(saved.revoked)).toHaveLength(1);
  });

  it('an unreadable logouts file fails closed: logins from before the start are refused, new ones work', async () => {
    const before = await loginCookie();
    await server?.close();
    server = null;
    writeFileSync(join(dataDir, REVOCATIONS_FILE), '{"version": 1, "revoked": {"x": "no"}}\n');
    clock.advance(1000);
    await start();
    expect(log.matching('earlier logouts unreadable')).toHaveLength(1);
    expect(String(log.matching('earlier logouts unreadable')[0]?.err)).toContain(REVOCATIONS_FILE);
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: before.cookie } })).status).toBe(401);
    const after = await loginCookie();
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: after.cookie } })).status).toBe(200);
  });

  it('a logout that cannot be saved says so (503) and still deletes the cookie', async () => {
    const session = await loginCookie();
    rmSync(dataDir, { recursive: true, force: true });
    writeFileSync(dataDir, 'not a directory');
    const res = await fetch(`${base}/api/console/logout`, { method: 'POST', headers: { Cookie: session.cookie, 'X-CSRF-Token': session.csrf, Origin: base } });
    expect(res.status).toBe(503);
    expect(res.headers.get('set-cookie')).toMatch(/^qg_console=;.*Max-Age=0/);
    expect((await fetch(`${base}/api/sessions`, { headers: { Cookie: session.cookie } })).status).toBe(401);
    rmSync(dataDir, { force: true });
    mkdirSync(dataDir);
  });
});
