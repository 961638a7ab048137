/**
 * An AdminBackend over plain in-memory data, for admin API and metrics tests. It behaves like the gateway
 * where the tests can see it: kills remove sessions and are recorded, stats are computed from the data,
 * the metrics snapshot reflects the sessions and the users kept for metrics.
 */
import type { ConnectionGuardStats } from '../../src/transport/connection-guard.js';
import type {
  AdminBackend,
  HealthView,
  HourlyView,
  MetricsSnapshot,
  FleetView,
  OverviewView,
  PastSessionsQuery,
  PastSessionsView,
  QuotaView,
  ReloadResult,
  SessionListView,
  SessionView,
  StatsView,
  UserChanges,
  UserUpdateResult,
  UserView,
} from '../../src/admin/backend.js';
import { QuicgateError } from '../../src/errors.js';
import type { EndReason, RejectReason } from '../../src/gateway/session.js';
import type { TransportKind } from '../../src/transport/types.js';

export interface FakeUser {
  name: string;
  bandwidth: number | null;
  disabled: boolean;
  quota: QuotaView | null;
  /** Totals from (pretend) history, excluding live sessions. */
  historyBytesIn: number;
  historyBytesOut: number;
  historySessions: number;
}

/** Per-user counters as the gateway keeps them for metrics (live + ended sessions until evicted). */
export interface FakeUserTraffic {
  bytesIn: number;
  bytesOut: number;
  packetsIn: number;
  packetsOut: number;
  quotaUsed: number | null;
}

type Ended = { readonly durationSeconds: number; readonly reason: EndReason };

export class FakeAdminBackend implements AdminBackend {
  readonly sessions = new Map<string, SessionView>();
  readonly users = new Map<string, FakeUser>();
  readonly traffic = new Map<string, FakeUserTraffic>();
  readonly ended: { id: string; reason: EndReason }[] = [];
  readonly endedCounts: Partial<Record<EndReason, number>> = {};
  readonly rejections: Partial<Record<RejectReason, number>> = {};
  drops: Record<string, number> = {};
  sessionsStarted = 0;
  healthView: HealthView = {
    status: 'ok',
    uptimeSeconds: 42,
    checks: { tun: 'ok', listener: 'ok', history: 'ok', historyError: null },
  };
  historyDegraded = false;
  historyPending = 0;
  connections: ConnectionGuardStats | null = null;
  historyDropped = 0;
  historyWorkerRestarts = 0;
  poolFree: { ipv4: number | null; ipv6: number | null } = { ipv4: 65_000, ipv6: null };
  /** What reload() does next: resolve with a result or throw this error. */
  reloadOutcome: ReloadResult | Error = { bandwidthChanged: [], usersRemoved: [], sessionsClosed: 0, needRestart: [], changed: [] };
  reloadCalls = 0;
  overviewCalls = 0;
  /** Past sessions the (pretend) history holds, newest first. */
  past: PastSessionsView['sessions'][number][] = [];
  hourlyRows: HourlyView['hours'] = [];
  historyAvailable = true;
  /** What updateUser was asked to do, in order. */
  readonly userUpdates: { name: string; changes: UserChanges }[] = [];
  certificateNotAfter: string | null = '2026-02-01T00:00:00.000Z';
  statsWindows: number[] = [];
  /** The ?gateway= of each stats call (null: none). */
  statsGateways: (string | null)[] = [];
  private readonly endListeners = new Set<(ended: Ended) => void>();

  addUser(name: string, extra: Partial<FakeUser> = {}): FakeUser {
    const user: FakeUser = {
      name,
      bandwidth: null,
      disabled: false,
      quota: null,
      historyBytesIn: 0,
      historyBytesOut: 0,
      historySessions: 0,
      ...extra,
    };
    this.users.set(name, user);
    return user;
  }

  addSession(id: string, user: string, extra: Partial<SessionView> = {}): SessionView {
    const session: SessionView = {
      id,
      user,
      ipv4: `198.18.0.${this.sessions.size + 2}`,
      ipv6: null,
      peer: `127.0.0.1:${40_000 + this.sessions.size}`,
      transport: 'h2' satisfies TransportKind,
      startedAt: '2026-01-01T00:00:00.000Z',
      lastActivityAt: '2026-01-01T00:05:00.000Z',
      bytesIn: 1000,
      bytesOut: 5000,
      packetsIn: 10,
      packetsOut: 20,
      rateIn: 100,
      rateOut: 500,
      ...extra,
    };
    this.sessions.set(id, session);
    this.sessionsStarted++;
    const t = this.trafficOf(user);
    t.bytesIn += session.bytesIn;
    t.bytesOut += session.bytesOut;
    t.packetsIn += session.packetsIn;
    t.packetsOut += session.packetsOut;
    return session;
  }

  trafficOf(user: string): FakeUserTraffic {
    let t = this.traffic.get(user);
    if (t === undefined) {
      t = { bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0, quotaUsed: null };
      this.traffic.set(user, t);
    }
    return t;
  }

  /** Ends a session the way the gateway would: counted, listeners told, traffic kept until evicted. */
  endSession(id: string, reason: EndReason, durationSeconds = 60): boolean {
    if (!this.sessions.delete(id)) return false;
    this.ended.push({ id, reason });
    this.endedCounts[reason] = (this.endedCounts[reason] ?? 0) + 1;
    for (const listener of this.endListeners) listener({ durationSeconds, reason });
    return true;
  }

  /** What the gateway does some time after a user's last session: forget their metrics. */
  evictUser(name: string): void {
    this.traffic.delete(name);
  }

  listSessions(): SessionView[] {
    return [...this.sessions.values()];
  }

  getSession(id: string): SessionView | null {
    return this.sessions.get(id) ?? null;
  }

  killSession(id: string): boolean {
    return this.endSession(id, 'admin_kill');
  }

  killUserSessions(name: string): number | null {
    if (!this.users.has(name)) return null;
    let closed = 0;
    for (const s of this.listSessions()) {
      if (s.user === name && this.endSession(s.id, 'admin_kill')) closed++;
    }
    return closed;
  }

  // Without a fleet the fleet-wide forms answer for this gateway alone, as GatewayBackend's do.
  async listAllSessions(gateway: string | null): Promise<SessionListView> {
    return { sessions: gateway === null ? this.listSessions() : [] };
  }

  async findSession(id: string): Promise<SessionView | null> {
    return this.getSession(id);
  }

  async killAnySession(id: string): Promise<{ readonly gateway?: string } | null> {
    return this.killSession(id) ? {} : null;
  }

  async killAnyUserSessions(name: string): Promise<number | null> {
    return this.killUserSessions(name);
  }

  async getUser(name: string): Promise<UserView | null> {
    const user = this.users.get(name);
    if (user === undefined) return null;
    const sessions = this.listSessions().filter((s) => s.user === name);
    const sum = (f: (s: SessionView) => number): number => sessions.reduce((a, s) => a + f(s), 0);
    return {
      name,
      disabled: user.disabled,
      bandwidth: user.bandwidth,
      burst: user.bandwidth,
      rateIn: sum((s) => s.rateIn),
      rateOut: sum((s) => s.rateOut),
      maxSessions: 3,
      sessions,
      usage: {
        sessions: user.historySessions + sessions.length,
        bytesIn: user.historyBytesIn + sum((s) => s.bytesIn),
        bytesOut: user.historyBytesOut + sum((s) => s.bytesOut),
      },
      quota: user.quota,
      scope: { gateway: 'fake-gateway', sessions: 'gateway', usage: this.historyAvailable ? 'gateway' : 'memory' },
    };
  }

  async stats(windowHours: number, gateway: string | null = null): Promise<StatsView> {
    this.statsWindows.push(windowHours);
    this.statsGateways.push(gateway);
    const byUser = new Map<string, number>();
    let bytesIn = 0;
    let bytesOut = 0;
    for (const s of this.sessions.values()) {
      bytesIn += s.bytesIn;
      bytesOut += s.bytesOut;
      byUser.set(s.user, (byUser.get(s.user) ?? 0) + s.bytesIn + s.bytesOut);
    }
    return {
      windowHours,
      activeSessions: this.sessions.size,
      activeUsers: new Set(this.listSessions().map((s) => s.user)).size,
      sessionsInWindow: this.sessions.size + this.ended.length,
      bytesInWindow: { in: bytesIn, out: bytesOut },
      topUsers: [...byUser].map(([user, bytes]) => ({ user, bytes })).sort((a, b) => b.bytes - a.bytes),
      rejections: { ...this.rejections },
      scope: { gateway: 'fake-gateway', history: this.historyAvailable ? 'gateway' : 'memory', live: 'gateway' },
    };
  }

  async reload(): Promise<ReloadResult> {
    this.reloadCalls++;
    await Promise.resolve();
    if (this.reloadOutcome instanceof Error) throw this.reloadOutcome;
    return this.reloadOutcome;
  }

  failNextReloads(message: string): void {
    this.reloadOutcome = new QuicgateError('QG_ERR_RELOAD_FAILED', message);
  }

  health(): HealthView {
    return this.healthView;
  }

  fleet(): FleetView {
    return { enabled: false, gatewayId: 'fake-gateway', link: null, linkSince: null, rate: null, addresses: null };
  }

  overview(): OverviewView {
    this.overviewCalls++;
    const sessions = this.listSessions();
    return {
      at: '2026-01-01T00:10:00.000Z',
      sessions,
      users: [...this.users.values()].map((u) => {
        const own = sessions.filter((s) => s.user === u.name);
        return {
          name: u.name,
          disabled: u.disabled,
          bandwidth: u.bandwidth,
          rateIn: own.reduce((a, s) => a + s.rateIn, 0),
          rateOut: own.reduce((a, s) => a + s.rateOut, 0),
          sessions: own.length,
          maxSessions: 3,
          quota: u.quota,
        };
      }),
      gateway: {
        id: 'fake-gateway',
        fleet: false,
        historyBackend: 'sqlite',
        status: this.healthView.status,
        uptimeSeconds: this.healthView.uptimeSeconds,
        history: this.healthView.checks.history,
        historyError: this.healthView.checks.historyError ?? null,
        certificateNotAfter: this.certificateNotAfter,
        sessions: sessions.length,
        maxSessions: 1000,
        drops: { ...this.drops },
      },
    };
  }

  async hourly(windowHours: number): Promise<HourlyView> {
    return { windowHours, available: this.historyAvailable, hours: this.historyAvailable ? this.hourlyRows : [] };
  }

  async pastSessions(query: PastSessionsQuery): Promise<PastSessionsView> {
    if (!this.historyAvailable) return { available: false, sessions: [] };
    const needle = query.search?.toLowerCase() ?? '';
    const hits = this.past.filter((s) => needle === '' || [s.user, s.id, s.endReason ?? ''].some((f) => f.toLowerCase().includes(needle)));
    return { available: true, sessions: hits.slice(0, query.limit) };
  }

  async updateUser(name: string, changes: UserChanges): Promise<UserUpdateResult | null> {
    const user = this.users.get(name);
    if (user === undefined) return null;
    this.userUpdates.push({ name, changes });
    const described: string[] = [];
    if (changes.bandwidth !== undefined && changes.bandwidth !== user.bandwidth) {
      described.push(`bandwidth ${user.bandwidth ?? 'unlimited'} -> ${changes.bandwidth ?? 'unlimited'}`);
      user.bandwidth = changes.bandwidth;
    }
    if (changes.disabled !== undefined && changes.disabled !== user.disabled) {
      described.push(changes.disabled ? 'disabled' : 'enabled');
      user.disabled = changes.disabled;
    }
    if (described.length === 0) return { user: name, file: '/etc/quicgate/users.yaml', changes: [], reload: null };
    return { user: name, file: '/etc/quicgate/users.yaml', changes: described, reload: await this.reload() };
  }

  metrics(): MetricsSnapshot {
    const byTransport: Partial<Record<TransportKind, number>> = {};
    for (const s of this.sessions.values()) byTransport[s.transport] = (byTransport[s.transport] ?? 0) + 1;
    return {
      activeSessions: this.sessions.size,
      sessionsStarted: this.sessionsStarted,
      sessionsEnded: { ...this.endedCounts },
      resumeRefused: 0,
      listenerErrors: 0,
      rejections: { ...this.rejections },
      drops: { ...this.drops },
      poolFree: { ...this.poolFree },
      liveBuckets: new Set(this.listSessions().filter((s) => this.users.get(s.user)?.bandwidth != null).map((s) => s.user)).size,
      sessionsByTransport: byTransport,
      users: [...this.traffic].map(([user, t]) => ({ user, ...t })),
      historyDegraded: this.historyDegraded,
      historyPending: this.historyPending,
      connections: this.connections,
      historyDropped: this.historyDropped,
      historyWorkerRestarts: this.historyWorkerRestarts,
    };
  }

  onSessionEnded(listener: (ended: Ended) => void): () => void {
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  get endListenerCount(): number {
    return this.endListeners.size;
  }
}
