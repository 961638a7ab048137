/**
 * What the admin API and the metrics exporter need from a running gateway: plain typed views, computed on
 * request (never per packet). The gateway implements this (src/gateway/operator-backend.ts); tests use a fake.
 */
import type { ConnectionGuardStats } from '../transport/connection-guard.js';
import type { ReloadSummary } from '../gateway/server.js';
import type { EndReason, RejectReason } from '../gateway/session.js';
import type { TransportKind } from '../transport/types.js';

export interface SessionView {
  readonly id: string;
  readonly user: string;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  readonly peer: string;
  readonly transport: TransportKind;
  /** ISO 8601 wall-clock times. */
  readonly startedAt: string;
  readonly lastActivityAt: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  /** Bytes per second over the last few seconds, each way. */
  readonly rateIn: number;
  readonly rateOut: number;
}

export interface QuotaView {
  readonly bytes: number;
  readonly period: 'day' | 'month';
  readonly periodKey: string;
  readonly used: number;
  readonly remaining: number;
  readonly action: 'disconnect' | 'throttle';
  readonly exceeded: boolean;
}

export interface UserView {
  readonly name: string;
  readonly disabled: boolean;
  /** Configured limit in bytes per second; null = unlimited. */
  readonly bandwidth: number | null;
  readonly burst: number | null;
  /** Current combined rate of the user's live sessions, bytes per second, each way. */
  readonly rateIn: number;
  readonly rateOut: number;
  readonly maxSessions: number;
  readonly sessions: readonly SessionView[];
  /** Totals from the history (all time), plus live sessions. */
  readonly usage: { readonly sessions: number; readonly bytesIn: number; readonly bytesOut: number };
  readonly quota: QuotaView | null;
}

export interface StatsView {
  readonly windowHours: number;
  readonly activeSessions: number;
  readonly activeUsers: number;
  readonly sessionsInWindow: number;
  readonly bytesInWindow: { readonly in: number; readonly out: number };
  readonly topUsers: readonly { readonly user: string; readonly bytes: number }[];
  readonly rejections: Readonly<Partial<Record<RejectReason, number>>>;
}

export interface HealthView {
  readonly status: 'ok' | 'degraded';
  readonly uptimeSeconds: number;
  readonly checks: {
    readonly tun: 'ok' | 'down';
    readonly listener: 'ok' | 'down';
    readonly history: 'ok' | 'degraded' | 'disabled';
    readonly historyError?: string | null;
  };
}

/** What a reload changed: the gateway's own summary (Gateway.reload). */
export type ReloadResult = ReloadSummary;

/** Plain numbers the metrics exporter reads on scrape. */
export interface MetricsSnapshot {
  readonly activeSessions: number;
  readonly sessionsStarted: number;
  readonly sessionsEnded: Readonly<Partial<Record<EndReason, number>>>;
  readonly rejections: Readonly<Partial<Record<RejectReason, number>>>;
  /** Resume claims that matched no live session (the client got a new session instead). */
  readonly resumeRefused: number;
  /** Session open/close listeners that threw. */
  readonly listenerErrors: number;
  readonly drops: Readonly<Record<string, number>>;
  readonly poolFree: { readonly ipv4: number | null; readonly ipv6: number | null };
  readonly liveBuckets: number;
  readonly sessionsByTransport: Readonly<Partial<Record<TransportKind, number>>>;
  /** Per user: bytes and packets each way, live sessions plus those ended (kept until evicted). */
  readonly users: readonly {
    readonly user: string;
    readonly bytesIn: number;
    readonly bytesOut: number;
    readonly packetsIn: number;
    readonly packetsOut: number;
    readonly quotaUsed: number | null;
  }[];
  readonly historyDegraded: boolean;
  readonly historyPending: number;
  /** The tunnel listener's connection guard (null without one, e.g. in-memory tests). */
  readonly connections: ConnectionGuardStats | null;
  /** History records dropped since start (queue full while the database failed or stalled, refused rows). */
  readonly historyDropped: number;
}

export interface AdminBackend {
  listSessions(): SessionView[];
  getSession(id: string): SessionView | null;
  /** False when no such session. */
  killSession(id: string): boolean;
  /** Number of sessions closed; null when the user does not exist in config. */
  killUserSessions(name: string): number | null;
  /** Async: the usage comes from the history, read by its worker thread. */
  getUser(name: string): Promise<UserView | null>;
  stats(windowHours: number): Promise<StatsView>;
  /** Throws QuicgateError QG_ERR_RELOAD_FAILED (message as at start) when the new config is invalid. */
  reload(): Promise<ReloadResult>;
  health(): HealthView;
  metrics(): MetricsSnapshot;
  /** Called once per ended session (for the duration histogram); returns an unsubscribe function. */
  onSessionEnded(listener: (ended: { readonly durationSeconds: number; readonly reason: EndReason }) => void): () => void;
}
