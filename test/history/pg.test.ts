/**
 * What only a shared PostgreSQL has: down at start, down mid-run and back, migrations from several gateways at
 * once, a fleet-wide quota, fleet-wide queries filtered by gateway, a table lock that stalls writes, and the
 * password kept out of the logs. A real server per file (test/support/postgres-server.ts).
 */
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { isQuicgateError } from '../../src/errors.js';
import type { TrafficCounters } from '../../src/gateway/session.js';
import { applyPgMigrations, PG_MIGRATIONS } from '../../src/history/pg-migrations.js';
import { redactUrl } from '../../src/history/pg-url.js';
import { useBackend } from './helpers/backends.js';
import { FakeClock, advance, startRecord, type LogLine } from './helpers/fixtures.js';

const HOUR = 3_600_000;

function counters(bytesIn: number, bytesOut: number): TrafficCounters {
  return { bytesIn, packetsIn: 1, bytesOut, packetsOut: 1 };
}

const noPassword = (lines: readonly LogLine[], password: string): boolean => lines.every((l) => !JSON.stringify(l).includes(password));

describe('HistoryStore on PostgreSQL', () => {
  const h = useBackend('postgres');
  let clock: FakeClock;
  beforeEach(async () => {
    clock = new FakeClock(Date.UTC(2026, 10, 23, 10, 0, 0));
    if (!h.server.running) await h.server.start();
  });
  const ids = async (): Promise<string[]> => (await h.rows<{ id: string }>('SELECT id FROM sessions ORDER BY id')).map((r) => r.id);

  it('down at start: opens degraded, queues (bounded, drops counted), writes everything once it is up', async () => {
    await h.server.stop();
    const { store, lines } = await h.open(clock, { maxPending: 3, retry: { initialMs: 1000, maxMs: 1000 } });
    expect(store.health()).toMatchObject({ ok: false, degraded: true, lastError: expect.stringMatching(/unreachable/) });
    expect(store.location).not.toContain(h.server.password);
    // Quota usage of the fleet is unknown until the database is read: the enforcer keeps counting in memory.
    expect(() => store.quotaUsage('alice', store.periodKey('day'))).toThrow(/not been read/);
    for (let i = 1; i <= 5; i++) store.recordStart(startRecord(`s${i}`, 'alice', clock.wallNow() + i));
    store.addQuotaUsage('alice', store.periodKey('day'), 100);
    expect(store.health()).toMatchObject({ pending: 4, dropped: 2 });
    await advance(clock, store, 1000);
    expect(store.health().degraded).toBe(true);

    await h.server.start();
    await advance(clock, store, 1000);
    expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, dropped: 2 });
    expect(await ids()).toEqual(['s1', 's2', 's3']);
    expect(store.quotaUsage('alice', store.periodKey('day'))).toBe(100);
    expect(lines.filter((l) => l.msg === 'history: PostgreSQL unreachable at start; queueing (bounded) and retrying')).toHaveLength(1);
    expect(lines.some((l) => l.msg === 'history writes recovered')).toBe(true);
    expect(noPassword(lines, h.server.password)).toBe(true);
    await store.close();
  });

  it('down mid-run and back: nothing lost beyond the bounded queue, the overflow counted, counters caught up', async () => {
    const { store, lines } = await h.open(clock, { maxPending: 4, retry: { initialMs: 500, maxMs: 2000 } });
    const c = counters(10, 20);
    store.setSnapshotProvider(() => [{ id: 'live', counters: c }]);
    store.recordStart(startRecord('live', 'alice', clock.wallNow()));
    await advance(clock, store, 1000);
    expect(await ids()).toEqual(['live']);

    await h.server.stop();
    for (let i = 1; i <= 6; i++) store.recordStart(startRecord(`q${i}`, 'bob', clock.wallNow() + i));
    store.recordEnd({ id: 'q1', endedAt: clock.wallNow() + 100, reason: 'client_closed', message: null, counters: counters(5, 5) });
    c.bytesIn = 9999;
    await advance(clock, store, 1000);
    expect(store.health()).toMatchObject({ ok: false, degraded: true, pending: 4, dropped: 3 });
    await advance(clock, store, 500);
    await advance(clock, store, 1000);
    expect(store.health().degraded).toBe(true);

    await h.server.start();
    await advance(clock, store, 2000);
    expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, dropped: 3 });
    expect(await ids()).toEqual(['live', 'q1', 'q2', 'q3', 'q4']);
    expect(await h.rows('SELECT bytes_in FROM sessions WHERE id = $1', ['live'])).toEqual([{ bytes_in: 9999 }]);
    // The traffic delta of the live session was counted once, over the outage.
    expect(await h.rows('SELECT SUM(bytes_in) AS b FROM traffic_hourly')).toEqual([{ b: 9999 }]);
    expect(lines.filter((l) => l.msg === 'history writes failing; queueing and retrying')).toHaveLength(1);
    expect(noPassword(lines, h.server.password)).toBe(true);
    await store.close();
  });

  it('a table locked by another connection stalls writes: reported degraded, forwarding-side calls return at once, recovers', async () => {
    const { store } = await h.open(clock, {
      config: { ...h.config(), postgres: { ...h.config().postgres!, queryTimeoutMs: 800 } },
      retry: { initialMs: 200, maxMs: 200 },
      stallAfterMs: 500,
    });
    store.recordStart(startRecord('before', 'alice', clock.wallNow()));
    await store.flush();
    const locker = new pg.Client({ connectionString: h.config().postgres!.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE');
    try {
      store.recordStart(startRecord('during', 'alice', clock.wallNow()));
      clock.advance(1000); // starts the write, which waits for the lock
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) store.recordRejection({ user: null, source: '192.0.2.7', reason: 'auth_failed', at: clock.wallNow() });
      expect(performance.now() - t0).toBeLessThan(1000); // memory only, whatever the database does
      clock.advance(600);
      expect(store.health()).toMatchObject({ degraded: true, lastError: expect.stringMatching(/stalled/) });
      await store.settled(); // the client-side query timeout ends the wait: a failed write, retried
      expect(store.health()).toMatchObject({ degraded: true, lastError: expect.stringMatching(/timeout/i) });
    } finally {
      await locker.query('COMMIT');
      await locker.end();
    }
    await advance(clock, store, 200);
    await advance(clock, store, 1000);
    expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, dropped: 0 });
    expect(await ids()).toEqual(['before', 'during']);
    expect(await h.rows('SELECT SUM(count) AS n FROM rejection_counts')).toEqual([{ n: 1000 }]);
    await store.close();
  });

  it('several gateways migrating one fresh database at once: one applies each version, all start', async () => {
    const url = h.config().postgres!.url;
    const clients = await Promise.all(
      [1, 2, 3, 4].map(async () => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        return c;
      }),
    );
    try {
      const results = await Promise.all(clients.map((c, i) => applyPgMigrations(c as unknown as pg.PoolClient, i, { gatewayId: `gw-${i}` })));
      const latest = PG_MIGRATIONS.at(-1)!.version;
      expect(results.filter((r) => r.from === 0)).toHaveLength(1);
      expect(results.every((r) => r.to === latest)).toBe(true);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    expect(await h.rows('SELECT version FROM schema_migrations ORDER BY version')).toEqual(PG_MIGRATIONS.map((m) => ({ version: m.version })));
    // And whole stores, opening together on a second database.
    const url2 = await h.server.createDatabase(`concurrent_${process.pid}`);
    const config = { ...h.config(), postgres: { ...h.config().postgres!, url: url2 } };
    const stores = await Promise.all(['gw-a', 'gw-b', 'gw-c'].map((gatewayId) => h.open(clock, { gatewayId, config })));
    expect(stores.map((s) => s.store.health().ok)).toEqual([true, true, true]);
    expect(stores.flatMap((s) => s.store.startupEvents.map((e) => e.kind))).toEqual(['created']);
    await Promise.all(stores.map((s) => s.store.close()));
  });

  it('quota usage is fleet-wide: each gateway adds to one row and reads the sum after its next write', async () => {
    const a = await h.open(clock, { gatewayId: 'gw-a' });
    const b = await h.open(clock, { gatewayId: 'gw-b' });
    const day = a.store.periodKey('day');
    const month = a.store.periodKey('month');
    a.store.addQuotaUsage('alice', day, 1000);
    a.store.addQuotaUsage('alice', month, 1000);
    b.store.addQuotaUsage('alice', day, 300);
    b.store.addQuotaUsage('bob', month, 5);
    expect(a.store.quotaUsage('alice', day)).toBe(1000); // its own, until it has written and read back
    await a.store.flush();
    await b.store.flush();
    expect(b.store.quotaUsage('alice', day)).toBe(1300);
    await a.store.flush();
    expect(a.store.quotaUsage('alice', day)).toBe(1300);
    expect(a.store.quotaUsage('bob', month)).toBe(5);
    a.store.addQuotaUsage('alice', day, 1);
    expect(a.store.quotaUsage('alice', day)).toBe(1301); // pending counted at once
    expect(await h.rows('SELECT "user", period_key, bytes FROM quota_usage ORDER BY "user", period_key')).toEqual([
      { user: 'alice', period_key: month, bytes: 1000 },
      { user: 'alice', period_key: day, bytes: 1300 },
      { user: 'bob', period_key: month, bytes: 5 },
    ]);
    await a.store.close();
    await b.store.close();
    const c = await h.open(clock, { gatewayId: 'gw-c' });
    expect(c.store.quotaUsage('alice', day)).toBe(1301);
    await c.store.close();
  });

  it('queries answer fleet-wide and filter by gateway; every row carries its gateway', async () => {
    const a = await h.open(clock, { gatewayId: 'gw-a' });
    const b = await h.open(clock, { gatewayId: 'gw-b' });
    const t0 = clock.wallNow();
    a.store.recordStart(startRecord('a1', 'alice', t0));
    b.store.recordStart(startRecord('b1', 'alice', t0 + 1));
    b.store.recordStart(startRecord('b2', 'bob', t0 + 2));
    a.store.recordRejection({ user: 'eve', source: '192.0.2.66', reason: 'auth_failed', at: t0 });
    b.store.recordRejection({ user: 'eve', source: '192.0.2.66', reason: 'auth_failed', at: t0 + 5 });
    await a.store.flush();
    await b.store.flush();
    a.store.recordEnd({ id: 'a1', endedAt: t0 + 1000, reason: 'client_closed', message: null, counters: counters(100, 200) });
    b.store.recordEnd({ id: 'b1', endedAt: t0 + 1000, reason: 'client_closed', message: null, counters: counters(1, 2) });
    await a.store.flush();
    await b.store.flush();

    const all = await a.store.searchSessions({ sinceMs: t0 - HOUR, search: null, limit: 10 });
    expect(all.map((r) => [r.id, r.gatewayId])).toEqual([['b2', 'gw-b'], ['b1', 'gw-b'], ['a1', 'gw-a']]);
    expect((await a.store.searchSessions({ sinceMs: t0 - HOUR, search: null, limit: 10, gatewayId: 'gw-b' })).map((r) => r.id)).toEqual(['b2', 'b1']);
    expect((await a.store.searchSessions({ sinceMs: t0 - HOUR, search: 'GW-A', limit: 10 })).map((r) => r.id)).toEqual(['a1']);
    expect((await b.store.recentSessions({ limit: 10, user: 'alice', gatewayId: 'gw-a' })).map((r) => r.id)).toEqual(['a1']);
    expect(await b.store.stats({ windowHours: 1 })).toMatchObject({ sessionsStarted: 3, bytesIn: 101, bytesOut: 202, rejectionsByReason: { auth_failed: 2 } });
    expect(await b.store.stats({ windowHours: 1, gatewayId: 'gw-a' })).toMatchObject({ sessionsStarted: 1, bytesIn: 100, rejectionsByReason: { auth_failed: 1 } });
    const hour = (await a.store.hourly(1)).at(-1)!;
    expect(hour).toMatchObject({ sessions: 3, bytesIn: 101, bytesOut: 202 });
    expect((await a.store.hourly(1, 'gw-b')).at(-1)).toMatchObject({ sessions: 2, bytesIn: 1 });
    // One source refused on two gateways in one hour: one row fleet-wide, counted twice.
    expect(await a.store.recentRejections({ limit: 10 })).toEqual([expect.objectContaining({ source: '192.0.2.66', count: 2, firstAt: t0, at: t0 + 5 })]);
    expect(await a.store.userUsage('alice')).toMatchObject({ sessions: 2, openSessions: 0, bytesIn: 101 });
    await a.store.close();
    await b.store.close();
  });

  it("a write's live counters go as one statement: every open row updated, an ended one untouched, traffic once", async () => {
    const { store } = await h.open(clock);
    const live = new Map<string, TrafficCounters>();
    for (let i = 0; i < 300; i++) {
      store.recordStart(startRecord(`s${String(i).padStart(3, '0')}`, i % 2 === 0 ? 'alice' : 'bob', clock.wallNow() + i));
      live.set(`s${String(i).padStart(3, '0')}`, counters(0, 0));
    }
    store.setSnapshotProvider(() => [...live].map(([id, c]) => ({ id, counters: c })));
    await store.flush();
    for (const [id, c] of live) live.set(id, counters(Number(id.slice(1)) + 1, 2 * (Number(id.slice(1)) + 1)));
    // s000 ends in the same write: its end is written, its snapshot left out (the row stays closed).
    store.recordEnd({ id: 's000', endedAt: clock.wallNow() + 500, reason: 'client_closed', message: null, counters: counters(7, 8) });
    await advance(clock, store, 1000);
    const rows = await h.rows<{ id: string; status: string; bytes_in: number; bytes_out: number }>('SELECT id, status, bytes_in, bytes_out FROM sessions ORDER BY id');
    expect(rows[0]).toEqual({ id: 's000', status: 'closed', bytes_in: 7, bytes_out: 8 });
    expect(rows.slice(1)).toEqual([...Array(299).keys()].map((k) => ({ id: `s${String(k + 1).padStart(3, '0')}`, status: 'open', bytes_in: k + 2, bytes_out: 2 * (k + 2) })));
    // Each byte once: s000's 7, the others' 2 .. 300.
    expect(await h.rows('SELECT SUM(bytes_in) AS b FROM traffic_hourly')).toEqual([{ b: 7 + (300 * 301) / 2 - 1 }]);
    await store.close();
  });

  it('opening fails with QG_ERR_HISTORY on a schema newer than it knows (not a reason to retry for ever)', async () => {
    const first = await h.open(clock);
    await first.store.close();
    await h.rows("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)");
    let caught: unknown;
    try {
      await h.open(clock);
    } catch (err) {
      caught = err;
    }
    expect(isQuicgateError(caught, 'QG_ERR_HISTORY')).toBe(true);
    expect((caught as Error).message).toMatch(/schema version 999/);
  });
});

describe('redactUrl', () => {
  it('hides the password in the user info and in the query, keeps the rest', () => {
    expect(redactUrl('postgres://qg:s3cret@10.0.0.6:5432/history')).toBe('postgres://qg:***@10.0.0.6:5432/history');
    expect(redactUrl('postgresql://qg@db/history?sslmode=require&password=s3cret')).toBe('postgresql://qg@db/history?sslmode=require&password=***');
    expect(redactUrl('postgres://db/history')).toBe('postgres://db/history');
    expect(redactUrl('not a url s3cret')).not.toContain('s3cret');
  });
});
