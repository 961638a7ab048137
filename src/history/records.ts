/**
 * Plain record and result types of the session history. The gateway maps its Session objects onto these, so
 * the store does not depend on the gateway. All times are wall-clock milliseconds since the epoch.
 */
import type { EndReason, RejectReason, TrafficCounters } from '../gateway/session.js';

export interface SessionStartRecord {
  readonly id: string;
  readonly user: string;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  /** "ip:port" of the client. */
  readonly peer: string;
  readonly transport: string;
  readonly startedAt: number;
}

export interface SessionEndRecord {
  readonly id: string;
  readonly endedAt: number;
  readonly reason: EndReason;
  readonly message: string | null;
  /** Final counters; copied when recorded. */
  readonly counters: Readonly<TrafficCounters>;
}

export interface RejectionRecord {
  /** The user name the client claimed, null when it sent none. */
  readonly user: string | null;
  /** Source address of the attempt ("ip" or "ip:port"). */
  readonly source: string;
  readonly reason: RejectReason;
  readonly at: number;
}

/** Refusals of one (source, reason) within one UTC hour: the unit the history stores rejections in. */
export interface RejectionCount {
  /** The throttling key of the source (IPv4 address, IPv6 /64), or "*" for sources past the hourly row limit. */
  readonly source: string;
  readonly reason: RejectReason;
  /** Start of the UTC hour. */
  readonly hourMs: number;
  /** The user name last claimed from that source in that hour (null when none was sent). */
  readonly user: string | null;
  readonly count: number;
  readonly firstAt: number;
  readonly lastAt: number;
}

/** One live session's counters; a gateway Session satisfies this structurally. */
export interface CounterSnapshot {
  readonly id: string;
  readonly counters: Readonly<TrafficCounters>;
}

/** Returns the live sessions' counters; called once per flush, off the forwarding path. */
export type SnapshotProvider = () => Iterable<CounterSnapshot>;

export interface HistoryHealth {
  /** Open and writing normally. */
  readonly ok: boolean;
  /** Writes are failing; records wait in a bounded queue and are retried with backoff. */
  readonly degraded: boolean;
  readonly lastError: string | null;
  /** Records (and quota increments) waiting to be written. */
  readonly pending: number;
  /** Records dropped since start because the queue was full (or the store closed, or the database refused one). */
  readonly dropped: number;
  /** Times the history worker thread was started again after it was lost (a crash, out of memory, terminated). */
  readonly workerRestarts: number;
}

export type HistoryStartupEvent =
  | { readonly kind: 'created'; readonly path: string }
  | { readonly kind: 'migrated'; readonly from: number; readonly to: number }
  | { readonly kind: 'corrupt_moved_aside'; readonly reason: string; readonly movedTo: readonly string[] }
  | { readonly kind: 'crash_recovered'; readonly sessions: number };

/** Reported after every successful write transaction (for metrics). */
export interface FlushReport {
  readonly records: number;
  readonly snapshots: number;
  readonly quotaUpdates: number;
  readonly durationMs: number;
}

export type SessionStatus = 'open' | 'closed';

/** A session's row: what was recorded at its start, its counters as last written, and how it ended. */
export interface SessionHistoryRow extends SessionStartRecord, Readonly<TrafficCounters> {
  /** The gateway that carried the session (config fleet.gateway_id, else its host name). */
  readonly gatewayId: string;
  readonly endedAt: number | null;
  readonly durationMs: number | null;
  readonly status: SessionStatus;
  readonly closeReason: EndReason | null;
  readonly closeMessage: string | null;
  /** Wall time the row was last written (counters flush, end). */
  readonly updatedAt: number;
}

/** A stored rejection count (newest `at` first in queries). */
export interface RejectionRow {
  readonly user: string | null;
  readonly source: string;
  readonly reason: RejectReason;
  /** Start of the UTC hour the refusals were counted in. */
  readonly hourMs: number;
  readonly count: number;
  readonly firstAt: number;
  /** Time of the last refusal counted in the row. */
  readonly at: number;
}

export interface UserTraffic {
  readonly user: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface HistoryStats {
  readonly windowHours: number;
  /** Start of the window (wall ms). Traffic and rejections are counted per whole UTC hour from the hour containing this. */
  readonly sinceMs: number;
  readonly sessionsStarted: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Highest bytesIn + bytesOut first. */
  readonly topUsers: readonly UserTraffic[];
  readonly rejectionsByReason: Readonly<Partial<Record<RejectReason, number>>>;
}

export interface UserUsage {
  readonly user: string;
  readonly sessions: number;
  readonly openSessions: number;
  readonly bytesIn: number;
  readonly packetsIn: number;
  readonly bytesOut: number;
  readonly packetsOut: number;
  readonly firstStartedAt: number | null;
  readonly lastStartedAt: number | null;
}
