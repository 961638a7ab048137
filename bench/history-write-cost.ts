/**
 * bench/history-write-cost.ts - what a history write costs the gateway's event loop (the thread that forwards
 * packets), side by side in one run: SQLite and PostgreSQL through the HistoryStore (each in its worker
 * thread), and `postgres-main`: the same PostgreSQL backend (pg-backend.ts) called on this thread, as it ran
 * before it moved into a worker (the A of the A/B), fed the same batches. PostgreSQL is a real server started
 * here from Debian's package (test/support/postgres-server.ts). BACKENDS picks (default all three).
 *
 *   sudo npx tsx bench/history-write-cost.ts                  (as root the postmaster runs as `postgres`)
 *   LIVE=1000,10000 CHURN=500 ROUNDS=3 sudo -E npx tsx bench/history-write-cost.ts
 *
 * Per scenario (LIVE live sessions whose counters all changed, CHURN sessions started and CHURN ended since
 * the last write, the way a busy gateway's flush looks): ROUNDS flushes after a warm-up one, and per flush
 *   wall      ms until the write is committed
 *   busy      ms the event loop was not idle during it (performance.eventLoopUtilization: this thread's work,
 *             i.e. time a packet could not be forwarded), and busy per 1,000 statements' worth of rows
 *   worst     the worst event-loop delay during it (monitorEventLoopDelay, 1 ms resolution): the longest a
 *             packet arriving then would have waited
 *   cpu       CPU time of the whole process during it (process.cpuUsage: every thread, GC included): what the
 *             write costs the machine's cores wherever it runs
 * Printed as the median of the rounds. Nothing else should run on the machine meanwhile (short run: ~1 min).
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { systemClock } from '../src/clock.js';
import type { HistoryConfig } from '../src/config/types.js';
import type { TrafficCounters } from '../src/gateway/session.js';
import { PostgresBackend } from '../src/history/pg-backend.js';
import type { WireBatch } from '../src/history/protocol.js';
import type { CounterSnapshot } from '../src/history/records.js';
import { HistoryStore } from '../src/history/store.js';
import type { QueuedRecord, QuotaIncrement } from '../src/history/writer.js';
import { startTestPostgres } from '../test/support/postgres-server.js';

const LIVE = (process.env.LIVE ?? '1000,10000').split(',').map(Number);
const CHURN = Number(process.env.CHURN ?? 500);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
type Variant = 'sqlite' | 'postgres' | 'postgres-main';
const BACKENDS = (process.env.BACKENDS ?? 'sqlite,postgres,postgres-main').split(',') as Variant[];

interface Figures {
  wallMs: number;
  busyMs: number;
  worstMs: number;
  cpuMs: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** What the scenario drives: the HistoryStore's recording calls and one flush. */
interface Writer {
  setSnapshotProvider(fn: () => Iterable<CounterSnapshot>): void;
  recordStart: HistoryStore['recordStart'];
  recordEnd: HistoryStore['recordEnd'];
  addQuotaUsage(user: string, key: string, bytes: number): void;
  periodKey: HistoryStore['periodKey'];
  flush(): Promise<void>;
  pending(): number;
  close(): Promise<void>;
}

async function storeWriter(config: HistoryConfig, dir: string): Promise<Writer> {
  const store = await HistoryStore.open({ dataDir: dir, config, clock: systemClock, logger: pino({ level: 'warn' }), gatewayId: 'bench-gw' });
  return {
    setSnapshotProvider: (fn) => store.setSnapshotProvider(fn),
    recordStart: (r) => store.recordStart(r),
    recordEnd: (r) => store.recordEnd(r),
    addQuotaUsage: (u, k, b) => store.addQuotaUsage(u, k, b),
    periodKey: (p, w) => store.periodKey(p, w),
    flush: () => store.flush(),
    pending: () => store.health().pending,
    close: () => store.close(),
  };
}

/** PostgresBackend on this thread, given the batches the store would send (records, snapshots, quota; one write). */
async function mainThreadPgWriter(config: HistoryConfig, reference: Writer): Promise<Writer> {
  const backend = new PostgresBackend({ config: config.postgres!, gatewayId: 'bench-gw', logger: pino({ level: 'warn' }) });
  await backend.call('open', { wallNowMs: Date.now(), quotaFrom: reference.periodKey('month') }, null);
  let records: QueuedRecord[] = [];
  const quota = new Map<string, QuotaIncrement>();
  let provider: () => Iterable<CounterSnapshot> = () => [];
  return {
    setSnapshotProvider: (fn) => void (provider = fn),
    recordStart: (r) => void records.push({ kind: 'start', record: r }),
    recordEnd: (r) => void records.push({ kind: 'end', record: { ...r, counters: { ...r.counters } } }),
    addQuotaUsage(user, periodKey, bytes) {
      const k = `${user}\u0000${periodKey}`;
      quota.set(k, { user, periodKey, bytes: (quota.get(k)?.bytes ?? 0) + bytes });
    },
    periodKey: reference.periodKey,
    async flush() {
      const wallNowMs = Date.now();
      const snapshots = [...provider()].map((s) => ({ id: s.id, counters: { ...s.counters } }));
      const batch: WireBatch = { records, snapshots, quota: [...quota.values()], rejections: [], wallNowMs };
      await backend.call('write', { batch, quotaKeys: [reference.periodKey('day', wallNowMs), reference.periodKey('month', wallNowMs)] }, null);
      records = [];
      quota.clear();
    },
    pending: () => records.length + quota.size,
    close: () => backend.stop(2000),
  };
}

async function scenario(variant: Variant, config: HistoryConfig, live: number): Promise<Figures[]> {
  const dir = mkdtempSync(join(tmpdir(), 'qg-bench-history-'));
  const reference = await storeWriter({ ...config, backend: 'sqlite', postgres: null }, dir); // for periodKey only, and SQLite's own runs
  const store = variant === 'postgres-main' ? await mainThreadPgWriter(config, reference) : variant === 'postgres' ? await storeWriter(config, dir) : reference;
  try {
    const sessions = new Map<string, TrafficCounters>();
    let next = 0;
    const start = (): void => {
      const id = `s${next++}`;
      sessions.set(id, { bytesIn: 0, packetsIn: 0, bytesOut: 0, packetsOut: 0 });
      store.recordStart({ id, user: `u${next % 200}`, ipv4: `198.18.${(next >> 8) & 255}.${next & 255}`, ipv6: null, peer: '192.0.2.9:50000', transport: 'quic', startedAt: Date.now() });
    };
    store.setSnapshotProvider(() => [...sessions].map(([id, counters]) => ({ id, counters })));
    for (let i = 0; i < live; i++) start();
    await store.flush(); // the live sessions' rows exist now
    const out: Figures[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      for (const c of sessions.values()) {
        c.bytesIn += 1500;
        c.packetsIn += 1;
        c.bytesOut += 3000;
        c.packetsOut += 2;
        store.addQuotaUsage(`u${c.packetsIn % 200}`, store.periodKey('day'), 4500);
      }
      const ended = [...sessions.keys()].slice(0, CHURN);
      for (const id of ended) {
        store.recordEnd({ id, endedAt: Date.now(), reason: 'client_closed', message: null, counters: sessions.get(id)! });
        sessions.delete(id);
      }
      for (let i = 0; i < CHURN; i++) start();
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      const elu0 = performance.eventLoopUtilization();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await store.flush();
      const wallMs = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const elu = performance.eventLoopUtilization(elu0);
      loop.disable();
      if (store.pending() !== 0) throw new Error(`${variant}: the flush left ${store.pending()} pending`);
      if (round > 0) out.push({ wallMs, busyMs: elu.active, worstMs: loop.max / 1e6, cpuMs: (cpu.user + cpu.system) / 1000 });
    }
    return out;
  } finally {
    await store.close();
    if (store !== reference) await reference.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const server = BACKENDS.some((b) => b !== 'sqlite') ? await startTestPostgres() : null;
  try {
    const base: HistoryConfig = {
      enabled: true, retentionDays: 0, flushIntervalMs: 3_600_000, batchSize: 1_000_000, queueLimit: 1_000_000, busyTimeoutMs: 5000,
      rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null,
    };
    console.log(`history write cost on the event loop: ${ROUNDS} rounds per line, medians; churn ${CHURN} starts + ${CHURN} ends per write; node ${process.version}`);
    for (const live of LIVE) {
      for (const backend of BACKENDS) {
        const config: HistoryConfig =
          backend === 'sqlite'
            ? base
            : { ...base, backend: 'postgres', postgres: { url: await server!.createDatabase(`bench_${live}_${Date.now()}`), poolSize: 4, connectTimeoutMs: 5000, queryTimeoutMs: 60_000 } };
        const figures = await scenario(backend, config, live);
        const statements = live + 2 * CHURN;
        const busy = median(figures.map((f) => f.busyMs));
        console.log(
          `${backend.padEnd(13)} live ${String(live).padStart(6)}  wall ${median(figures.map((f) => f.wallMs)).toFixed(1).padStart(8)} ms  ` +
            `busy ${busy.toFixed(1).padStart(7)} ms (${((busy / statements) * 1000).toFixed(1)} ms per 1,000 rows)  worst loop delay ${median(figures.map((f) => f.worstMs)).toFixed(1)} ms  cpu ${median(figures.map((f) => f.cpuMs)).toFixed(0)} ms`,
        );
      }
    }
  } finally {
    await server?.dispose();
  }
}

await main();
