/**
 * Refusals are stored as counts per (source, reason, UTC hour), at most `rejectionRowsPerHour` rows per hour
 * (plus one "*" row per reason for the sources beyond): a flood of refusals cannot fill the disk.
 */
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHarness } from '../gateway/operator-harness.js';
import { testPasswordHash, userConfig } from '../support/config-fixture.js';
import { REJECT_REASONS } from '../../src/gateway/session.js';
import { OTHER_SOURCES, RejectionCounter } from '../../src/history/rejection-counter.js';
import { FakeClock, openStore, rawRows, tempDir } from './helpers/fixtures.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);

describe('RejectionCounter', () => {
  it('keeps one pending row per source, reason and hour, and at most the limit per hour', () => {
    const limits: number[] = [];
    const counter = new RejectionCounter(10, (hourMs) => limits.push(hourMs));
    for (let i = 0; i < 1000; i++) counter.add({ user: `u${i}`, source: '192.0.2.7', reason: 'auth_failed', at: T0 + i });
    expect(counter.snapshot()).toEqual([
      { source: '192.0.2.7', reason: 'auth_failed', hourMs: T0, user: 'u999', count: 1000, firstAt: T0, lastAt: T0 + 999 },
    ]);
    for (let i = 0; i < 500; i++) counter.add({ user: null, source: `198.51.100.${i % 250}`, reason: i < 250 ? 'throttled' : 'auth_failed', at: T0 + 5000 + i });
    for (let i = 0; i < 300; i++) counter.add({ user: null, source: `203.0.113.${i % 200}`, reason: 'throttled', at: T0 + HOUR + i });
    const rows = counter.snapshot();
    const hour0 = rows.filter((r) => r.hourMs === T0);
    const hour1 = rows.filter((r) => r.hourMs === T0 + HOUR);
    expect(hour0.length).toBeLessThanOrEqual(10 + REJECT_REASONS.length);
    expect(hour1.length).toBeLessThanOrEqual(10 + REJECT_REASONS.length);
    expect(hour0.reduce((n, r) => n + r.count, 0)).toBe(1500);
    expect(hour1.reduce((n, r) => n + r.count, 0)).toBe(300);
    // Hour 1: sources 0..9 got rows (and their second refusal, i = 200..209); the other 280 went to "*".
    expect(hour1.filter((r) => r.source !== OTHER_SOURCES).map((r) => r.count)).toEqual(Array(10).fill(2));
    expect(hour1.find((r) => r.source === OTHER_SOURCES && r.reason === 'throttled')?.count).toBe(280);
    expect(limits).toEqual([T0, T0 + HOUR]);
  });

  it('forgets exactly what was written; counts added meanwhile stay pending', () => {
    const counter = new RejectionCounter(100);
    counter.add({ user: null, source: '192.0.2.1', reason: 'throttled', at: T0 });
    counter.add({ user: null, source: '192.0.2.1', reason: 'throttled', at: T0 + 1 });
    const sent = counter.snapshot();
    counter.add({ user: 'x', source: '192.0.2.1', reason: 'throttled', at: T0 + 2 });
    counter.written(sent);
    expect(counter.snapshot()).toEqual([{ source: '192.0.2.1', reason: 'throttled', hourMs: T0, user: 'x', count: 1, firstAt: T0, lastAt: T0 + 2 }]);
    counter.written(counter.snapshot());
    expect(counter.size).toBe(0);
  });
});

describe('rejections in the history file', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'history.sqlite');
  });
  afterEach(() => cleanup());

  it('a flood of refusals costs rows per hour, not per refusal; the stats count every refusal', async () => {
    const clock = new FakeClock(T0 + 30 * 60_000);
    const { store, lines } = await openStore(dir, clock, { config: { rejectionRowsPerHour: 50 } });
    // One source, 20,000 wrong passwords with rotating user names; then 5,000 sources throttled once each.
    for (let i = 0; i < 20_000; i++) store.recordRejection({ user: `guess${i}`, source: '192.0.2.66', reason: 'auth_failed', at: clock.wallNow() + (i % 1000) });
    await store.flush();
    for (let i = 0; i < 5_000; i++) {
      store.recordRejection({ user: null, source: `10.${(i >> 8) & 255}.${i & 255}.1`, reason: 'throttled', at: clock.wallNow() });
    }
    clock.advance(HOUR); // the next hour gets its own rows
    for (let i = 0; i < 100; i++) store.recordRejection({ user: null, source: '192.0.2.66', reason: 'auth_failed', at: clock.wallNow() });
    await store.flush();

    const perHour = rawRows<{ hour_ms: number; rows: number; total: number }>(
      file,
      'SELECT hour_ms, COUNT(*) AS rows, SUM(count) AS total FROM rejection_counts GROUP BY hour_ms ORDER BY hour_ms',
    );
    expect(perHour).toEqual([
      { hour_ms: T0, rows: 50 + 1, total: 25_000 },
      { hour_ms: T0 + HOUR, rows: 1, total: 100 },
    ]);
    expect(rawRows(file, 'SELECT source, reason, user, count FROM rejection_counts WHERE hour_ms = ? AND reason = ?', T0, 'auth_failed')).toEqual([
      { source: '192.0.2.66', reason: 'auth_failed', user: 'guess19999', count: 20_000 },
    ]);
    expect(rawRows(file, 'SELECT count FROM rejection_counts WHERE source = ?', OTHER_SOURCES)).toEqual([{ count: 5_000 - 49 }]);
    expect(lines.filter((l) => /rejection rows for this hour at their limit/.test(l.msg))).toHaveLength(1);

    expect((await store.stats({ windowHours: 2 })).rejectionsByReason).toEqual({ auth_failed: 20_100, throttled: 5_000 });
    expect((await store.stats({ windowHours: 1 })).rejectionsByReason).toEqual({ auth_failed: 20_100, throttled: 5_000 });
    const [newest] = await store.recentRejections({ limit: 1 });
    expect(newest).toEqual({ user: null, source: '192.0.2.66', reason: 'auth_failed', hourMs: T0 + HOUR, count: 100, firstAt: clock.wallNow(), at: clock.wallNow() });
    expect(store.health()).toMatchObject({ ok: true, pending: 0, dropped: 0 });
    await store.close();
  });

  it('pending rejection rows share the queue bound while writes fail: new rows dropped and counted, counts go on', async () => {
    const clock = new FakeClock(T0);
    const { store } = await openStore(dir, clock, { maxPending: 3, config: { rejectionRowsPerHour: 1000 } });
    for (let i = 0; i < 5; i++) store.recordRejection({ user: null, source: `192.0.2.${i}`, reason: 'throttled', at: T0 + i });
    store.recordRejection({ user: null, source: '192.0.2.0', reason: 'throttled', at: T0 + 10 });
    expect(store.health()).toMatchObject({ pending: 3, dropped: 2 });
    await store.flush();
    expect(rawRows(file, 'SELECT source, count FROM rejection_counts ORDER BY source')).toEqual([
      { source: '192.0.2.0', count: 2 },
      { source: '192.0.2.1', count: 1 },
      { source: '192.0.2.2', count: 1 },
    ]);
    await store.close();
  });

  it('refusals do not take the place of session records in the bounded queue', async () => {
    const clock = new FakeClock(T0);
    const { store } = await openStore(dir, clock, { maxPending: 10 });
    for (let i = 0; i < 10_000; i++) store.recordRejection({ user: null, source: '192.0.2.9', reason: 'throttled', at: T0 + i });
    store.recordStart({ id: 's1', user: 'alice', ipv4: null, ipv6: null, peer: '192.0.2.1:1', transport: 'h2', startedAt: T0 });
    expect(store.health()).toMatchObject({ pending: 2, dropped: 0 });
    await store.flush();
    expect(rawRows(file, 'SELECT id FROM sessions')).toEqual([{ id: 's1' }]);
    expect(rawRows(file, 'SELECT count FROM rejection_counts')).toEqual([{ count: 10_000 }]);
    await store.close();
  });
});

describe('the gateway records refusals per throttling key', () => {
  let hash = '';
  beforeAll(async () => {
    hash = await testPasswordHash('pw-alice');
  });

  it('wrong passwords from rotating addresses of one IPv6 /64 land in one row with their count', async () => {
    const h = await startHarness({ config: { users: [userConfig('alice', { passwordHash: hash })] } });
    try {
      for (let i = 1; i <= 6; i++) {
        const outcome = await h.listener.connect('alice', 'wrong', { sourceAddress: `2001:db8:77:1::${i.toString(16)}` });
        expect('refused' in outcome).toBe(true);
      }
      expect('refused' in (await h.listener.connect('alice', 'wrong', { sourceAddress: '192.0.2.44' }))).toBe(true);
      await h.surface.history!.flush();
      expect(h.rows('SELECT source, reason, user, count FROM rejection_counts ORDER BY source')).toEqual([
        { source: '192.0.2.44', reason: 'auth_failed', user: 'alice', count: 1 },
        { source: '2001:db8:77:1::/64', reason: 'auth_failed', user: 'alice', count: 6 },
      ]);
    } finally {
      await h.cleanup();
    }
  });
});
