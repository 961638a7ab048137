/**
 * A lost history worker thread (here terminated from outside, as a crash or an out-of-memory kill ends it) is
 * started again with backoff: records queued meanwhile are written after the restart, the sessions of this run
 * still open in the file are not closed as 'crash', their traffic is counted once, and each restart is counted
 * and logged once. The first case runs on both backends (SQLite's thread and PostgreSQL's, a real server).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TrafficCounters } from '../../src/gateway/session.js';
import type { HistoryStore } from '../../src/history/store.js';
import { WorkerBackend } from '../../src/history/worker-backend.js';
import type { WorkerSupervisor } from '../../src/history/worker-supervisor.js';
import { BACKENDS, useBackend } from './helpers/backends.js';
import { advance, FakeClock, openStore, rawRows, startRecord, tempDir, type LogLine } from './helpers/fixtures.js';

/** Real time: a worker thread (with tsx's loader in tests) takes a while to start on a loaded machine. */
async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function supervisor(store: HistoryStore): WorkerSupervisor {
  if (!(store.backend instanceof WorkerBackend)) throw new Error('not a worker thread backend');
  return store.backend.supervisor;
}

const counters = (bytesIn: number): TrafficCounters => ({ bytesIn, packetsIn: bytesIn / 100, bytesOut: bytesIn / 2, packetsOut: bytesIn / 200 });

interface Row {
  id: string;
  status: string;
  close_reason: string | null;
  bytes_in: number;
}

describe.each(BACKENDS)('history worker supervision on %s', (backend) => {
  const h = useBackend(backend);
  let store: HistoryStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  it('restarts a terminated worker; queued records are written, live sessions stay open, traffic counts once', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 10));
    const opened = await h.open(clock, { workerRestart: { initialMs: 500, maxMs: 4000 } });
    store = opened.store;
    const lines: LogLine[] = opened.lines;
    let live = new Map<string, TrafficCounters>([['s1', counters(1000)]]);
    store.setSnapshotProvider(() => [...live].map(([id, c]) => ({ id, counters: c })));
    store.recordStart(startRecord('s1', 'alice', clock.wallNow(), 1));
    await advance(clock, store, 1000);
    expect(await h.rows<Row>('SELECT id, status, close_reason, bytes_in FROM sessions')).toEqual([
      { id: 's1', status: 'open', close_reason: null, bytes_in: 1000 },
    ]);

    await supervisor(store).kill();
    await waitFor(() => supervisor(store!).state === 'restarting', 'the loss to be noticed');
    expect(store.health()).toMatchObject({ ok: false, degraded: true, workerRestarts: 0 });

    // While the thread is gone: recording goes on in memory; the flush timer's write fails and is retried.
    live.set('s1', counters(3000));
    store.recordStart(startRecord('s2', 'bob', clock.wallNow(), 2));
    live.set('s2', counters(200));
    await advance(clock, store, 400);
    expect(store.health().pending).toBe(1);
    expect(await h.rows<Row>('SELECT id FROM sessions')).toHaveLength(1);

    clock.advance(100); // the restart backoff (500 ms) is over: a new thread starts and resumes
    await waitFor(() => supervisor(store!).state === 'up', 'the restarted worker to resume');
    await store.settled();
    await store.flush();

    expect(store.health()).toMatchObject({ ok: true, degraded: false, pending: 0, workerRestarts: 1 });
    const rows = await h.rows<Row>('SELECT id, status, close_reason, bytes_in FROM sessions ORDER BY id');
    expect(rows).toEqual([
      // Not closed as 'crash' by the restart: it is this run's live session, and it goes on being updated.
      { id: 's1', status: 'open', close_reason: null, bytes_in: 3000 },
      { id: 's2', status: 'open', close_reason: null, bytes_in: 200 },
    ]);

    live = new Map([['s2', counters(200)]]);
    store.recordEnd({ id: 's1', endedAt: clock.wallNow(), reason: 'client_closed', message: null, counters: counters(3500) });
    await store.flush();
    expect(await h.rows<Row>("SELECT id, status, close_reason, bytes_in FROM sessions WHERE id = 's1'")).toEqual([
      { id: 's1', status: 'closed', close_reason: 'client_closed', bytes_in: 3500 },
    ]);
    // Hourly traffic: each byte once, across the restart (the adopted counters are where the deltas start).
    const traffic = await h.rows<{ user: string; bytes_in: number }>('SELECT "user", bytes_in FROM traffic_hourly ORDER BY "user"');
    expect(traffic).toEqual([
      { user: 'alice', bytes_in: 3500 },
      { user: 'bob', bytes_in: 200 },
    ]);

    const lost = lines.filter((l) => l.msg.startsWith('history worker lost'));
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ level: 50, err: 'history worker exited (code 1)', restartInMs: 500 });
    expect(lines.filter((l) => l.msg.startsWith('history worker restarted'))).toHaveLength(1);
  });
});

describe('history worker supervision on sqlite: a resume that fails', () => {
  let dir: string;
  let cleanup: () => void;
  let store: HistoryStore | undefined;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(async () => {
    await store?.close();
    store = undefined;
    cleanup();
  });

  it('keeps restarting with growing backoff while the resume fails, and bounds the queue meanwhile', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 10));
    const opened = await openStore(dir, clock, { workerRestart: { initialMs: 100, maxMs: 400 }, maxPending: 3 });
    store = opened.store;
    store.recordStart(startRecord('s1', 'alice', clock.wallNow(), 1));
    await store.flush();

    // The file is replaced by a directory with the thread gone: the restarted thread cannot open it, and is ended.
    rmSync(store.location);
    mkdirSync(store.location);
    await supervisor(store).kill();
    await waitFor(() => supervisor(store!).state === 'restarting', 'the loss to be noticed');
    for (let i = 2; i <= 6; i++) store.recordStart(startRecord(`s${i}`, 'alice', clock.wallNow(), i));
    expect(store.health()).toMatchObject({ pending: 3, dropped: 2 });

    const delays = opened.lines.filter((l) => l.msg.startsWith('history worker lost')).map((l) => l.restartInMs);
    for (const step of [100, 200, 400]) {
      const restarts = supervisor(store).restarts;
      clock.advance(step);
      await waitFor(() => opened.lines.filter((l) => l.msg.startsWith('history worker lost')).length > delays.length, 'the failed resume');
      delays.splice(0, delays.length, ...opened.lines.filter((l) => l.msg.startsWith('history worker lost')).map((l) => l.restartInMs));
      expect(supervisor(store).restarts).toBe(restarts + 1);
    }
    expect(delays).toEqual([100, 200, 400, 400]);
    expect(supervisor(store).state).toBe('restarting');

    // The path is free again: the next restart resumes (in a fresh file) and the queued records are written.
    rmSync(store.location, { recursive: true });
    clock.advance(400);
    await waitFor(() => supervisor(store!).state === 'up', 'the restarted worker to resume');
    await store.flush();
    expect(rawRows<Row>(store.location, 'SELECT id FROM sessions ORDER BY id').map((r) => r.id)).toEqual(['s2', 's3', 's4']);
    expect(store.health()).toMatchObject({ ok: true, pending: 0, dropped: 2, workerRestarts: 4 });
  });
});
