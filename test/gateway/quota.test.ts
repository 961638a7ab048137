import { rmSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ReloadResult, UserView } from '../../src/admin/backend.js';
import { FakeClock } from '../../src/clock.js';
import type { QuotaConfig, ServerConfig, UserConfig } from '../../src/config/types.js';
import type { Gateway } from '../../src/gateway/server.js';
import type { CloseInfo } from '../../src/transport/types.js';
import { testPasswordHash, userConfig } from '../support/config-fixture.js';
import { samples, startHarness, tempDataDir, type Harness } from './operator-harness.js';

// One minute before a UTC day ends, so a test can roll the period over cheaply.
const LATE = Date.UTC(2026, 0, 1, 23, 59, 0);
const TO_MIDNIGHT = 60_000;

let hashes: Record<string, string> = {};
beforeAll(async () => {
  hashes = Object.fromEntries(await Promise.all(['bob', 'carol', 'dave'].map(async (n) => [n, await testPasswordHash(`pw-${n}`)] as const)));
});

const user = (name: string, overrides: Partial<UserConfig> = {}): UserConfig => userConfig(name, { passwordHash: hashes[name] ?? '', ...overrides });
const daily = (action: QuotaConfig['action'], throttleRate: number | null = null, bytes = 1000): QuotaConfig => ({ bytes, period: 'day', action, throttleRate });

let h: Harness | null = null;
const dirs: string[] = [];
afterEach(async () => {
  await h?.cleanup();
  h = null;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('quota: disconnect', () => {
  it('disconnects with quota_exceeded, refuses (403) until the period ends, also after a restart', async () => {
    const clock = new FakeClock(LATE);
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const config = { users: [user('bob', { quota: daily('disconnect') })] };
    h = await startHarness({ clock, dataDir, config });
    const { pair, session } = await h.connect('bob');
    const closed = new Promise<CloseInfo>((resolve) => void pair.client.closed.then(resolve));
    await h.sendFromClient(pair, session, 600);
    clock.advance(1000);
    expect(h.gateway.sessions.size).toBe(1); // 600 of 1000: not yet
    await h.sendToClient(session, 600);
    clock.advance(1000);
    expect((await closed).reason).toBe('quota_exceeded');
    expect(h.gateway.sessions.size).toBe(0);

    const refused = await h.listener.connect('bob', 'pw-bob');
    expect(refused).toEqual({ refused: { ok: false, status: 403, code: 'quota_exceeded', message: expect.any(String) } });
    const view = (await (await h.call('/api/users/bob')).json()) as UserView;
    expect(view.quota).toEqual({ bytes: 1000, period: 'day', periodKey: '2026-01-01', used: 1200, remaining: 0, action: 'disconnect', exceeded: true });
    const metrics = samples(await (await h.call('/metrics')).text());
    expect(metrics.get('quicgate_user_quota_used_bytes{user="bob"}')).toBe(1200);
    expect(metrics.get('quicgate_rejections_total{reason="quota_exceeded"}')).toBe(1);

    await h.surface.history?.flush();
    expect(h.rows<{ close_reason: string }>('SELECT close_reason FROM sessions')).toEqual([{ close_reason: 'quota_exceeded' }]);
    expect(h.rows<{ reason: string }>('SELECT reason, count FROM rejection_counts')).toEqual([{ reason: 'quota_exceeded', count: 1 }]);

    // A restart reads the spent quota back from the database.
    await h.cleanup();
    h = await startHarness({ clock, dataDir, config });
    expect('refused' in (await h.listener.connect('bob', 'pw-bob'))).toBe(true);

    clock.advance(TO_MIDNIGHT);
    const next = await h.connect('bob');
    expect(next.session.user).toBe('bob');
    expect((await h.surface.backend.getUser('bob'))?.quota).toMatchObject({ periodKey: '2026-01-02', used: 0, exceeded: false });
  });
});

describe('quota: throttle', () => {
  it("sets the user's shared bucket to the throttle rate until the period rolls over, then restores the limit", async () => {
    const clock = new FakeClock(LATE);
    h = await startHarness({ clock, config: { users: [user('carol', { bandwidth: 1_000_000, quota: daily('throttle', 50_000) })] } });
    const a = await h.connect('carol');
    const b = await h.connect('carol');
    const registry = h.gateway.registry;
    expect(registry.bucketOf('carol')?.rate).toBe(1_000_000);
    await h.sendFromClient(a.pair, a.session, 700);
    await h.sendToClient(b.session, 700);
    clock.advance(1000);

    const bucket = registry.bucketOf('carol');
    expect(bucket?.rate).toBe(50_000);
    expect(a.session.bucket).toBe(bucket);
    expect(b.session.bucket).toBe(bucket);
    expect(h.gateway.sessions.size).toBe(2); // throttled, not disconnected
    const view = (await (await h.call('/api/users/carol')).json()) as UserView;
    expect(view).toMatchObject({ bandwidth: 1_000_000, quota: { used: 1400, exceeded: true, action: 'throttle' } });

    // The user's last session goes; a new first session gets the throttle before any packet.
    h.gateway.sessions.killUser('carol', 'admin_kill');
    expect(registry.bucketOf('carol')).toBeNull();
    const c = await h.connect('carol');
    expect(c.session.bucket?.rate).toBe(50_000);

    clock.advance(TO_MIDNIGHT);
    expect(registry.bucketOf('carol')?.rate).toBe(1_000_000);
    expect(c.session.bucket).toBe(registry.bucketOf('carol'));
    expect((await h.surface.backend.getUser('carol'))?.quota).toMatchObject({ periodKey: '2026-01-02', used: 0, exceeded: false });
  });

  it('gives an unlimited user a bucket at the throttle rate, and takes it away next period', async () => {
    const clock = new FakeClock(LATE);
    h = await startHarness({ clock, config: { users: [user('dave', { quota: daily('throttle', 20_000) })] } });
    const { pair, session } = await h.connect('dave');
    expect(session.bucket).toBeNull();
    await h.sendFromClient(pair, session, 1500);
    clock.advance(1000);
    expect(session.bucket?.rate).toBe(20_000);
    expect(h.gateway.registry.bucketCount).toBe(1);
    clock.advance(TO_MIDNIGHT);
    expect(session.bucket).toBeNull();
    expect(h.gateway.registry.bucketCount).toBe(0);
  });

  it('keeps the throttle through a reload that bypasses the quota enforcer (SIGHUP calls gateway.reload directly)', async () => {
    const clock = new FakeClock(LATE);
    h = await startHarness({ clock, config: { users: [user('carol', { bandwidth: 1_000_000, quota: daily('throttle', 50_000) })] } });
    const { pair, session } = await h.connect('carol');
    await h.sendFromClient(pair, session, 1200);
    clock.advance(1000);
    expect(session.bucket?.rate).toBe(50_000);
    // No quota tick between the reload and the check: the registry alone decides the effective rate.
    const summary = h.gateway.reload({ ...h.gateway.currentConfig, users: [user('carol', { bandwidth: 2_000_000, quota: daily('throttle', 50_000) })] });
    expect(summary.bandwidthChanged).toEqual(['carol']);
    expect(session.bucket?.rate).toBe(50_000);
    // A second session of the throttled user starts throttled, as does a reconnect after all sessions ended.
    const b = await h.connect('carol');
    expect(b.session.bucket).toBe(session.bucket);
    h.gateway.sessions.killUser('carol');
    const c = await h.connect('carol');
    expect(c.session.bucket?.rate).toBe(50_000);
    // A configured limit below the throttle rate wins.
    h.gateway.reload({ ...h.gateway.currentConfig, users: [user('carol', { bandwidth: 10_000, quota: daily('throttle', 50_000) })] });
    expect(c.session.bucket?.rate).toBe(10_000);
  });

  it('keeps the throttle through a reload that resets buckets, lifts it when a reload raises the quota', async () => {
    const clock = new FakeClock(LATE);
    const carol = (quota: QuotaConfig): UserConfig => user('carol', { bandwidth: 1_000_000, quota });
    let next: ServerConfig | null = null;
    const reload = async (gateway: Gateway): Promise<ReloadResult> => {
      if (next === null) throw new Error('no config to reload');
      return gateway.reload(next);
    };
    h = await startHarness({ clock, reload, config: { users: [carol(daily('throttle', 50_000))] } });
    const { pair, session } = await h.connect('carol');
    await h.sendFromClient(pair, session, 1200);
    clock.advance(1000);
    expect(session.bucket?.rate).toBe(50_000);

    // Same quota, other bandwidth: gateway.reload sets the configured rate, the surface puts the throttle back.
    next = { ...h.gateway.currentConfig, users: [user('carol', { bandwidth: 2_000_000, quota: daily('throttle', 50_000) })] };
    expect((await h.call('/api/reload', { method: 'POST' })).status).toBe(200);
    expect(session.bucket?.rate).toBe(50_000);

    next = { ...h.gateway.currentConfig, users: [carol(daily('throttle', 50_000, 1_000_000))] };
    expect((await h.call('/api/reload', { method: 'POST' })).status).toBe(200);
    expect(session.bucket?.rate).toBe(1_000_000);
    expect((await h.surface.backend.getUser('carol'))?.quota).toMatchObject({ bytes: 1_000_000, used: 1200, exceeded: false });
  });
});
