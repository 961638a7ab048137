import { writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { HealthView, SessionView, UserView } from '../../src/admin/backend.js';
import { FakeClock } from '../../src/clock.js';
import type { UserConfig } from '../../src/config/types.js';
import { QuicgateError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { attachOperatorSurface } from '../../src/gateway/operator.js';
import { openDatabase } from '../../src/history/sqlite.js';
import { Gateway } from '../../src/gateway/server.js';
import type { CloseInfo } from '../../src/transport/types.js';
import { MemoryTun } from '../../src/tun/memory.js';
import { serverConfig, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { samples, settle, startHarness, tempDataDir, type Harness } from './operator-harness.js';
import { MemoryListener } from '../support/memory-gateway.js';

const MINUTE = 60_000;
let hashes: Record<string, string> = {};
beforeAll(async () => {
  hashes = Object.fromEntries(await Promise.all(['alice', 'bob'].map(async (n) => [n, await testPasswordHash(`pw-${n}`)] as const)));
});

const user = (name: string, overrides: Partial<UserConfig> = {}): UserConfig => userConfig(name, { passwordHash: hashes[name] ?? '', ...overrides });

interface SessionRow {
  id: string;
  user: string;
  status: string;
  close_reason: string | null;
  bytes_in: number;
  bytes_out: number;
  ipv4: string | null;
  transport: string;
}

let h: Harness | null = null;
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

describe('operator surface over a running gateway', () => {
  it('lists live sessions with addresses, bytes, ISO times and current rates', async () => {
    h = await startHarness({ config: { users: [user('alice', { bandwidth: 10_000_000 })] } });
    const { pair, session } = await h.connect('alice', 'h3');
    const received: number[] = [];
    pair.client.setReceiver({ onPacket: (_d, _o, length) => void received.push(length), onBatchEnd() {} });
    h.clock.advance(500);
    await h.sendFromClient(pair, session, 120);
    await h.sendToClient(session, 220);
    expect(h.tun.written.map((p) => p.length)).toEqual([120]);
    expect(received).toEqual([220]);
    h.clock.advance(1500); // the sampler has sampled at 1 s and 2 s

    const res = await h.call('/api/sessions');
    expect(res.status).toBe(200);
    const { sessions } = (await res.json()) as { sessions: SessionView[] };
    expect(sessions).toHaveLength(1);
    const view = sessions[0]!;
    expect(view).toMatchObject({
      id: session.id,
      user: 'alice',
      ipv4: session.ipv4,
      ipv6: session.ipv6,
      peer: session.peer,
      transport: 'h3',
      startedAt: new Date(Date.UTC(2026, 0, 1)).toISOString(),
      // The packets were the last activity, 500 ms after the start.
      lastActivityAt: new Date(Date.UTC(2026, 0, 1) + 500).toISOString(),
      bytesIn: 120,
      bytesOut: 220,
      packetsIn: 1,
      packetsOut: 1,
    });
    expect(view.ipv4).toMatch(/^198\.18\.0\./);
    // 120 and 220 bytes over the 2 s from the session's start to the latest sample.
    expect(view.rateIn).toBe(60);
    expect(view.rateOut).toBe(110);
    h.clock.advance(5000); // idle: the window slides past the packets
    expect(h.surface.backend.getSession(session.id)).toMatchObject({ rateIn: 0, rateOut: 0 });

    const one = await h.call(`/api/sessions/${session.id}`);
    expect(((await one.json()) as SessionView).bytesOut).toBe(220);
  });

  it('DELETE kills the session with admin_kill, and the history row says so', async () => {
    h = await startHarness({ config: { users: [user('alice')] } });
    const { pair, session } = await h.connect('alice');
    await h.sendFromClient(pair, session, 100);
    const clientClosed = new Promise<CloseInfo>((resolve) => void pair.client.closed.then(resolve));

    const res = await h.call(`/api/sessions/${session.id}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: session.id, closed: true, reason: 'admin_kill' });
    expect((await clientClosed).reason).toBe('admin_kill');
    expect(h.gateway.sessions.size).toBe(0);
    expect((await h.call(`/api/sessions/${session.id}`)).status).toBe(404);
    expect((await h.call(`/api/sessions/${session.id}`, { method: 'DELETE' })).status).toBe(404);

    await h.surface.history?.flush();
    const rows = h.rows<SessionRow>('SELECT * FROM sessions');
    expect(rows).toEqual([expect.objectContaining({ id: session.id, user: 'alice', status: 'closed', close_reason: 'admin_kill', bytes_in: 100, ipv4: session.ipv4 })]);
  });

  it("GET /api/users/:name shows the limit, live sessions, all-time usage and the quota", async () => {
    const quota = { bytes: 1_000_000, period: 'month' as const, action: 'throttle' as const, throttleRate: 50_000 };
    h = await startHarness({ config: { users: [user('alice', { bandwidth: 1_250_000, maxSessions: 3, quota }), user('bob')] } });
    const first = await h.connect('alice');
    await h.sendFromClient(first.pair, first.session, 1000);
    first.pair.client.close({ reason: 'client_closed' });
    await settle();
    expect(h.gateway.sessions.size).toBe(0);
    const second = await h.connect('alice');
    await h.sendToClient(second.session, 500);
    h.clock.advance(1000);

    const res = await h.call('/api/users/alice');
    expect(res.status).toBe(200);
    const view = (await res.json()) as UserView;
    expect(view).toMatchObject({
      name: 'alice',
      disabled: false,
      bandwidth: 1_250_000,
      burst: 62_500, // the default for 10 Mbit/s: 50 ms of traffic
      maxSessions: 3,
      usage: { sessions: 2, bytesIn: 1000, bytesOut: 500 },
      quota: { bytes: 1_000_000, period: 'month', periodKey: '2026-01', used: 1500, remaining: 998_500, action: 'throttle', exceeded: false },
    });
    expect(view.sessions.map((s) => s.id)).toEqual([second.session.id]);

    const bob = (await (await h.call('/api/users/bob')).json()) as UserView;
    expect(bob).toMatchObject({ bandwidth: null, burst: null, maxSessions: 4, quota: null, usage: { sessions: 0, bytesIn: 0, bytesOut: 0 } });
    expect((await h.call('/api/users/nobody')).status).toBe(404);
  });

  it('/metrics shows per-user counters, keeps them after the session ends, forgets the user after the eviction time', async () => {
    h = await startHarness({ config: { users: [user('alice')] }, ledgerRetainMs: 10 * MINUTE });
    const { pair, session } = await h.connect('alice', 'h3');
    await h.sendFromClient(pair, session, 300);
    await h.sendToClient(session, 700);
    const scrape = async (): Promise<Map<string, number>> => {
      const res = await h!.call('/metrics');
      expect(res.status).toBe(200);
      return samples(await res.text());
    };

    let s = await scrape();
    expect(s.get('quicgate_user_bytes_total{user="alice",direction="in"}')).toBe(300);
    expect(s.get('quicgate_user_bytes_total{user="alice",direction="out"}')).toBe(700);
    expect(s.get('quicgate_user_packets_total{user="alice",direction="in"}')).toBe(1);
    expect(s.get('quicgate_sessions_active')).toBe(1);
    expect(s.get('quicgate_sessions_by_transport{transport="h3"}')).toBe(1);
    expect(s.get('quicgate_pool_free_addresses{family="ipv4"}')).toBe(252); // /24 minus network, broadcast, gateway, this one

    h.clock.advance(90_000);
    expect(h.surface.backend.killSession(session.id)).toBe(true);
    h.clock.advance(5 * MINUTE);
    s = await scrape();
    expect(s.get('quicgate_user_bytes_total{user="alice",direction="in"}')).toBe(300);
    expect(s.get('quicgate_sessions_ended_total{reason="admin_kill"}')).toBe(1);
    expect(s.get('quicgate_session_duration_seconds_count')).toBe(1);
    expect(s.get('quicgate_session_duration_seconds_sum')).toBe(90);
    expect(s.get('quicgate_sessions_active')).toBe(0);

    h.clock.advance(5 * MINUTE);
    s = await scrape();
    expect([...s.keys()].filter((k) => k.includes('user="alice"'))).toEqual([]);
    expect(h.surface.backend.ledger.size).toBe(0);
  });

  it('records started and ended sessions and rejections in the history file; stop records the shutdown', async () => {
    h = await startHarness({ config: { users: [user('alice'), user('bob', { disabled: true })] } });
    const a = await h.connect('alice');
    const b = await h.connect('alice');
    expect('refused' in (await h.listener.connect('alice', 'wrong'))).toBe(true);
    expect('refused' in (await h.listener.connect('bob', 'pw-bob'))).toBe(true);
    await h.sendFromClient(a.pair, a.session, 200);
    a.pair.client.close({ reason: 'client_closed' });
    await settle();
    h.clock.advance(1000); // one flush interval: the snapshot of b's counters and the rows are written
    await h.surface.history?.settled();

    const rows = h.rows<SessionRow>('SELECT * FROM sessions ORDER BY started_at, id');
    expect(rows.map((r) => [r.id, r.status, r.close_reason]).sort()).toEqual(
      [
        [a.session.id, 'closed', 'client_closed'],
        [b.session.id, 'open', null],
      ].sort(),
    );
    expect(rows.find((r) => r.id === a.session.id)?.bytes_in).toBe(200);
    expect(h.rows<{ user: string; reason: string }>('SELECT user, reason, count FROM rejection_counts ORDER BY reason')).toEqual([
      { user: 'alice', reason: 'auth_failed', count: 1 },
      { user: 'bob', reason: 'user_disabled', count: 1 },
    ]);

    const history = h.surface.history;
    await h.surface.stop();
    // The gateway closed b before the history was closed, so its end is in the file.
    expect(h.rows<SessionRow>('SELECT * FROM sessions WHERE id = ?', b.session.id)).toEqual([
      expect.objectContaining({ status: 'closed', close_reason: 'server_shutdown' }),
    ]);
    expect(history?.health().ok).toBe(false); // closed
  });

  it('stats come from the history window, and from memory without a history', async () => {
    h = await startHarness({ config: { users: [user('alice'), user('bob')] } });
    const a = await h.connect('alice');
    await h.sendFromClient(a.pair, a.session, 400);
    await h.listener.connect('bob', 'nope');
    h.clock.advance(1000);
    const res = await h.call('/api/stats?window_hours=24');
    expect(await res.json()).toEqual({
      windowHours: 24,
      activeSessions: 1,
      activeUsers: 1,
      sessionsInWindow: 1,
      bytesInWindow: { in: 400, out: 0 },
      topUsers: [{ user: 'alice', bytes: 400 }],
      rejections: { auth_failed: 1 },
      // SQLite: this gateway's own rows; no fleet: its own live sessions.
      scope: { gateway: h.surface.backend.fleet().gatewayId, history: 'gateway', live: 'gateway' },
    });
    // Another gateway's rows are not in this gateway's SQLite file.
    expect(await (await h.call('/api/stats?window_hours=24&gateway=no-such-gateway')).json()).toMatchObject({ activeSessions: 0, sessionsInWindow: 0, topUsers: [] });
    expect((await h.surface.backend.getUser('alice'))?.scope).toEqual({ gateway: h.surface.backend.fleet().gatewayId, sessions: 'gateway', usage: 'gateway' });
    await h.cleanup();

    h = await startHarness({ config: { users: [user('alice'), user('bob')], history: { enabled: false, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null } } });
    expect(h.surface.history).toBeNull();
    const b = await h.connect('bob');
    await h.sendToClient(b.session, 50);
    await h.listener.connect('alice', 'nope');
    expect(await h.surface.backend.stats(1)).toEqual({
      windowHours: 1,
      activeSessions: 1,
      activeUsers: 1,
      sessionsInWindow: 1,
      bytesInWindow: { in: 0, out: 50 },
      topUsers: [{ user: 'bob', bytes: 50 }],
      rejections: { auth_failed: 1 },
      scope: { gateway: h.surface.backend.fleet().gatewayId, history: 'memory', live: 'gateway' },
    });
    // From memory nothing is known of another gateway.
    expect(await h.surface.backend.stats(1, 'no-such-gateway')).toMatchObject({ activeSessions: 0, sessionsInWindow: 0, bytesInWindow: { in: 0, out: 0 }, topUsers: [] });
    expect(h.surface.backend.health()).toMatchObject({ status: 'ok', checks: { history: 'disabled' } });
    expect(await h.surface.backend.getUser('bob')).toMatchObject({ usage: { sessions: 1, bytesIn: 0, bytesOut: 50 }, scope: { sessions: 'gateway', usage: 'memory' } });
  });
});

describe('reload', () => {
  it('answers what changed and what needs a restart; an invalid config is a 409 QG_ERR_RELOAD_FAILED with the message', async () => {
    let fail = false;
    h = await startHarness({
      config: { users: [user('alice')] },
      reload: async (gateway) => {
        if (fail) throw new QuicgateError('QG_ERR_CONFIG_INVALID', 'users.yaml: users[0].bandwidth: expected a rate');
        return gateway.reload({ ...gateway.currentConfig, users: [] });
      },
    });
    await h.connect('alice');
    const ok = await h.call('/api/reload', { method: 'POST' });
    expect(await ok.json()).toEqual({ bandwidthChanged: [], usersRemoved: ['alice'], sessionsClosed: 1, needRestart: [], changed: [{ key: 'users', effect: 'live' }] });
    fail = true;
    const bad = await h.call('/api/reload', { method: 'POST' });
    expect(bad.status).toBe(409);
    expect(await bad.json()).toEqual({ error: { code: 'QG_ERR_RELOAD_FAILED', message: 'users.yaml: users[0].bandwidth: expected a rate' } });
  });
});

describe('health', () => {
  it('is degraded (503) while history writes fail, and ok again when they recover', async () => {
    h = await startHarness({ config: { users: [user('alice')] } });
    expect((await h.call('/healthz', { token: null })).status).toBe(200);
    const other = openDatabase(path.join(h.dataDir, 'history.sqlite'));
    other.exec('BEGIN EXCLUSIVE');
    await h.connect('alice');
    h.clock.advance(1000); // the flush fails on the lock
    await h.surface.history?.settled();
    const anonymous = await h.call('/healthz', { token: null });
    expect(anonymous.status).toBe(503);
    expect(await anonymous.json()).toEqual({ status: 'degraded' });
    const detailed = (await (await h.call('/healthz')).json()) as HealthView;
    expect(detailed).toMatchObject({ status: 'degraded', uptimeSeconds: 1, checks: { tun: 'ok', listener: 'ok', history: 'degraded' } });
    expect(detailed.checks.historyError).toMatch(/SQLITE_BUSY|locked/);
    const metrics = samples(await (await h.call('/metrics')).text());
    expect(metrics.get('quicgate_history_degraded')).toBe(1);
    expect(metrics.get('quicgate_history_pending_records')).toBeGreaterThan(0);

    other.exec('COMMIT');
    other.close();
    h.clock.advance(5000); // the store's retry succeeds
    await h.surface.history?.settled();
    expect((await h.call('/healthz', { token: null })).status).toBe(200);
  });

  it('runs without history (degraded) when the history cannot be opened at all', async () => {
    const dir = tempDataDir();
    const notADir = path.join(dir, 'file');
    writeFileSync(notADir, 'not a directory');
    try {
      h = await startHarness({ dataDir: notADir, config: { users: [user('alice')] } });
      expect(h.surface.history).toBeNull();
      expect(h.log.matching('history could not be opened')).toHaveLength(1);
      await h.connect('alice'); // the gateway serves regardless
      const health = (await (await h.call('/healthz')).json()) as HealthView;
      expect(health.status).toBe('degraded');
      expect(health.checks.history).toBe('degraded');
      expect(health.checks.historyError).toEqual(expect.any(String));
    } finally {
      await h?.cleanup();
      h = null;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports the listener down after the gateway stopped', async () => {
    h = await startHarness({ config: { users: [user('alice')] } });
    await h.gateway.stop();
    expect(h.surface.backend.health()).toMatchObject({ status: 'degraded', checks: { listener: 'down', tun: 'down' } });
  });
});

describe('admin server startup', () => {
  it('is not started without a token; the rest of the surface still works', async () => {
    const clock = new FakeClock();
    const dataDir = tempDataDir();
    const config = serverConfig({ dataDir, users: [user('alice')], history: { enabled: true, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null } });
    let listener: MemoryListener | null = null;
    const gateway = await Gateway.start(config, {
      logger: silentLogger(),
      clock,
      openTun: async (s) => new MemoryTun({ name: s.name, mtu: s.mtu }),
      listen: async ({ admission }) => (listener = new MemoryListener(admission)),
    });
    const surface = await attachOperatorSurface(gateway, {
      config,
      logger: silentLogger(),
      clock,
      reload: async () => ({ bandwidthChanged: [], usersRemoved: [], sessionsClosed: 0, needRestart: [], changed: [] }),
      metrics: { defaultMetrics: false },
    });
    try {
      expect(surface.adminPort).toBeNull();
      expect(surface.history).not.toBeNull();
      expect('pair' in (await listener!.connect('alice', 'pw-alice'))).toBe(true);
      expect(surface.backend.listSessions()).toHaveLength(1);
    } finally {
      await surface.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
    expect(clock.pendingTimers).toBe(0);
  });
});
