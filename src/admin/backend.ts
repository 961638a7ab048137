/**
 * What the admin API and the metrics exporter need from a running gateway: plain typed views, computed on
 * request (never per packet). The gateway implements this (src/gateway/operator-backend.ts); tests use a fake.
 */
import type { ConnectionGuardStats } from '../transport/connection-guard.js';
import type { ReloadSummary } from '../gateway/server.js';
import type { EndReason, RejectReason } from '../gateway/session.js';
import type { TransportKind } from '../transport/types.js';
import type { z } from 'zod';
import type {
  fleetListInfoSchema,
  fleetViewSchema,
  healthViewSchema,
  hourlyViewSchema,
  overviewViewSchema,
  pastSessionsViewSchema,
  quotaViewSchema,
  sessionViewSchema,
  statsViewSchema,
  userUpdateResultSchema,
  userViewSchema,
} from './schemas.js';

export type SessionView = z.infer<typeof sessionViewSchema>;
export type FleetListInfo = z.infer<typeof fleetListInfoSchema>;

/** GET /api/sessions: every live session of the fleet (this gateway's alone without one). */
export interface SessionListView {
  readonly sessions: SessionView[];
  /** Only with a fleet. */
  readonly fleet?: FleetListInfo;
}
export type QuotaView = z.infer<typeof quotaViewSchema>;
export type UserView = z.infer<typeof userViewSchema>;
export type StatsView = z.infer<typeof statsViewSchema>;
export type HealthView = z.infer<typeof healthViewSchema>;
/** One shared snapshot for the console's Now view: live sessions, every user, gateway health. */
export type OverviewView = z.infer<typeof overviewViewSchema>;
export type HourlyView = z.infer<typeof hourlyViewSchema>;
export type FleetView = z.infer<typeof fleetViewSchema>;
export type PastSessionsView = z.infer<typeof pastSessionsViewSchema>;
export type UserUpdateResult = Omit<z.infer<typeof userUpdateResultSchema>, 'reload'> & { readonly reload: ReloadResult | null };

export interface PastSessionsQuery {
  readonly windowHours: number;
  /** Case-insensitive substring of user, id, tunnel address, peer, transport or end reason. */
  readonly search: string | null;
  /** Only this gateway's sessions; null: every gateway's. */
  readonly gateway?: string | null;
  readonly limit: number;
}

/** A change to a user in the users file; absent fields stay as they are. */
export interface UserChanges {
  /** Bytes per second; null = unlimited. */
  readonly bandwidth?: number | null;
  readonly disabled?: boolean;
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
  /** History worker thread restarts since start (it was lost: crash, out of memory, terminated). */
  readonly historyWorkerRestarts: number;
  /** Config fleet: the shared session caps (null: this gateway alone). */
  readonly fleetSessions?: FleetSessionMetrics | null;
}

export interface FleetSessionMetrics {
  /** True while session caps are local only (the lease is not held: Redis unreachable). */
  readonly degraded: boolean;
  readonly localOnlyAdmissions: number;
  readonly resyncs: number;
  readonly gatewaysLost: number;
  readonly routedKillsServed: number;
  readonly replacedRemote: number;
  /** Malformed records and control messages from Redis, dropped. */
  readonly malformed: number;
}

export interface AdminBackend {
  listSessions(): SessionView[];
  getSession(id: string): SessionView | null;
  /** False when no such session. */
  killSession(id: string): boolean;
  /** Number of sessions closed; null when the user does not exist in config. */
  killUserSessions(name: string): number | null;
  /**
   * The fleet-wide forms (the admin API's): sessions of every gateway, optionally of one (`gateway`), found and
   * ended wherever they live. Without a fleet they answer for this gateway alone. They throw QuicgateError
   * QG_ERR_FLEET_UNAVAILABLE / _UNREACHABLE / _TIMEOUT when another gateway had to be asked and could not be.
   */
  listAllSessions(gateway: string | null): Promise<SessionListView>;
  findSession(id: string): Promise<SessionView | null>;
  /** Null when no live session has that id; `gateway` names the owner (with a fleet). */
  killAnySession(id: string): Promise<{ readonly gateway?: string } | null>;
  /** Null when the user does not exist in config. */
  killAnyUserSessions(name: string): Promise<number | null>;
  /** Async: the usage comes from the history, read by its worker thread. */
  getUser(name: string): Promise<UserView | null>;
  /** gateway: only that gateway's history rows (the live figures are this gateway's either way). */
  stats(windowHours: number, gateway?: string | null): Promise<StatsView>;
  /** Throws QuicgateError QG_ERR_RELOAD_FAILED (message as at start) when the new config is invalid. */
  reload(): Promise<ReloadResult>;
  health(): HealthView;
  /** Live sessions, every configured user and gateway health in one pass (the console's shared snapshot). */
  overview(): OverviewView;
  /** This gateway's place in the fleet: id, Redis link, rate leases (docs/fleet.md). */
  fleet(): FleetView;
  /** Sessions started and bytes per UTC hour over the window (from the history). */
  hourly(windowHours: number, gateway?: string | null): Promise<HourlyView>;
  /** Past and open sessions from the history, newest first. */
  pastSessions(query: PastSessionsQuery): Promise<PastSessionsView>;
  /**
   * Edits the user in the users file (comments kept, written atomically), then reloads: the file stays the
   * source of truth. Null when no such user; throws QG_ERR_CONFIG_INVALID when the users are not in a file.
   */
  updateUser(name: string, changes: UserChanges): Promise<UserUpdateResult | null>;
  metrics(): MetricsSnapshot;
  /** Called once per ended session (for the duration histogram); returns an unsubscribe function. */
  onSessionEnded(listener: (ended: { readonly durationSeconds: number; readonly reason: EndReason }) => void): () => void;
}
