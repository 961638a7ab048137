/**
 * Messages between the HistoryStore (gateway thread) and the history worker (worker.ts for SQLite, pg-worker.ts
 * for PostgreSQL). Plain data only (structured clone); errors cross as WireError, since a clone keeps neither
 * their class nor their `code`.
 *
 *   store ─► worker   { id, req }            writes answered in order (SQLite: every request in order)
 *   worker ─► store   { id, ok, value|error } or { log } (a pino line to re-emit on the gateway's logger)
 */
import type { HistoryPostgresConfig } from '../config/types.js';
import type { QueuedRecord, QuotaIncrement } from './writer.js';
import type { QuotaRow } from './engine.js';
import type { HourlyRow, RecentRejectionsQuery, RecentSessionsQuery, SearchSessionsQuery, StatsQuery } from './queries.js';
import type {
  CounterSnapshot,
  HistoryStartupEvent,
  HistoryStats,
  RejectionCount,
  RejectionRow,
  SessionHistoryRow,
  UserUsage,
} from './records.js';
import type { RetentionResult } from './retention.js';

/** What a history worker thread is started with: which backend it runs, and that backend's settings. */
export type WorkerInit = SqliteWorkerInit | PostgresWorkerInit;

export interface SqliteWorkerInit {
  readonly backend: 'sqlite';
  readonly file: string;
  readonly dataDir: string;
  readonly busyTimeoutMs: number;
  readonly logLevel: string;
  readonly gatewayId: string;
}

export interface PostgresWorkerInit {
  readonly backend: 'postgres';
  /** As configured; the URL may hold a password: it stays in the thread's pool, logged only redacted. */
  readonly postgres: HistoryPostgresConfig;
  readonly logLevel: string;
  readonly gatewayId: string;
}

export interface WireBatch {
  readonly records: readonly QueuedRecord[];
  readonly snapshots: readonly CounterSnapshot[];
  readonly quota: readonly QuotaIncrement[];
  readonly rejections: readonly RejectionCount[];
  readonly wallNowMs: number;
}

/** What the worker does, and what it answers with. */
export interface Requests {
  /** error: the database is unreachable for now (PostgreSQL): the store starts degraded and retries. */
  open: { req: { wallNowMs: number; quotaFrom: string }; res: { events: HistoryStartupEvent[]; quota: QuotaRow[]; error: string | null } };
  /**
   * quota: null when this gateway is the database's only writer (SQLite); else the fleet-wide stored rows of
   * quotaKeys after the write (PostgreSQL shared by several gateways).
   */
  write: { req: { batch: WireBatch; quotaKeys: readonly string[] }; res: { refused: number; quota: QuotaRow[] | null } };
  retention: { req: { retentionDays: number; wallNowMs: number }; res: RetentionResult };
  recentSessions: { req: { query: RecentSessionsQuery; wallNowMs: number }; res: SessionHistoryRow[] };
  recentRejections: { req: { query: RecentRejectionsQuery; wallNowMs: number }; res: RejectionRow[] };
  stats: { req: { query: StatsQuery; wallNowMs: number }; res: HistoryStats };
  searchSessions: { req: { query: SearchSessionsQuery; wallNowMs: number }; res: SessionHistoryRow[] };
  hourly: { req: { windowHours: number; gatewayId: string | null; wallNowMs: number }; res: HourlyRow[] };
  closeOpenSessions: { req: { gatewayId: string; reason: 'crash'; endedAtMs: number; startedByMs: number | null }; res: number };
  userUsage: { req: { user: string; wallNowMs: number }; res: UserUsage };
  quotaOf: { req: { key: string; wallNowMs: number }; res: QuotaRow[] };
  close: { req: Record<string, never>; res: null };
}
export type RequestKind = keyof Requests;

/** What only a worker thread does, besides Requests (worker-backend.ts sends it, nobody else). */
export interface WorkerRequests extends Requests {
  /** A restarted thread's open (resume.ts): no crash recovery; this gateway's open rows become its live sessions. */
  resume: { req: { wallNowMs: number }; res: { events: HistoryStartupEvent[]; liveSessions: number } };
}
export type WorkerRequestKind = keyof WorkerRequests;

export type ToWorker = {
  [K in WorkerRequestKind]: { readonly id: number; readonly kind: K; readonly req: WorkerRequests[K]['req'] };
}[WorkerRequestKind];

export interface WireError {
  /** QuicgateError code (QG_ERR_*), or null. */
  readonly qgCode: string | null;
  /** SQLite, PostgreSQL (SQLSTATE) or errno code, or null. */
  readonly code: string | null;
  readonly message: string;
}

export type FromWorker =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: WireError }
  | { readonly log: string };
