/**
 * HistoryStore: the session history (`<dataDir>/history.sqlite`, or a PostgreSQL), written by a worker thread.
 *
 *   record*() / addQuotaUsage()  ── copy into memory (bounded queue, quota and rejection counts), no I/O ──┐
 *   every flushIntervalMs, or soon after the queue reaches batchSize, or flush()/close():
 *     ONE write at a time goes to the worker (worker-backend.ts): up to MAX_CHUNK queued records, the live
 *     sessions' counters, quota increments and rejection counts, in one transaction; forgotten here when the
 *     worker says it committed.
 *   failure ─► degraded: records stay queued (bounded: queueLimit, overflow dropped and counted), retried with
 *              backoff; success ─► not degraded.
 *   a write out longer than stallAfterMs (a disk or lock that does not answer) ─► reported degraded; records
 *     keep queueing up to the bound, then are dropped and counted. Nothing here ever waits for the database.
 *   retention: once at open, then on a Clock interval.  Queries: async, answered by the worker in order.
 *
 * Two backends answer the store's requests, each in its own worker thread (worker-backend.ts, restarted when
 * lost by worker-supervisor.ts), with the same queue, batching and failure handling:
 *   sqlite (default)  `<dataDir>/history.sqlite` (worker.ts → engine.ts): SQLite is synchronous.
 *   postgres          a PostgreSQL shared by the fleet (pg-worker.ts → pg-backend.ts): pg is async I/O, but its
 *                     per-row protocol work is CPU the forwarding thread cannot spare (docs/robustness.md).
 * Every row carries this gateway's id, so a shared database answers fleet-wide and can filter by gateway.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import type { HistoryConfig } from '../config/types.js';
import { QuicgateError } from '../errors.js';
import { errorText, withTimeout, type HistoryBackend } from './backend.js';
import type { TrafficCounters } from '../gateway/session.js';
import { HISTORY_FILE } from './db.js';
import type { QuotaRow } from './engine.js';
import type { RequestKind, Requests, WorkerInit } from './protocol.js';
import type { HourlyRow, RecentRejectionsQuery, RecentSessionsQuery, SearchSessionsQuery, StatsQuery } from './queries.js';
import { periodKey, type QuotaPeriod } from './quota.js';
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
import { RejectionCounter } from './rejection-counter.js';
import { WorkerBackend } from './worker-backend.js';
import type { QueuedRecord, QuotaIncrement } from './writer.js';

export interface HistoryStoreOptions {
  readonly dataDir: string;
  readonly config: HistoryConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  /** This gateway's id (config fleet.gateway_id, else the host name): written into every row. */
  readonly gatewayId: string;
  /** Overrides config.queueLimit: most records kept while writes fail or stall. */
  readonly maxPending?: number;
  /** Backoff between write attempts while degraded (doubles up to maxMs). */
  readonly retry?: { readonly initialMs: number; readonly maxMs: number };
  /** Overrides config.busyTimeoutMs. */
  readonly busyTimeoutMs?: number;
  readonly retentionIntervalMs?: number;
  /** A write out longer than this (Clock time) reports the history degraded. Default max(1 s, 2 flush intervals). */
  readonly stallAfterMs?: number;
  /** Real time a query (or flush) waits for the worker before failing (flush: giving up). Default 5 s. */
  readonly queryTimeoutMs?: number;
  /** Called after each committed write (for metrics). */
  readonly onFlush?: (report: FlushReport) => void;
  /** Delay before restarting a lost worker thread (doubling up to maxMs). Default 1 s .. 60 s. */
  readonly workerRestart?: { readonly initialMs: number; readonly maxMs: number };
}

const DEFAULT_RETRY = { initialMs: 1_000, maxMs: 60_000 };
const DEFAULT_RETENTION_INTERVAL_MS = 3_600_000;
const DEFAULT_QUERY_TIMEOUT_MS = 5_000;
/** Opening checks, migrates and may move a corrupt file aside: give it time, but not forever. */
const OPEN_TIMEOUT_MS = 60_000;
const MAX_CHUNK = 2_000;

export class HistoryStore {
  /** The SQLite file, or the PostgreSQL URL without its password (for logs and operators). */
  readonly location: string;
  readonly gatewayId: string;

  private readonly config: HistoryConfig;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly maxPending: number;
  private readonly retry: { readonly initialMs: number; readonly maxMs: number };
  private readonly stallAfterMs: number;
  private readonly queryTimeoutMs: number;
  private readonly retentionIntervalMs: number;
  private readonly onFlush: ((report: FlushReport) => void) | undefined;

  /** Where requests go (exposed for tests that kill the worker thread). */
  readonly backend: HistoryBackend;

  private events: readonly HistoryStartupEvent[] = [];
  private readonly queue: QueuedRecord[] = [];
  private readonly pendingQuota = new Map<string, { user: string; periodKey: string; bytes: number }>();
  private readonly rejections: RejectionCounter;
  /** Stored plus added bytes per user and period, for every period key >= quotaFrom and those loaded since. */
  private readonly quotaTotals = new Map<string, number>();
  private quotaFrom = '';
  private readonly quotaKeysLoaded = new Set<string>();
  private readonly quotaKeysLoading = new Set<string>();
  /** False while the shared database's quota rows have not been read yet (it was down at start). */
  private quotaFresh = true;
  private snapshotProvider: SnapshotProvider | null = null;

  /** Writes run one after another: each waits for the previous one. */
  private writeChain: Promise<unknown> = Promise.resolve();
  /** The write a timer started, until it ends (so timers firing meanwhile start no second one). */
  private draining: Promise<boolean> | null = null;
  /** Clock time the write now out was sent; null when none is out. */
  private writeSentAt: number | null = null;
  private stallWarned = false;
  private degraded = false;
  private lastError: string | null = null;
  private dropped = 0;
  private droppedWarned = false;
  private retryDelayMs: number;
  private retryTimer: TimerHandle | null = null;
  private soonTimer: TimerHandle | null = null;
  private intervalTimer: TimerHandle | null = null;
  private retentionTimer: TimerHandle | null = null;
  /** No more records accepted (close() started). */
  private closing: Promise<void> | null = null;
  private closed = false;

  /** Opens (creating, migrating or replacing a corrupt file as needed). Rejects with QG_ERR_HISTORY if it cannot. */
  static async open(opts: HistoryStoreOptions): Promise<HistoryStore> {
    const store = new HistoryStore(opts);
    let opened: Requests['open']['res'];
    try {
      const wallNowMs = store.wallNow();
      opened = await store.call('open', { wallNowMs, quotaFrom: periodKey('month', wallNowMs) }, OPEN_TIMEOUT_MS);
    } catch (err) {
      await store.stopBackend(1000);
      throw err instanceof QuicgateError ? err : new QuicgateError('QG_ERR_HISTORY', errorText(err), { cause: err });
    }
    store.started(opened.events, opened.quota, opened.error);
    return store;
  }

  private constructor(opts: HistoryStoreOptions) {
    this.gatewayId = opts.gatewayId;
    this.config = opts.config;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.maxPending = opts.maxPending ?? opts.config.queueLimit;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.retryDelayMs = this.retry.initialMs;
    this.stallAfterMs = opts.stallAfterMs ?? Math.max(1000, 2 * opts.config.flushIntervalMs);
    this.queryTimeoutMs = opts.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    this.retentionIntervalMs = opts.retentionIntervalMs ?? DEFAULT_RETENTION_INTERVAL_MS;
    this.onFlush = opts.onFlush;
    this.rejections = new RejectionCounter(opts.config.rejectionRowsPerHour, (hourMs) =>
      this.logger.warn(
        { hour: new Date(hourMs).toISOString(), rowsPerHour: opts.config.rejectionRowsPerHour },
        'history: rejection rows for this hour at their limit; further sources are counted under source "*"',
      ),
    );
    let init: WorkerInit;
    if (opts.config.backend === 'postgres') {
      if (opts.config.postgres === null) throw new QuicgateError('QG_ERR_HISTORY', 'history.backend is postgres but history.postgres is not set');
      init = { backend: 'postgres', postgres: opts.config.postgres, logLevel: this.logger.level, gatewayId: opts.gatewayId };
    } else {
      init = {
        backend: 'sqlite',
        file: path.join(opts.dataDir, HISTORY_FILE),
        dataDir: opts.dataDir,
        busyTimeoutMs: opts.busyTimeoutMs ?? opts.config.busyTimeoutMs,
        logLevel: this.logger.level,
        gatewayId: opts.gatewayId,
      };
    }
    this.backend = new WorkerBackend({
      init,
      clock: opts.clock,
      logger: opts.logger,
      restartBackoff: opts.workerRestart,
      resumeTimeoutMs: OPEN_TIMEOUT_MS,
      // Records stay queued (bounded) while the thread is restarted; the supervisor logs the loss.
      onLost: (message) => {
        if (this.closing === null) this.lastError = message;
      },
      onBack: () => this.backendBack(),
    });
    this.location = this.backend.location;
    this.quotaFresh = !this.backend.shared;
  }

  private started(events: HistoryStartupEvent[], quota: readonly QuotaRow[], error: string | null): void {
    this.events = events;
    this.quotaFrom = periodKey('month', this.wallNow());
    for (const q of quota) this.quotaTotals.set(quotaKey(q.user, q.periodKey), q.bytes);
    if (error === null) this.quotaFresh = true;
    this.logger.info({ location: this.location, gatewayId: this.gatewayId, events: events.map((e) => e.kind) }, 'history store open');
    this.intervalTimer = this.clock.setInterval(() => this.onInterval(), this.config.flushIntervalMs);
    if (this.config.retentionDays > 0) {
      this.runRetention();
      this.retentionTimer = this.clock.setInterval(() => this.runRetention(), this.retentionIntervalMs);
    }
    // The database is unreachable for now (PostgreSQL down at start): degraded, queueing, retried with backoff.
    if (error !== null) this.failed(new QuicgateError('QG_ERR_HISTORY', error));
  }

  /** What happened while opening: created, migrated, corrupt file moved aside, crashed sessions closed. */
  get startupEvents(): readonly HistoryStartupEvent[] {
    return this.events;
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

  /** Counted per (source, reason, hour): see rejection-counter.ts. Pending rows share the queue's bound. */
  recordRejection(r: RejectionRecord): void {
    const counted =
      this.closing === null &&
      this.rejections.add({ user: r.user, source: r.source, reason: r.reason, at: toInt(r.at) }, this.rejections.size < this.maxPending);
    if (!counted) this.dropped++;
  }

  /** Adds bytes to the user's usage for the period; written with the next batch. */
  addQuotaUsage(user: string, key: string, bytes: number): void {
    const add = toInt(bytes);
    if (add <= 0 || this.closing !== null) return;
    const mapKey = quotaKey(user, key);
    const pending = this.pendingQuota.get(mapKey);
    if (pending !== undefined) pending.bytes += add;
    else this.pendingQuota.set(mapKey, { user, periodKey: key, bytes: add });
    this.quotaTotals.set(mapKey, (this.quotaTotals.get(mapKey) ?? 0) + add);
  }

  /** The provider's live sessions' counters are written with every flush (so a crash loses one interval). */
  setSnapshotProvider(fn: SnapshotProvider | null): void {
    this.snapshotProvider = fn;
  }

  // ── writing ─────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Writes everything pending now (also while degraded: one extra attempt) and resolves when it is written or
   * has failed, or after the query timeout when the database does not answer. Never rejects.
   */
  async flush(): Promise<void> {
    if (this.closing !== null) return;
    await withTimeout(this.drain(), this.queryTimeoutMs);
  }

  /** Resolves when the writes started so far (by timers or flush()) have been answered. Never rejects. */
  async settled(): Promise<void> {
    for (;;) {
      const chain = this.writeChain;
      await this.draining;
      await chain;
      if (chain === this.writeChain && this.draining === null) return;
    }
  }

  health(): HistoryHealth {
    const stalledMs = this.stalledMs();
    const stalled = stalledMs !== null;
    const unavailable = this.closing === null ? this.backend.unavailable : null;
    return {
      ok: !this.closed && this.closing === null && !this.degraded && !stalled && unavailable === null,
      degraded: this.degraded || stalled || unavailable !== null,
      lastError: stalled ? `a write has waited ${Math.round(stalledMs)} ms for the database (stalled)` : (unavailable ?? this.lastError),
      pending: this.queue.length + this.pendingQuota.size + this.rejections.size,
      dropped: this.dropped,
      workerRestarts: this.backend.restarts,
    };
  }

  /** Flushes what it can, stops the timers, closes the file and the worker. Never rejects. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // ── queries (admin API, CLI); reject with QG_ERR_HISTORY when the file cannot be read ────────────────

  /** Newest first. Shows what is written: sessions recorded within the last interval may not be there yet. */
  recentSessions(query: RecentSessionsQuery): Promise<SessionHistoryRow[]> {
    return this.query('recentSessions', { query, wallNowMs: this.wallNow() });
  }

  /** Rejection counts, the newest last refusal first. */
  recentRejections(query: RecentRejectionsQuery): Promise<RejectionRow[]> {
    return this.query('recentRejections', { query, wallNowMs: this.wallNow() });
  }

  stats(query: StatsQuery): Promise<HistoryStats> {
    return this.query('stats', { query, wallNowMs: this.wallNow() });
  }

  /** Sessions started in the window matching a search, newest first. */
  searchSessions(query: SearchSessionsQuery): Promise<SessionHistoryRow[]> {
    return this.query('searchSessions', { query, wallNowMs: this.wallNow() });
  }

  /** Sessions started and bytes per UTC hour, the last `windowHours` hours (this one included); one gateway's or all. */
  hourly(windowHours: number, gatewayId: string | null = null): Promise<HourlyRow[]> {
    return this.query('hourly', { windowHours, gatewayId, wallNowMs: this.wallNow() });
  }

  /**
   * Closes the sessions another gateway left open when it died (learnt from the fleet): status closed, reason
   * `crash`, ended at their last flushed time (no later than endedAtMs) with their last flushed counters.
   * Resolves with the number of sessions closed. This gateway's own id is refused: its open rows are live.
   * With startedByMs only rows started by then are closed (a late retry never ends a restarted gateway's).
   */
  closeOpenSessions(gatewayId: string, reason: 'crash', endedAtMs: number, startedByMs: number | null = null): Promise<number> {
    if (gatewayId === this.gatewayId) {
      return Promise.reject(new QuicgateError('QG_ERR_HISTORY', `refusing to close this gateway's (${gatewayId}) own open sessions`));
    }
    return this.query('closeOpenSessions', { gatewayId, reason, endedAtMs: toInt(endedAtMs), startedByMs: startedByMs === null ? null : toInt(startedByMs) });
  }

  userUsage(user: string): Promise<UserUsage> {
    return this.query('userUsage', { user, wallNowMs: this.wallNow() });
  }

  /**
   * Stored plus not yet written bytes of the user in the period, from memory (loaded at open for this month's
   * periods and later). SQLite: this process is the only writer. PostgreSQL: the stored bytes are the fleet's,
   * read back with every write (so other gateways' usage shows within a flush interval of theirs and ours).
   * An earlier period is read in the background, and a shared database not read yet (down since start):
   * until then this throws QG_ERR_HISTORY and the caller asks again later.
   */
  quotaUsage(user: string, key: string): number {
    if (this.closed) throw new QuicgateError('QG_ERR_CLOSED', 'history store is closed');
    if (!this.quotaFresh) throw new QuicgateError('QG_ERR_HISTORY', 'the fleet-wide quota usage has not been read from the history yet');
    if (key >= this.quotaFrom || this.quotaKeysLoaded.has(key)) return this.quotaTotals.get(quotaKey(user, key)) ?? 0;
    this.loadQuotaKey(key);
    throw new QuicgateError('QG_ERR_HISTORY', `quota usage of period ${key} is being read from the history`);
  }

  periodKey(period: QuotaPeriod, wallMs: number = this.wallNow()): string {
    return periodKey(period, wallMs);
  }

  // ── internals ───────────────────────────────────────────────────────────────────────────────────────

  private enqueue(record: QueuedRecord): void {
    if (this.closing !== null || this.queue.length >= this.maxPending) {
      this.dropped++;
      if (!this.droppedWarned && this.closing === null) {
        this.droppedWarned = true;
        this.logger.warn({ maxPending: this.maxPending }, 'history queue full; dropping new records');
      }
      return;
    }
    this.queue.push(record);
    if (this.queue.length >= this.config.batchSize && !this.degraded) this.scheduleSoon();
  }

  private onInterval(): void {
    const stalledMs = this.stalledMs();
    if (stalledMs !== null && !this.stallWarned) {
      this.stallWarned = true;
      this.logger.error(
        { waitedMs: Math.round(stalledMs), pending: this.queue.length, maxPending: this.maxPending },
        'history writes stalled; queueing (bounded) while forwarding goes on',
      );
    }
    if (!this.degraded) this.kick();
  }

  private scheduleSoon(): void {
    if (this.soonTimer !== null || this.closing !== null) return;
    this.soonTimer = this.clock.setTimeout(() => {
      this.soonTimer = null;
      if (!this.degraded) this.kick();
    }, 0);
  }

  /** Starts a write unless one is running; more queued than one write takes follows on the next Clock turn. */
  private kick(): void {
    if (this.draining !== null || this.closing !== null) return;
    const run = this.writeOnce().then((ok) => {
      if (ok && this.queue.length > 0) this.scheduleSoon();
      return ok;
    });
    this.draining = run;
    void run.then(() => {
      if (this.draining === run) this.draining = null;
    });
  }

  /** Writes until the queue is empty or a write fails; true when everything was written. */
  private async drain(): Promise<boolean> {
    let ok: boolean;
    do ok = await this.writeOnce();
    while (ok && this.queue.length > 0);
    return ok;
  }

  /** One write (after the one out, if any): up to MAX_CHUNK records plus counters, quota and rejections. */
  private writeOnce(): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      const records = this.queue.slice(0, MAX_CHUNK);
      const quota: QuotaIncrement[] = [...this.pendingQuota.values()].map((q) => ({ ...q }));
      const rejections = this.rejections.snapshot();
      const snapshots = this.collectSnapshots();
      const started = this.clock.now();
      this.writeSentAt = started;
      try {
        const wallNowMs = this.wallNow();
        const quotaKeys = this.backend.shared ? this.sharedQuotaKeys(wallNowMs) : [];
        const answer = await this.call('write', { batch: { records, snapshots, quota, rejections, wallNowMs }, quotaKeys }, null);
        const { refused } = answer;
        this.forgetWritten(records.length, quota);
        if (answer.quota !== null) this.storedQuota(quotaKeys, answer.quota);
        this.rejections.written(rejections);
        this.dropped += refused;
        this.writeDone();
        this.recovered();
        this.onFlush?.({ records: records.length, snapshots: snapshots.length, quotaUpdates: quota.length, durationMs: this.clock.now() - started });
        return true;
      } catch (err) {
        this.writeDone();
        this.failed(err);
        return false;
      }
    };
    const result = this.writeChain.then(run);
    this.writeChain = result;
    return result;
  }

  private writeDone(): void {
    const stalledMs = this.stalledMs();
    if (this.stallWarned) {
      this.logger.info({ waitedMs: stalledMs === null ? null : Math.round(stalledMs) }, 'history write answered after a stall');
    }
    this.stallWarned = false;
    this.writeSentAt = null;
  }

  private stalledMs(): number | null {
    if (this.writeSentAt === null) return null;
    const waited = this.clock.now() - this.writeSentAt;
    return waited > this.stallAfterMs ? waited : null;
  }

  /** Removes what a committed transaction wrote from the queue and the pending quota. */
  private forgetWritten(records: number, quota: readonly QuotaIncrement[]): void {
    this.queue.splice(0, records);
    for (const q of quota) {
      const key = quotaKey(q.user, q.periodKey);
      const pending = this.pendingQuota.get(key);
      if (pending === undefined) continue;
      pending.bytes -= q.bytes;
      if (pending.bytes <= 0) this.pendingQuota.delete(key);
    }
  }

  /** The periods whose fleet-wide usage a write reads back: today, this month, and earlier ones asked for. */
  private sharedQuotaKeys(wallNowMs: number): string[] {
    return [...new Set([periodKey('day', wallNowMs), periodKey('month', wallNowMs), ...this.quotaKeysLoaded])];
  }

  /** The fleet's stored usage of the keys, plus what we added and have not written yet. */
  private storedQuota(keys: readonly string[], rows: readonly QuotaRow[]): void {
    const stored = new Map(rows.map((r) => [quotaKey(r.user, r.periodKey), r.bytes]));
    const wanted = new Set(keys);
    for (const k of this.quotaTotals.keys()) {
      const periodOf = k.slice(k.indexOf('\u0000') + 1);
      if (wanted.has(periodOf) && !stored.has(k)) stored.set(k, 0);
    }
    for (const [k, bytes] of stored) this.quotaTotals.set(k, bytes + (this.pendingQuota.get(k)?.bytes ?? 0));
    this.quotaFresh = true;
  }

  private recovered(): void {
    if (!this.degraded) return;
    this.degraded = false;
    this.droppedWarned = false;
    this.retryDelayMs = this.retry.initialMs;
    this.retryTimer?.cancel();
    this.retryTimer = null;
    this.logger.info({ pending: this.queue.length, dropped: this.dropped }, 'history writes recovered');
  }

  /** The backend takes requests again (a restarted worker resumed): write now, not after the grown backoff. */
  private backendBack(): void {
    if (this.closing !== null) return;
    this.retryTimer?.cancel();
    this.retryTimer = null;
    this.kick();
  }

  private failed(err: unknown): void {
    const message = errorText(err);
    this.lastError = message;
    if (!this.degraded) {
      this.degraded = true;
      this.retryDelayMs = this.retry.initialMs;
      this.logger.error({ err: message, pending: this.queue.length }, 'history writes failing; queueing and retrying');
    } else {
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.retry.maxMs);
      this.logger.debug({ err: message, retryInMs: this.retryDelayMs }, 'history write retry failed');
    }
    this.retryTimer?.cancel();
    this.retryTimer = null;
    if (this.closing !== null) return;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      this.kick();
    }, this.retryDelayMs);
  }

  private collectSnapshots(): CounterSnapshot[] {
    if (this.snapshotProvider === null) return [];
    try {
      const out: CounterSnapshot[] = [];
      for (const s of this.snapshotProvider()) out.push({ id: s.id, counters: cleanCounters(s.counters) });
      return out;
    } catch (err) {
      this.logger.error({ err: errorText(err) }, 'history snapshot provider threw; counters not written');
      return [];
    }
  }

  private runRetention(): void {
    this.call('retention', { retentionDays: this.config.retentionDays, wallNowMs: this.wallNow() }, null).then(
      (removed) => this.logger.debug({ removed }, 'history retention applied'),
      // The next write notices a broken file; retention simply runs again next time.
      (err: unknown) => this.logger.warn({ err: errorText(err) }, 'history retention failed'),
    );
  }

  private loadQuotaKey(key: string): void {
    if (this.quotaKeysLoading.has(key)) return;
    this.quotaKeysLoading.add(key);
    this.call('quotaOf', { key, wallNowMs: this.wallNow() }, this.queryTimeoutMs).then(
      (rows) => {
        // Answers come in order: every write sent before this read is committed and already forgotten here,
        // so stored + still pending counts each byte once.
        const users = new Set([...rows.map((r) => r.user), ...[...this.pendingQuota.values()].filter((q) => q.periodKey === key).map((q) => q.user)]);
        const stored = new Map(rows.map((r) => [r.user, r.bytes]));
        for (const user of users) {
          const k = quotaKey(user, key);
          this.quotaTotals.set(k, (stored.get(user) ?? 0) + (this.pendingQuota.get(k)?.bytes ?? 0));
        }
        this.quotaKeysLoaded.add(key);
        this.quotaKeysLoading.delete(key);
      },
      (err: unknown) => {
        this.quotaKeysLoading.delete(key);
        this.logger.warn({ period: key, err: errorText(err) }, 'history: quota usage of an earlier period unreadable');
      },
    );
  }

  private async query<K extends RequestKind>(kind: K, req: Requests[K]['req']): Promise<Requests[K]['res']> {
    if (this.closing !== null) throw new QuicgateError('QG_ERR_CLOSED', 'history store is closed');
    try {
      return await this.call(kind, req, this.queryTimeoutMs);
    } catch (err) {
      if (err instanceof QuicgateError) throw err;
      throw new QuicgateError('QG_ERR_HISTORY', `history query failed: ${errorText(err)}`, { cause: err });
    }
  }

  private async shutdown(): Promise<void> {
    for (const t of [this.intervalTimer, this.retentionTimer, this.retryTimer, this.soonTimer]) t?.cancel();
    // A stalled database must not hold the shutdown for ever: the drain gets the query timeout.
    const written = await withTimeout(this.drain(), this.queryTimeoutMs);
    if (written !== true) {
      const lost = this.queue.length + this.pendingQuota.size + this.rejections.size;
      this.dropped += lost;
      this.logger.error(
        { err: written === 'timeout' ? 'the database did not answer' : this.lastError, lost },
        'history: final flush failed; pending records lost',
      );
    }
    this.queue.length = 0;
    this.pendingQuota.clear();
    this.rejections.clear();
    // A backend stuck in the database cannot close it: then only a short wait, then on.
    if (written !== 'timeout') await withTimeout(this.call('close', {}, null).catch(() => null), this.queryTimeoutMs);
    await this.stopBackend(written === 'timeout' ? 100 : this.queryTimeoutMs);
    this.closed = true;
  }

  private async stopBackend(timeoutMs: number): Promise<void> {
    this.closing ??= Promise.resolve();
    await this.backend.stop(timeoutMs);
  }

  private call<K extends RequestKind>(kind: K, req: Requests[K]['req'], timeoutMs: number | null): Promise<Requests[K]['res']> {
    return this.backend.call(kind, req, timeoutMs);
  }

  private wallNow(): number {
    return Math.trunc(this.clock.wallNow());
  }
}

function quotaKey(user: string, key: string): string {
  return `${user}\u0000${key}`;
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
