import { mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TrafficCounters } from '../../src/gateway/session.js';
import { isQuicgateError } from '../../src/errors.js';
import type { FlushReport } from '../../src/history/records.js';
import { openDatabase } from '../../src/history/sqlite.js';
import { BACKENDS, useBackend } from './helpers/backends.js';
import { FakeClock, advance, openStore, rawRows, startRecord, tempDir } from './helpers/fixtures.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

interface SessionRow {
  id: string;
  user: string;
  status: string;
  bytes_in: number;
  packets_in: number;
  bytes_out: number;
  packets_out: number;
  ended_at: number | null;
  duration_ms: number | null;
  close_reason: string | null;
  updated_at: number;
}

function counters(bytesIn: number, bytesOut: number): TrafficCounters {
  return { bytesIn, packetsIn: Math.ceil(bytesIn / 1000), bytesOut, packetsOut: Math.ceil(bytesOut / 1000) };
}

describe.each(BACKENDS)('HistoryStore on %s', (backend) => {
  const h = useBackend(backend);
  let clock: FakeClock;
  beforeEach(() => {
    clock = new FakeClock(Date.UTC(2026, 10, 23, 10, 0, 0));
  });
  const sessions = (): Promise<SessionRow[]> => h.rows<SessionRow>('SELECT * FROM sessions ORDER BY started_at, id');

  it('writes a row per session: start, then end with counters, duration and reason', async () => {
    const { store } = await h.open(clock);
    const t0 = clock.wallNow();
    store.recordStart(startRecord('s1', 'alice', t0));
    store.recordRejection({ user: 'mallory', source: '192.0.2.66', reason: 'auth_failed', at: t0 });
    expect((await sessions())).toEqual([]); // nothing until a flush
    await advance(clock, store, 1000);
    const [row] = await store.recentSessions({ limit: 5 });
    expect(row).toMatchObject({ id: 's1', user: 'alice', status: 'open', ipv4: '198.18.0.2', ipv6: '2001:db8::2', peer: '192.0.2.1:4433', transport: 'h2', startedAt: t0, endedAt: null });

    clock.advance(60_000);
    store.recordEnd({ id: 's1', endedAt: clock.wallNow(), reason: 'client_closed', message: null, counters: counters(5000, 9000) });
    await store.flush();
    expect((await store.recentSessions({ limit: 5 }))[0]).toMatchObject({
      status: 'closed',
      closeReason: 'client_closed',
      endedAt: t0 + 61_000,
      durationMs: 61_000,
      bytesIn: 5000,
      packetsIn: 5,
      bytesOut: 9000,
      packetsOut: 9,
    });
    expect(await store.recentRejections({ limit: 5 })).toEqual([
      { user: 'mallory', source: '192.0.2.66', reason: 'auth_failed', hourMs: Math.floor(t0 / HOUR) * HOUR, count: 1, firstAt: t0, at: t0 },
    ]);
    expect(store.health()).toEqual({ ok: true, degraded: false, lastError: null, pending: 0, dropped: 0, workerRestarts: 0 });
    await store.close();
    expect(store.health().ok).toBe(false);
  });

  it('writes a batch when it reaches batchSize, off the calling stack', async () => {
    const reports: FlushReport[] = [];
    const { store } = await h.open(clock, { config: { batchSize: 3, flushIntervalMs: 60_000 }, onFlush: (r) => reports.push(r) });
    store.recordStart(startRecord('a', 'alice', 1));
    store.recordStart(startRecord('b', 'alice', 2));
    clock.advance(0);
    expect((await sessions())).toHaveLength(0);
    store.recordStart(startRecord('c', 'bob', 3));
    expect((await sessions())).toHaveLength(0); // the call itself did no I/O
    expect(store.health().pending).toBe(3);
    await advance(clock, store, 0);
    expect((await sessions()).map((r) => r.id)).toEqual(['a', 'b', 'c']);
    expect(reports).toEqual([{ records: 3, snapshots: 0, quotaUpdates: 0, durationMs: 0 }]);
    await store.close();
  });

  it('writes a long queue in several short transactions', async () => {
    const reports: FlushReport[] = [];
    const { store } = await h.open(clock, { config: { batchSize: 1_000_000 }, onFlush: (r) => reports.push(r) });
    for (let i = 0; i < 4500; i++) store.recordStart(startRecord(`s${i}`, `u${i}`, clock.wallNow()));
    await advance(clock, store, 1000);
    expect(reports.map((r) => r.records)).toEqual([2000]);
    await advance(clock, store, 0); // the rest follows on the next turns, one transaction each
    await advance(clock, store, 0);
    expect(reports.map((r) => r.records)).toEqual([2000, 2000, 500]);
    expect(await h.rows('SELECT COUNT(DISTINCT "user") AS n FROM sessions')).toEqual([{ n: 4500 }]);
    await store.close();
  });

  it('writes on every interval, with the live sessions counters', async () => {
    const { store } = await h.open(clock, { config: { batchSize: 1000, flushIntervalMs: 2000 } });
    const live = new Map<string, { id: string; counters: TrafficCounters }>();
    store.setSnapshotProvider(() => live.values());
    const t0 = clock.wallNow();
    store.recordStart(startRecord('s1', 'alice', t0));
    live.set('s1', { id: 's1', counters: counters(100, 200) });
    clock.advance(1999);
    expect((await sessions())).toHaveLength(0);
    await advance(clock, store, 1);
    expect((await sessions())[0]).toMatchObject({ status: 'open', bytes_in: 100, bytes_out: 200, updated_at: t0 + 2000 });

    live.get('s1')!.counters.bytesIn = 7000; // the forwarding path mutates counters in place
    await advance(clock, store, 2000);
    expect((await sessions())[0]).toMatchObject({ bytes_in: 7000, bytes_out: 200, packets_in: 1, updated_at: t0 + 4000 });
    await store.close();
  });

  it('close() flushes everything pending, including the last counters', async () => {
    const { store } = await h.open(clock, { config: { flushIntervalMs: 60_000 } });
    const c = counters(0, 0);
    store.setSnapshotProvider(() => [{ id: 's1', counters: c }]);
    store.recordStart(startRecord('s1', 'alice', clock.wallNow()));
    store.addQuotaUsage('alice', '2026-11', 1234);
    await store.flush();
    c.bytesIn = 4242;
    store.recordRejection({ user: null, source: '192.0.2.9', reason: 'throttled', at: clock.wallNow() });
    await store.close();
    expect((await sessions())[0]).toMatchObject({ bytes_in: 4242 });
    expect(await h.rows('SELECT "user", source, count FROM rejection_counts')).toEqual([{ user: null, source: '192.0.2.9', count: 1 }]);
    expect(await h.rows('SELECT bytes FROM quota_usage')).toEqual([{ bytes: 1234 }]);
    store.recordStart(startRecord('late', 'alice', 0));
    expect(store.health().dropped).toBe(1);
    let caught: unknown;
    try {
      await store.recentSessions({ limit: 1 });
    } catch (err) {
      caught = err;
    }
    expect(isQuicgateError(caught, 'QG_ERR_CLOSED')).toBe(true);
  });

  it('counts quota usage per period, pending included, and keeps it across restarts', async () => {
    const first = await h.open(clock);
    const day = first.store.periodKey('day');
    expect(day).toBe('2026-11-23');
    first.store.addQuotaUsage('alice', day, 1000);
    first.store.addQuotaUsage('alice', day, 500);
    first.store.addQuotaUsage('bob', day, 7);
    expect(first.store.quotaUsage('alice', day)).toBe(1500);
    expect(first.store.health().pending).toBe(2);
    await advance(clock, first.store, 1000);
    expect(first.store.health().pending).toBe(0);
    first.store.addQuotaUsage('alice', day, 1);
    expect(first.store.quotaUsage('alice', day)).toBe(1501);
    await first.store.close();

    const second = await h.open(clock);
    expect(second.store.quotaUsage('alice', day)).toBe(1501);
    expect(second.store.quotaUsage('alice', '2026-11-24')).toBe(0);
    expect(second.store.quotaUsage('bob', day)).toBe(7);
    await second.store.close();
  });

  it('closes sessions left open by a previous process at their last flushed time and counters', async () => {
    const first = await h.open(clock);
    const t0 = clock.wallNow();
    const c = counters(300, 400);
    first.store.setSnapshotProvider(() => [{ id: 's1', counters: c }]);
    first.store.recordStart(startRecord('s1', 'alice', t0));
    await advance(clock, first.store, 1000);
    c.bytesIn = 999; // changes after the last flush are lost with the "crash"
    first.store.recordStart(startRecord('s2', 'alice', clock.wallNow()));
    // Simulate the crash: no close(); a second store opens the same file.
    const second = await h.open(clock);
    expect(second.store.startupEvents).toEqual([{ kind: 'crash_recovered', sessions: 1 }]);
    expect(await second.store.recentSessions({ limit: 5 })).toEqual([
      expect.objectContaining({ id: 's1', status: 'closed', closeReason: 'crash', endedAt: t0 + 1000, durationMs: 1000, bytesIn: 300, bytesOut: 400 }),
    ]);
    await second.store.close();
    await first.store.close();
  });

  it('closeOpenSessions(gatewayId, "crash", endedAtMs): another gateway closes a dead one\'s open rows, its own untouched', async () => {
    // Both open before either writes (on SQLite, opening closes every open row of the file: it is one gateway's).
    const alive = await h.open(clock, { gatewayId: 'gw-alive' });
    const dead = await h.open(clock, { gatewayId: 'gw-dead' });
    const t0 = clock.wallNow();
    const c = counters(300, 400);
    dead.store.setSnapshotProvider(() => [{ id: 'd1', counters: c }]);
    dead.store.recordStart(startRecord('d1', 'alice', t0));
    dead.store.recordStart(startRecord('d2', 'bob', t0));
    dead.store.recordEnd({ id: 'd2', endedAt: t0 + 10, reason: 'client_closed', message: null, counters: counters(1, 1) });
    await advance(clock, dead.store, 1000); // d1 flushed at t0 + 1000 with its counters; then the gateway "dies"
    dead.store.setSnapshotProvider(null); // (its timers go on with the fake clock, but have nothing more to write)
    alive.store.recordStart(startRecord('a1', 'carol', clock.wallNow()));
    await alive.store.flush();
    clock.advance(30_000);
    // That advance fired the dead store's interval: its (empty) write must be answered before d3 is recorded, or
    // the interval below finds it still out and leaves d3 to a 0 ms timer the fake clock never fires (CI15).
    await dead.store.settled();
    expect(await alive.store.closeOpenSessions('gw-dead', 'crash', clock.wallNow())).toBe(1);
    expect(await alive.store.closeOpenSessions('gw-dead', 'crash', clock.wallNow())).toBe(0); // idempotent
    const rows = await alive.store.recentSessions({ limit: 10 });
    expect(rows.find((r) => r.id === 'd1')).toMatchObject({ gatewayId: 'gw-dead', status: 'closed', closeReason: 'crash', endedAt: t0 + 1000, durationMs: 1000, bytesIn: 300, bytesOut: 400 });
    expect(rows.find((r) => r.id === 'd2')).toMatchObject({ status: 'closed', closeReason: 'client_closed' });
    expect(rows.find((r) => r.id === 'a1')).toMatchObject({ gatewayId: 'gw-alive', status: 'open' });
    // Ended no later than the time given (a death known before the last flush).
    dead.store.recordStart(startRecord('d3', 'alice', clock.wallNow()));
    dead.store.setSnapshotProvider(() => [{ id: 'd3', counters: c }]);
    await advance(clock, dead.store, 1000); // d3 flushed at now
    dead.store.setSnapshotProvider(null);
    const d3 = await h.rows<{ started_at: number; status: string }>("SELECT started_at, status FROM sessions WHERE id = 'd3'");
    expect(d3.map((r) => ({ startedAt: Number(r.started_at), status: r.status }))).toEqual([{ startedAt: clock.wallNow() - 1000, status: 'open' }]);
    expect(await alive.store.closeOpenSessions('gw-dead', 'crash', clock.wallNow() - 500)).toBe(1);
    expect((await alive.store.recentSessions({ limit: 10, gatewayId: 'gw-dead', user: 'alice' })).find((r) => r.id === 'd3')).toMatchObject({ endedAt: clock.wallNow() - 500 });
    // A late close (retried while the store was down) leaves rows started after the loss was found: those are a
    // restarted gateway's, under the same id.
    const foundAt = clock.wallNow();
    clock.advance(1000);
    dead.store.recordStart(startRecord('d4', 'alice', clock.wallNow()));
    await dead.store.flush();
    expect(await alive.store.closeOpenSessions('gw-dead', 'crash', foundAt, foundAt)).toBe(0);
    expect((await alive.store.recentSessions({ limit: 10, gatewayId: 'gw-dead' })).find((r) => r.id === 'd4')).toMatchObject({ status: 'open' });
    let caught: unknown;
    try {
      await alive.store.closeOpenSessions('gw-alive', 'crash', clock.wallNow());
    } catch (err) {
      caught = err;
    }
    expect(isQuicgateError(caught, 'QG_ERR_HISTORY')).toBe(true);
    await alive.store.close();
    await dead.store.close();
  });

  it('stats: sessions started, traffic per hour window, top users, rejections by reason', async () => {
    const { store } = await h.open(clock, { config: { flushIntervalMs: 60_000 } });
    const live = new Map<string, { id: string; counters: TrafficCounters }>();
    store.setSnapshotProvider(() => live.values());
    const start = (id: string, user: string): void => {
      store.recordStart(startRecord(id, user, clock.wallNow()));
      live.set(id, { id, counters: counters(0, 0) });
    };
    const end = (id: string): void => {
      const s = live.get(id)!;
      live.delete(id);
      store.recordEnd({ id, endedAt: clock.wallNow(), reason: 'client_closed', message: null, counters: { ...s.counters } });
    };

    start('old', 'carol');
    live.get('old')!.counters.bytesIn = 10_000_000;
    await store.flush();
    clock.advance(5 * HOUR);
    live.get('old')!.counters.bytesIn = 10_000_500; // 500 bytes in the window
    end('old');
    start('a1', 'alice');
    start('b1', 'bob');
    live.get('a1')!.counters.bytesIn = 1000;
    live.get('b1')!.counters.bytesOut = 5000;
    await store.flush();
    live.get('a1')!.counters.bytesIn = 3000; // delta 2000 since the last flush, not 3000 again
    live.get('a1')!.counters.bytesOut = 100;
    end('a1');
    store.recordRejection({ user: 'x', source: '192.0.2.5', reason: 'auth_failed', at: clock.wallNow() });
    store.recordRejection({ user: 'y', source: '192.0.2.5', reason: 'auth_failed', at: clock.wallNow() });
    store.recordRejection({ user: 'bob', source: '192.0.2.6', reason: 'user_limit', at: clock.wallNow() });
    store.recordRejection({ user: 'z', source: '192.0.2.7', reason: 'pool_exhausted', at: clock.wallNow() - 3 * HOUR });
    await store.flush();

    const stats = await store.stats({ windowHours: 2 });
    expect(stats).toEqual({
      windowHours: 2,
      sinceMs: clock.wallNow() - 2 * HOUR,
      sessionsStarted: 2,
      bytesIn: 500 + 3000,
      bytesOut: 5000 + 100,
      topUsers: [
        { user: 'bob', bytesIn: 0, bytesOut: 5000 },
        { user: 'alice', bytesIn: 3000, bytesOut: 100 },
        { user: 'carol', bytesIn: 500, bytesOut: 0 },
      ],
      rejectionsByReason: { auth_failed: 2, user_limit: 1 },
    });
    const wide = await store.stats({ windowHours: 24, topUsers: 1 });
    expect(wide.sessionsStarted).toBe(3);
    expect(wide.bytesIn).toBe(10_000_000 + 500 + 3000);
    expect(wide.topUsers).toEqual([{ user: 'carol', bytesIn: 10_000_500, bytesOut: 0 }]);
    expect(wide.rejectionsByReason).toEqual({ auth_failed: 2, user_limit: 1, pool_exhausted: 1 });

    expect(await store.userUsage('alice')).toMatchObject({ sessions: 1, openSessions: 0, bytesIn: 3000, bytesOut: 100 });
    expect(await store.userUsage('bob')).toMatchObject({ sessions: 1, openSessions: 1, bytesOut: 5000 });
    expect((await store.recentSessions({ user: 'carol', limit: 10 })).map((r) => r.id)).toEqual(['old']);
    expect((await store.recentSessions({ limit: 10, sinceMs: clock.wallNow() - HOUR })).map((r) => r.id).sort()).toEqual(['a1', 'b1']);
    let caught: unknown;
    try {
      await store.stats({ windowHours: 0 });
    } catch (err) {
      caught = err;
    }
    expect(isQuicgateError(caught, 'QG_ERR_HISTORY')).toBe(true);
    await store.close();
  });

  it('retention deletes old closed sessions, rejections and traffic on its schedule, keeps open ones', async () => {
    const { store } = await h.open(clock, {
      config: { retentionDays: 2, flushIntervalMs: HOUR },
      retentionIntervalMs: HOUR,
    });
    const c = counters(0, 0);
    store.setSnapshotProvider(() => [{ id: 'open-old', counters: c }]);
    store.recordStart(startRecord('closed-old', 'alice', clock.wallNow()));
    store.recordStart(startRecord('open-old', 'alice', clock.wallNow()));
    store.recordRejection({ user: 'x', source: '192.0.2.5', reason: 'auth_failed', at: clock.wallNow() });
    store.addQuotaUsage('alice', store.periodKey('month'), 10);
    await advance(clock, store, HOUR);
    store.recordEnd({ id: 'closed-old', endedAt: clock.wallNow(), reason: 'idle_timeout', message: null, counters: counters(10, 10) });
    await advance(clock, store, 2 * DAY);
    store.recordStart(startRecord('recent', 'bob', clock.wallNow()));
    await store.flush();
    expect((await sessions()).map((r) => r.id).sort()).toEqual(['closed-old', 'open-old', 'recent']);
    await advance(clock, store, HOUR); // next retention run: closed-old ended 2 days + 2 h ago
    await store.flush(); // answered after the retention run (the worker answers in order)
    expect((await sessions()).map((r) => r.id).sort()).toEqual(['open-old', 'recent']);
    expect(await h.rows('SELECT COUNT(*) AS n FROM rejection_counts')).toEqual([{ n: 0 }]);
    expect((await h.rows<{ hour_ms: number }>('SELECT hour_ms FROM traffic_hourly')).every((r) => r.hour_ms >= clock.wallNow() - 2 * DAY - HOUR)).toBe(true);
    // The month's quota row is younger than a month: still counted.
    expect(store.quotaUsage('alice', store.periodKey('month'))).toBe(10);
    await store.close();
  });

it('a record the schema refuses is dropped alone, the rest of the batch is written', async () => {
    const { store } = await h.open(clock);
    store.recordStart(startRecord('ok1', 'alice', clock.wallNow()));
    // A caller bug that slips past the types: no user.
    store.recordStart({ ...startRecord('bad', 'alice', clock.wallNow()), user: null as unknown as string });
    store.recordStart(startRecord('ok2', 'alice', clock.wallNow() + 1));
    await advance(clock, store, 1000);
    expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, dropped: 1 });
    expect((await sessions()).map((r) => r.id)).toEqual(['ok1', 'ok2']);
    await store.close();
  });
});

describe('HistoryStore on sqlite: the file and its directory', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  let clock: FakeClock;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'history.sqlite');
    clock = new FakeClock(Date.UTC(2026, 10, 23, 10, 0, 0));
  });
  afterEach(() => cleanup());

  const sessions = (): SessionRow[] => rawRows<SessionRow>(file, 'SELECT * FROM sessions ORDER BY started_at, id');

  describe('failures while running', () => {
    it('a lock held by another connection: degraded, no throw, rows written after it is released', async () => {
      const { store, lines } = await openStore(dir, clock, { retry: { initialMs: 500, maxMs: 4000 } });
      store.recordStart(startRecord('s1', 'alice', clock.wallNow()));
      await store.flush();
      const other = openDatabase(file);
      other.exec('BEGIN EXCLUSIVE');
      store.recordStart(startRecord('s2', 'bob', clock.wallNow()));
      store.recordRejection({ user: 'x', source: '192.0.2.5', reason: 'auth_failed', at: clock.wallNow() });
      expect(() => clock.advance(1000)).not.toThrow();
      await store.settled();
      expect(store.health()).toMatchObject({ ok: false, degraded: true, pending: 2, dropped: 0, lastError: expect.stringMatching(/SQLITE_BUSY|locked/) });
      await advance(clock, store, 500); // two more failing retries (backoff 500, 1000)
      await advance(clock, store, 1000);
      expect(store.health().degraded).toBe(true);
      other.exec('COMMIT');
      other.close();
      await advance(clock, store, 2000);
      expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0 });
      expect(sessions().map((r) => r.id)).toEqual(['s1', 's2']);
      expect(lines.filter((l) => l.msg === 'history writes failing; queueing and retrying')).toHaveLength(1);
      expect(lines.some((l) => l.msg === 'history writes recovered')).toBe(true);
      await store.close();
    });

    it('the data directory replaced by a file: degraded, bounded queue counts drops, recovers when restored', async () => {
      const { store } = await openStore(dir, clock, { maxPending: 3, retry: { initialMs: 1000, maxMs: 1000 } });
      const c = counters(10, 20);
      store.setSnapshotProvider(() => [{ id: 's1', counters: c }]);
      store.recordStart(startRecord('s1', 'alice', clock.wallNow()));
      await advance(clock, store, 1000);
      renameSync(dir, `${dir}.moved`);
      writeFileSync(dir, 'not a directory');
      try {
        for (let i = 2; i <= 6; i++) store.recordStart(startRecord(`s${i}`, 'bob', clock.wallNow() + i));
        c.bytesIn = 777;
        await advance(clock, store, 1000);
        expect(store.health()).toMatchObject({ degraded: true, pending: 3, dropped: 2, lastError: expect.stringMatching(/not a directory/) });
        await advance(clock, store, 5000);
        expect(store.health().degraded).toBe(true);
      } finally {
        rmSync(dir);
        renameSync(`${dir}.moved`, dir);
      }
      await advance(clock, store, 1000);
      expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, dropped: 2 });
      expect(sessions().map((r) => [r.id, r.bytes_in])).toEqual([['s1', 777], ['s2', 0], ['s3', 0], ['s4', 0]]);
      await store.close();
    });

    it('the file removed: continues in a fresh file at the path with the live sessions and queued rows', async () => {
      const { store, lines } = await openStore(dir, clock);
      const c = counters(10, 20);
      store.setSnapshotProvider(() => [{ id: 'live', counters: c }]);
      store.recordStart(startRecord('live', 'alice', clock.wallNow()));
      store.recordStart(startRecord('gone', 'alice', clock.wallNow()));
      store.recordEnd({ id: 'gone', endedAt: clock.wallNow(), reason: 'admin_kill', message: 'bye', counters: counters(1, 1) });
      await advance(clock, store, 1000);
      for (const suffix of ['', '-wal', '-shm']) unlinkSync(file + suffix);
      store.recordRejection({ user: 'x', source: '192.0.2.5', reason: 'auth_failed', at: clock.wallNow() });
      c.bytesOut = 555;
      await advance(clock, store, 1000);
      expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0 });
      expect(sessions()).toEqual([expect.objectContaining({ id: 'live', status: 'open', bytes_out: 555 })]);
      expect(rawRows(file, 'SELECT COUNT(*) AS n FROM rejection_counts')).toEqual([{ n: 1 }]);
      expect(lines.some((l) => l.reason === 'file missing')).toBe(true);
      await store.close();
    });
  });

  it('at start closes every open row of the file as crash, also those written under an earlier gateway id', async () => {
    const before = await openStore(dir, clock, { gatewayId: 'old-hostname' });
    before.store.recordStart(startRecord('s1', 'alice', clock.wallNow()));
    await before.store.flush();
    const after = await openStore(dir, clock, { gatewayId: 'new-hostname' });
    expect(after.store.startupEvents).toEqual([{ kind: 'crash_recovered', sessions: 1 }]);
    expect(sessions()[0]).toMatchObject({ id: 's1', status: 'closed', close_reason: 'crash' });
    await after.store.close();
    await before.store.close();
  });

  it('opening fails with QG_ERR_HISTORY when the data directory cannot be created', async () => {
    const blocker = path.join(dir, 'blocker');
    writeFileSync(blocker, 'x');
    let caught: unknown;
    try {
      await openStore(path.join(blocker, 'data'), clock);
    } catch (err) {
      caught = err;
    }
    expect(isQuicgateError(caught, 'QG_ERR_HISTORY')).toBe(true);
    mkdirSync(path.join(dir, 'ok'));
  });
});
