/**
 * A history database that does not answer (another connection holds the write lock and the writer waits out a
 * long busy timeout in SQLite's busy handler: a real stall, in the writer thread) must not delay the event loop,
 * nor forwarding through a real Gateway over the in-memory TUN and transport. The same for a real PostgreSQL
 * whose processes are all SIGSTOPped (a hung server: the write's connection open, nothing answers).
 */
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HealthView } from '../../src/admin/backend.js';
import { openDatabase, type SqliteDatabase } from '../../src/history/sqlite.js';
import { ipv4Packet } from '../support/packets.js';
import { settle, until } from '../support/wait.js';
import { samples, startHarness, type Harness, REMOTE } from '../gateway/operator-harness.js';
import type { UserConfig } from '../../src/config/types.js';
import { testPasswordHash, userConfig } from '../support/config-fixture.js';
import { useBackend } from './helpers/backends.js';
import { FakeClock, openStore, rawRows, startRecord, tempDir } from './helpers/fixtures.js';

/** How long the writer would wait on the lock (busy timeout): what a blocked event loop would add. */
const STALL_MS = 10_000;
/** How long the tests forward and measure while the writer waits (the lock is released before STALL_MS). */
const WINDOW_MS = 3000;
/** A delay the stall would exceed many times over, and a busy machine does not reach. */
const BOUND_MS = 1500;

let hashes: Record<string, string> = {};
beforeAll(async () => {
  hashes = Object.fromEntries(await Promise.all(['alice', 'bob'].map(async (n) => [n, await testPasswordHash(`pw-${n}`)] as const)));
});
const user = (name: string): UserConfig => userConfig(name, { passwordHash: hashes[name] ?? '' });

/** Real time while the event loop is measured; returns its worst delay in ms. */
async function worstLoopDelay(ms: number): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  await new Promise((resolve) => setTimeout(resolve, ms));
  h.disable();
  return h.max / 1e6;
}

describe('a stalled history database', () => {
  let dir: string;
  let cleanup: () => void;
  let lock: SqliteDatabase | null = null;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => {
    lock?.close();
    lock = null;
    cleanup();
  });

  const holdLock = (file: string): SqliteDatabase => {
    const db = openDatabase(file);
    db.exec('BEGIN EXCLUSIVE');
    lock = db;
    return db;
  };

  it('does not block the event loop: records queue (bounded, drops counted), health says stalled, rows follow', async () => {
    const clock = new FakeClock(Date.UTC(2026, 10, 23, 10, 0, 0));
    const { store, lines } = await openStore(dir, clock, { busyTimeoutMs: STALL_MS, maxPending: 5, stallAfterMs: 2000 });
    const file = path.join(dir, 'history.sqlite');
    const other = holdLock(file);
    store.recordStart(startRecord('s1', 'alice', clock.wallNow()));

    // The flush timer fires: the write waits in SQLite's busy handler for up to STALL_MS.
    const before = performance.now();
    clock.advance(1000);
    const blockedMs = performance.now() - before;
    const worst = await worstLoopDelay(WINDOW_MS / 2); // the write is out now
    console.log(`[stall] timer call ${blockedMs.toFixed(1)} ms, worst event-loop delay ${worst.toFixed(1)} ms during a ${STALL_MS} ms database stall`);
    expect(blockedMs).toBeLessThan(BOUND_MS);
    expect(worst).toBeLessThan(BOUND_MS);

    clock.advance(2500); // the write has been out longer than stallAfterMs
    expect(store.health()).toMatchObject({ ok: false, degraded: true, lastError: expect.stringMatching(/stalled/) });
    clock.advance(1000); // the interval fires again: the stall is logged, no second write starts
    expect(lines.filter((l) => l.msg === 'history writes stalled; queueing (bounded) while forwarding goes on')).toHaveLength(1);
    for (let i = 2; i <= 10; i++) store.recordStart(startRecord(`s${i}`, 'bob', clock.wallNow() + i));
    expect(store.health()).toMatchObject({ pending: 5, dropped: 5 });

    other.exec('COMMIT'); // the lock goes away while the writer still waits: its write goes through
    await store.settled();
    await store.flush();
    expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, dropped: 5 });
    expect(rawRows<{ id: string }>(file, 'SELECT id FROM sessions ORDER BY id').map((r) => r.id)).toEqual(['s1', 's2', 's3', 's4', 's5']);
    await store.close();
  });

  describe('through a gateway (memory TUN and transport, real history worker)', () => {
    let h: Harness | null = null;
    afterEach(async () => {
      lock?.close();
      lock = null;
      await h?.cleanup();
      h = null;
    });

    it('forwards both ways, admits new sessions and answers the admin API at once while the database stalls', async () => {
      h = await startHarness({
        config: {
          users: [user('alice'), user('bob')],
          history: { enabled: true, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 1000, busyTimeoutMs: STALL_MS, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null },
        },
      });
      const harness = h;
      const a = await harness.connect('alice');
      const received: number[] = [];
      a.pair.client.setReceiver({ onPacket: (_d, _o, length) => void received.push(length), onBatchEnd: () => undefined });

      /** One packet each way through the gateway; real ms until both arrived. */
      const roundTrip = async (n: number): Promise<number> => {
        const started = performance.now();
        const writtenBefore = harness.tun.written.length;
        const receivedBefore = received.length;
        const packet = ipv4Packet(a.session.ipv4 ?? '', REMOTE, 100 + (n % 100));
        a.pair.client.sendPacket(packet, 0, packet.length);
        a.pair.client.flush();
        harness.tun.inject([ipv4Packet(REMOTE, a.session.ipv4 ?? '', 200 + (n % 100))]);
        await until(() => harness.tun.written.length > writtenBefore && received.length > receivedBefore, `packet ${n} both ways`);
        return performance.now() - started;
      };

      const baseline: number[] = [];
      for (let i = 0; i < 20; i++) baseline.push(await roundTrip(i));

      const other = holdLock(harness.surface.history!.location);
      harness.clock.advance(1000); // the flush goes to the writer, which now waits on the lock
      await settle();
      harness.clock.advance(2500); // and is out longer than two flush intervals: stalled

      const stalled: number[] = [];
      const loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      const windowStart = performance.now();
      let i = 0;
      while (performance.now() - windowStart < WINDOW_MS) {
        stalled.push(await roundTrip(100 + i++));
        await new Promise((resolve) => setTimeout(resolve, 5)); // paced: a few hundred packets, not a CPU spin
      }
      const b = await harness.connect('bob'); // admission records a start: queued, not written
      const health = (await (await harness.call('/healthz')).json()) as HealthView;
      const statsStarted = performance.now();
      const stats = await harness.call('/api/stats?window_hours=1');
      const statsMs = performance.now() - statsStarted;
      loop.disable();

      const worst = (xs: number[]): number => Math.max(...xs);
      const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      console.log(
        `[stall] round trip through the gateway: median ${median(baseline).toFixed(2)} ms before, ${median(stalled).toFixed(2)} ms during a database stall ` +
          `(${stalled.length} packets each way in ${WINDOW_MS} ms, worst ${worst(stalled).toFixed(1)} ms); worst event-loop delay ${(loop.max / 1e6).toFixed(1)} ms; /api/stats ${statsMs.toFixed(1)} ms`,
      );
      // A loop blocked by the database would hold a packet for the whole stall (seconds).
      expect(stalled.length).toBeGreaterThan(20);
      expect(worst(stalled)).toBeLessThan(BOUND_MS);
      expect(loop.max / 1e6).toBeLessThan(BOUND_MS);
      expect(b.session.user).toBe('bob');
      expect(health.checks.history).toBe('degraded');
      expect(health.checks.historyError).toMatch(/stalled/);
      expect(stats.status).toBe(200);
      expect(((await stats.json()) as { activeSessions: number }).activeSessions).toBe(2);
      expect(statsMs).toBeLessThan(BOUND_MS);
      const metrics = samples(await (await harness.call('/metrics')).text());
      expect(metrics.get('quicgate_history_degraded')).toBe(1);
      expect(metrics.get('quicgate_history_pending_records')).toBeGreaterThan(0); // bob's start, at least
      expect(metrics.get('quicgate_history_dropped_records_total')).toBe(0); // well below history.queue_limit

      other.exec('COMMIT');
      await harness.surface.history!.settled();
      await harness.surface.history!.flush();
      expect(harness.surface.history!.health()).toMatchObject({ ok: true, pending: 0, dropped: 0 });
      expect(harness.rows<{ id: string }>('SELECT id FROM sessions ORDER BY id').map((r) => r.id).sort()).toEqual([a.session.id, b.session.id].sort());
    });
  });
});

describe('a hung PostgreSQL (every server process SIGSTOPped)', () => {
  const h = useBackend('postgres');
  afterEach(() => {
    if (h.server.running) h.server.resume();
  });

  it('does not block the event loop: records queue (bounded, drops counted), queries fail in time, health says stalled, rows follow', async () => {
    const clock = new FakeClock(Date.UTC(2026, 10, 23, 10, 0, 0));
    const config = h.config();
    // pg's own query timeout far beyond the stall: the write stays out until the server runs again.
    const { store } = await h.open(clock, { config: { ...config, postgres: { ...config.postgres!, queryTimeoutMs: 60_000 } }, maxPending: 5, stallAfterMs: 2000, queryTimeoutMs: 1000 });
    store.recordStart(startRecord('s1', 'alice', clock.wallNow()));
    await store.flush();
    h.server.pause();
    try {
      store.recordStart(startRecord('s2', 'alice', clock.wallNow() + 2));
      const before = performance.now();
      clock.advance(1000); // the flush timer sends the write to the worker; it waits for the hung server
      const blockedMs = performance.now() - before;
      const worst = await worstLoopDelay(WINDOW_MS / 2);
      const queryStarted = performance.now();
      const query = await store.recentSessions({ limit: 10 }).then(() => 'answered', (err: unknown) => (err as Error).message);
      const queryMs = performance.now() - queryStarted;
      console.log(`[stall] PostgreSQL hung: timer call ${blockedMs.toFixed(1)} ms, worst event-loop delay ${worst.toFixed(1)} ms, a history query failed after ${queryMs.toFixed(0)} ms`);
      expect(blockedMs).toBeLessThan(BOUND_MS);
      expect(worst).toBeLessThan(BOUND_MS);
      expect(query).toMatch(/did not answer within 1000 ms/);
      expect(queryMs).toBeLessThan(BOUND_MS + 1000);

      clock.advance(2500);
      expect(store.health()).toMatchObject({ ok: false, degraded: true, lastError: expect.stringMatching(/stalled/) });
      for (let i = 3; i <= 10; i++) store.recordStart(startRecord(`s${i}`, 'bob', clock.wallNow() + i));
      expect(store.health()).toMatchObject({ pending: 5, dropped: 4 }); // s2 (out) .. s6 kept, s7 .. s10 dropped
    } finally {
      h.server.resume();
    }
    await store.settled(); // the write out since the pause is answered now
    await store.flush();
    expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, dropped: 4 });
    expect((await h.rows<{ id: string }>('SELECT id FROM sessions ORDER BY id')).map((r) => r.id)).toEqual(['s1', 's2', 's3', 's4', 's5', 's6']);
    await store.close();
  });
});
