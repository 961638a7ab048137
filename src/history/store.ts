/**
 * HistoryStore: the session history in `<dataDir>/history.sqlite`.
 *
 *   record*() / addQuotaUsage()  ── copy into memory (queue, quota map), no I/O ──┐
 *   every flushIntervalMs, or soon after the queue reaches batchSize, or flush()/close():
 *     connection(): file still the one we opened? (stat) else reopen / fresh file
 *     writeBatch(): queued records + live counter snapshots + quota in ONE transaction
 *   failure ─► degraded: records stay queued (bounded, overflow counted as dropped), retry with backoff;
 *              success ─► not degraded, queued rows written.
 *   retention: once at open, then on a Clock interval.
 *
 * SQLite (node:sqlite; better-sqlite3 on Node 20: see sqlite.ts) is synchronous, so writes run on the event loop,
 * but only from timers and in short transactions (chunks of at most MAX_CHUNK records, busy timeout of a few ms):
 * never inside a record call.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import type { HistoryConfig } from '../config/types.js';
import { QuicgateError } from '../errors.js';
import type { TrafficCounters } from '../gateway/session.js';
import {
  HISTORY_FILE,
  closeQuietly,
  describeError,
  fileIdentity,
  isBusyError,
  isCorruptionError,
  openHistoryDatabase,
  type FileIdentity,
} from './db.js';
import {
  hourlySeries,
  recentRejections,
  recentSessions,
  searchSessions,
  userUsage,
  windowStats,
  type RecentRejectionsQuery,
  type RecentSessionsQuery,
  type HourlyRow,
  type SearchSessionsQuery,
  type StatsQuery,
} from './queries.js';
import { periodKey, storedQuotaUsage, type QuotaPeriod } from './quota.js';
import type {
  CounterSnapshot,
  FlushReport,
  HistoryHealth,
  HistoryStartupEvent,
  HistoryStats,
  RejectionRecord,
  RejectionRow,
  SessionEndRecord,
  SessionHistoryRow,
  SessionStartRecord,
  SnapshotProvider,
  UserUsage,
} from './records.js';
import { applyRetention } from './retention.js';
import type { SqliteDatabase } from './sqlite.js';
import {
  BatchStatements,
  LiveSessions,
  writeBatch,
  type Batch,
  type QueuedRecord,
  type QuotaIncrement,
} from './writer.js';

export interface HistoryStoreOptions {
  readonly dataDir: string;
  readonly config: HistoryConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Most records kept while writes fail; beyond it new records are dropped and counted. */
  readonly maxPending?: number;
  /** Backoff between write attempts while degraded (doubles up to maxMs). */
  readonly retry?: { readonly initialMs: number; readonly maxMs: number };
  /** How long a write waits for another connection's lock before counting as a failure. */
  readonly busyTimeoutMs?: number;
  readonly retentionIntervalMs?: number;
  /** Called after each committed write (for metrics). */
  readonly onFlush?: (report: FlushReport) => void;
}

const DEFAULT_MAX_PENDING = 100_000;
const DEFAULT_RETRY = { initialMs: 1_000, maxMs: 60_000 };
const DEFAULT_BUSY_TIMEOUT_MS = 20;
const DEFAULT_RETENTION_INTERVAL_MS = 3_600_000;
const MAX_CHUNK = 2_000;

interface Connection {
  readonly db: SqliteDatabase;
  readonly identity: FileIdentity;
  readonly statements: BatchStatements;
}

export class HistoryStore {
  readonly file: string;
  /** What happened while opening: created, migrated, corrupt file moved aside, crashed sessions closed. */
  readonly startupEvents: readonly HistoryStartupEvent[];

  private readonly dataDir: string;
  private readonly config: HistoryConfig;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly maxPending: number;
  private readonly retry: { readonly initialMs: number; readonly maxMs: number };
  private readonly busyTimeoutMs: number;
  private readonly onFlush: ((report: FlushReport) => void) | undefined;

  private conn: Connection | null;
  private lastIdentity: FileIdentity;
  private readonly queue: QueuedRecord[] = [];
  private readonly pendingQuota = new Map<string, { user: string; periodKey: string; bytes: number }>();
  private readonly live = new LiveSessions();
  private snapshotProvider: SnapshotProvider | null = null;
  private reseedLive = false;
  private needsQuickCheck = false;

  private degraded = false;
  private lastError: string | null = null;
  private dropped = 0;
  private droppedWarned = false;
  private retryDelayMs: number;
  private retryTimer: TimerHandle | null = null;
  private soonTimer: TimerHandle | null = null;
  private readonly intervalTimer: TimerHandle;
  private readonly retentionTimer: TimerHandle | null;
  private closed = false;

  /** Opens (creating, migrating or replacing a corrupt file as needed). Throws QG_ERR_HISTORY if it cannot. */
  static open(opts: HistoryStoreOptions): HistoryStore {
    return new HistoryStore(opts);
  }

  private constructor(opts: HistoryStoreOptions) {
    this.dataDir = opts.dataDir;
    this.file = path.join(opts.dataDir, HISTORY_FILE);
    this.config = opts.config;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.maxPending = opts.maxPending ?? DEFAULT_MAX_PENDING;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.retryDelayMs = this.retry.initialMs;
    this.busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.onFlush = opts.onFlush;

    const opened = openHistoryDatabase({
      file: this.file,
      wallNowMs: this.wallNow(),
      logger: this.logger,
      busyTimeoutMs: this.busyTimeoutMs,
      quickCheck: true,
      recoverCrashed: true,
    });
    this.conn = { ...opened, statements: new BatchStatements(opened.db) };
    this.lastIdentity = opened.identity;
    this.startupEvents = opened.events;
    this.logger.info({ file: this.file, events: opened.events.map((e) => e.kind) }, 'history store open');

    this.intervalTimer = this.clock.setInterval(() => {
      if (!this.degraded) this.attempt();
    }, this.config.flushIntervalMs);
    if (this.config.retentionDays > 0) {
      this.runRetention();
      this.retentionTimer = this.clock.setInterval(
        () => this.runRetention(),
        opts.retentionIntervalMs ?? DEFAULT_RETENTION_INTERVAL_MS,
      );
    } else {
      this.retentionTimer = null;
    }
  }

  // ── recording: memory only ──────────────────────────────────────────────────────────────────────────

  recordStart(r: SessionStartRecord): void {
    this.enqueue({
      kind: 'start',
      record: {
        id: r.id,
        user: r.user,
        ipv4: r.ipv4,
        ipv6: r.ipv6,
        peer: r.peer,
        transport: r.transport,
        startedAt: toInt(r.startedAt),
      },
    });
  }

  recordEnd(r: SessionEndRecord): void {
    this.enqueue({
      kind: 'end',
      record: {
        id: r.id,
        endedAt: toInt(r.endedAt),
        reason: r.reason,
        message: r.message,
        counters: cleanCounters(r.counters),
      },
    });
  }

  recordRejection(r: RejectionRecord): void {
    this.enqueue({ kind: 'rejection', record: { user: r.user, source: r.source, reason: r.reason, at: toInt(r.at) } });
  }

  /** Adds bytes to the user's usage for the period; written with the next batch. */
  addQuotaUsage(user: string, key: string, bytes: number): void {
    const add = toInt(bytes);
    if (add <= 0 || this.closed) return;
    const mapKey = `${user}\u0000${key}`;
    const pending = this.pendingQuota.get(mapKey);
    if (pending !== undefined) pending.bytes += add;
    else this.pendingQuota.set(mapKey, { user, periodKey: key, bytes: add });
  }

  /** The provider's live sessions' counters are written with every flush (so a crash loses one interval). */
  setSnapshotProvider(fn: SnapshotProvider | null): void {
    this.snapshotProvider = fn;
  }

  // ── writing ─────────────────────────────────────────────────────────────────────────────────────────

  /** Writes everything pending now (also while degraded: one extra attempt). Never throws. */
  flush(): void {
    if (this.closed) return;
    this.attempt();
  }

  health(): HistoryHealth {
    return {
      ok: !this.closed && !this.degraded,
      degraded: this.degraded,
      lastError: this.lastError,
      pending: this.queue.length + this.pendingQuota.size,
      dropped: this.dropped,
    };
  }

  /** Flushes what it can, stops the timers and closes the file. Never throws. */
  close(): void {
    if (this.closed) return;
    for (const t of [this.intervalTimer, this.retentionTimer, this.retryTimer, this.soonTimer]) t?.cancel();
    try {
      do this.writeChunk();
      while (this.queue.length > 0);
    } catch (err) {
      this.lastError = describeError(err);
      const lost = this.queue.length + this.pendingQuota.size;
      this.dropped += lost;
      this.logger.error({ err: this.lastError, lost }, 'history: final flush failed; pending records lost');
    }
    this.closed = true;
    this.queue.length = 0;
    this.pendingQuota.clear();
    if (this.conn !== null) closeQuietly(this.conn.db);
    this.conn = null;
  }

  // ── queries (admin API, CLI); throw QG_ERR_HISTORY when the file cannot be read ────────────────────

  /** Newest first. Shows what is written: sessions recorded within the last interval may not be there yet. */
  recentSessions(query: RecentSessionsQuery): SessionHistoryRow[] {
    return this.read((db) => recentSessions(db, query));
  }

  recentRejections(query: RecentRejectionsQuery): RejectionRow[] {
    return this.read((db) => recentRejections(db, query));
  }

  stats(query: StatsQuery): HistoryStats {
    return this.read((db) => windowStats(db, query, this.wallNow()));
  }

  /** Sessions started in the window matching a search, newest first. */
  searchSessions(query: SearchSessionsQuery): SessionHistoryRow[] {
    return this.read((db) => searchSessions(db, query));
  }

  /** Sessions started and bytes per UTC hour, the last `windowHours` hours (this one included). */
  hourly(windowHours: number): HourlyRow[] {
    return this.read((db) => hourlySeries(db, windowHours, this.wallNow()));
  }

  userUsage(user: string): UserUsage {
    return this.read((db) => userUsage(db, user));
  }

  /** Stored plus not yet written bytes of the user in the period. */
  quotaUsage(user: string, key: string): number {
    const pending = this.pendingQuota.get(`${user}\u0000${key}`)?.bytes ?? 0;
    return this.read((db) => storedQuotaUsage(db, user, key)) + pending;
  }

  periodKey(period: QuotaPeriod, wallMs: number = this.wallNow()): string {
    return periodKey(period, wallMs);
  }

  // ── internals ───────────────────────────────────────────────────────────────────────────────────────

  private enqueue(record: QueuedRecord): void {
    if (this.closed || this.queue.length >= this.maxPending) {
      this.dropped++;
      if (!this.droppedWarned && !this.closed) {
        this.droppedWarned = true;
        this.logger.warn({ maxPending: this.maxPending }, 'history queue full; dropping new records');
      }
      return;
    }
    this.queue.push(record);
    if (this.queue.length >= this.config.batchSize && !this.degraded) this.scheduleSoon();
  }

  private scheduleSoon(): void {
    if (this.soonTimer !== null || this.closed) return;
    this.soonTimer = this.clock.setTimeout(() => {
      this.soonTimer = null;
      if (!this.degraded) this.attempt();
    }, 0);
  }

  private attempt(): void {
    try {
      this.writeChunk();
    } catch (err) {
      this.failed(err);
      return;
    }
    if (this.degraded) {
      this.degraded = false;
      this.droppedWarned = false;
      this.retryDelayMs = this.retry.initialMs;
      this.retryTimer?.cancel();
      this.retryTimer = null;
      this.logger.info({ pending: this.queue.length, dropped: this.dropped }, 'history writes recovered');
    }
    if (this.queue.length > 0) this.scheduleSoon();
  }

  /** One transaction: up to MAX_CHUNK queued records, the live counters and the quota increments. */
  private writeChunk(): void {
    const started = this.clock.now();
    const conn = this.connection();
    const records = this.queue.slice(0, MAX_CHUNK);
    const quota: QuotaIncrement[] = [...this.pendingQuota.values()].map((q) => ({ ...q }));
    const batch: Batch = {
      records,
      snapshots: this.collectSnapshots(),
      quota,
      reseed: this.reseedLive ? this.live.starts() : [],
      wallNowMs: this.wallNow(),
    };
    try {
      writeBatch(conn.statements, batch, this.live);
      this.forgetWritten(records.length, quota);
    } catch (err) {
      if (!isDataError(err)) throw err;
      this.writeIsolatingBadRecords(conn, batch);
    }
    this.reseedLive = false;
    this.onFlush?.({
      records: records.length,
      snapshots: batch.snapshots.length,
      quotaUpdates: quota.length,
      durationMs: this.clock.now() - started,
    });
  }

  /** Removes what a committed transaction wrote from the queue and the pending quota. */
  private forgetWritten(records: number, quota: readonly QuotaIncrement[]): void {
    this.queue.splice(0, records);
    for (const q of quota) {
      const key = `${q.user}\u0000${q.periodKey}`;
      const pending = this.pendingQuota.get(key);
      if (pending === undefined) continue;
      pending.bytes -= q.bytes;
      if (pending.bytes <= 0) this.pendingQuota.delete(key);
    }
  }

  // A record the schema refuses must not block the queue forever: write one by one and drop the refused.
  // Each part is forgotten as soon as it is committed, so a disk failure midway repeats nothing.
  private writeIsolatingBadRecords(conn: Connection, batch: Batch): void {
    const writeAlone = (part: Partial<Batch>): void => {
      const single: Batch = { records: [], snapshots: [], quota: [], reseed: [], wallNowMs: batch.wallNowMs, ...part };
      try {
        writeBatch(conn.statements, single, this.live);
      } catch (err) {
        if (!isDataError(err)) throw err;
        this.dropped++;
        this.logger.error({ err: describeError(err), record: single }, 'history: dropping a record the database refuses');
      }
      this.forgetWritten(single.records.length, single.quota);
    };
    for (const start of batch.reseed) writeAlone({ reseed: [start] });
    for (const record of batch.records) writeAlone({ records: [record] });
    for (const snapshot of batch.snapshots) writeAlone({ snapshots: [snapshot] });
    for (const q of batch.quota) writeAlone({ quota: [q] });
  }

  /** The open connection if the file at our path is still the one it has open; otherwise reopen. */
  private connection(): Connection {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(this.dataDir).isDirectory();
    } catch (err) {
      throw new QuicgateError('QG_ERR_HISTORY', `data directory unavailable: ${describeError(err)}`, { cause: err });
    }
    if (!isDirectory) throw new QuicgateError('QG_ERR_HISTORY', `${this.dataDir} is not a directory`);
    let current: FileIdentity | null = null;
    try {
      current = fileIdentity(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const conn = this.conn;
    if (conn !== null && !this.needsQuickCheck && current !== null && sameFile(current, conn.identity)) return conn;

    if (conn !== null) {
      closeQuietly(conn.db);
      this.conn = null;
    }
    const opened = openHistoryDatabase({
      file: this.file,
      wallNowMs: this.wallNow(),
      logger: this.logger,
      busyTimeoutMs: this.busyTimeoutMs,
      quickCheck: this.needsQuickCheck,
      recoverCrashed: false,
    });
    this.needsQuickCheck = false;
    this.conn = { ...opened, statements: new BatchStatements(opened.db) };
    // The file may be another one (removed, replaced, moved aside as corrupt; a freed inode number can even
    // come back), so insert our live sessions again: ON CONFLICT DO NOTHING makes this harmless for the same file.
    this.reseedLive = true;
    if (current === null || !sameFile(opened.identity, this.lastIdentity)) {
      this.logger.warn(
        { file: this.file, reason: current === null ? 'file missing' : 'file replaced', events: opened.events },
        'history database file changed under us; continuing in the file now at the path',
      );
    }
    this.lastIdentity = opened.identity;
    return this.conn;
  }

  private failed(err: unknown): void {
    const message = describeError(err);
    this.lastError = message;
    if (isCorruptionError(err)) this.needsQuickCheck = true;
    else if (!isBusyError(err) && this.conn !== null) {
      // Unknown state (I/O error, disk full, read-only): start over with a fresh connection next time.
      closeQuietly(this.conn.db);
      this.conn = null;
    }
    if (!this.degraded) {
      this.degraded = true;
      this.retryDelayMs = this.retry.initialMs;
      this.logger.error({ err: message, pending: this.queue.length }, 'history writes failing; queueing and retrying');
    } else {
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.retry.maxMs);
      this.logger.debug({ err: message, retryInMs: this.retryDelayMs }, 'history write retry failed');
    }
    this.retryTimer?.cancel();
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      this.attempt();
    }, this.retryDelayMs);
  }

  private collectSnapshots(): CounterSnapshot[] {
    if (this.snapshotProvider === null) return [];
    try {
      const out: CounterSnapshot[] = [];
      for (const s of this.snapshotProvider()) out.push({ id: s.id, counters: cleanCounters(s.counters) });
      return out;
    } catch (err) {
      this.logger.error({ err: describeError(err) }, 'history snapshot provider threw; counters not written');
      return [];
    }
  }

  private runRetention(): void {
    try {
      const removed = applyRetention(this.connection().db, this.config.retentionDays, this.wallNow());
      this.logger.debug({ removed }, 'history retention applied');
    } catch (err) {
      // The next write notices a broken file; retention simply runs again next time.
      this.logger.warn({ err: describeError(err) }, 'history retention failed');
    }
  }

  private read<T>(fn: (db: SqliteDatabase) => T): T {
    if (this.closed) throw new QuicgateError('QG_ERR_CLOSED', 'history store is closed');
    let conn: Connection;
    try {
      conn = this.conn ?? this.connection();
    } catch (err) {
      throw new QuicgateError('QG_ERR_HISTORY', `history unavailable: ${describeError(err)}`, { cause: err });
    }
    try {
      return fn(conn.db);
    } catch (err) {
      if (err instanceof QuicgateError) throw err;
      throw new QuicgateError('QG_ERR_HISTORY', `history query failed: ${describeError(err)}`, { cause: err });
    }
  }

  private wallNow(): number {
    return Math.trunc(this.clock.wallNow());
  }
}

function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

function toInt(n: number): number {
  return Number.isFinite(n) ? Math.trunc(n) : 0;
}

/** A copy with whole, non-negative numbers (what the columns hold). */
function cleanCounters(c: Readonly<TrafficCounters>): TrafficCounters {
  return {
    bytesIn: Math.max(0, toInt(c.bytesIn)),
    packetsIn: Math.max(0, toInt(c.packetsIn)),
    bytesOut: Math.max(0, toInt(c.bytesOut)),
    packetsOut: Math.max(0, toInt(c.packetsOut)),
  };
}

function isDataError(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG');
}
