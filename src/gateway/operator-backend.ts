/**
 * The AdminBackend over a running Gateway: typed views for the admin API and plain numbers for the metrics
 * exporter, computed on request from the session manager, the registry, the pool, the forwarder's drop
 * counters, the history and the quota enforcer. Two small timers of its own (Clock): the rate sampler and the
 * ledger eviction. Nothing here runs per packet.
 */
import type { Logger } from 'pino';
import { X509Certificate } from 'node:crypto';
import type {
  AdminBackend,
  FleetSessionMetrics,
  HealthView,
  HourlyView,
  MetricsSnapshot,
  FleetView,
  OverviewView,
  PastSessionsQuery,
  PastSessionsView,
  ReloadResult,
  SessionListView,
  SessionView,
  StatsView,
  UserChanges,
  UserUpdateResult,
  UserView,
} from '../admin/backend.js';
import { loadUsersFile, saveUsersFile } from '../config/load.js';
import { formatRate } from '../config/units.js';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { UserConfig } from '../config/types.js';
import { QuicgateError, isQuicgateError } from '../errors.js';
import type { HistoryStore } from '../history/index.js';
import type { TransportKind } from '../transport/types.js';
import { defaultBurst } from './bucket.js';
import type { QuotaEnforcer } from './quota.js';
import { RateSampler } from './rate-sampler.js';
import { sessionViewOf } from './session-view.js';
import type { Gateway } from './server.js';
import type { EndReason, Session } from './session.js';
import { UsageLedger } from './usage-ledger.js';

export interface GatewayBackendOptions {
  readonly gateway: Gateway;
  /** Null when history is disabled or could not be opened (then `historyError` says why). */
  readonly history: HistoryStore | null;
  readonly historyError?: string | null;
  readonly quota?: QuotaEnforcer | null;
  /** Re-read and apply the configuration (the caller's loader + gateway.reload). */
  readonly reload: () => Promise<ReloadResult>;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** How long a user's ended sessions stay in the per-user metrics after their last session. Default 10 min. */
  readonly ledgerRetainMs?: number;
  readonly sampleIntervalMs?: number;
  /** Whether the TUN device is up; the Gateway does not expose it, so by default: the gateway is serving. */
  readonly tunUp?: () => boolean;
  /** The server certificate the tunnel listener presents now (PEM), for its expiry; null when unknown. */
  readonly certificatePem?: () => string | null;
}

type EndedListener = (ended: { readonly durationSeconds: number; readonly reason: EndReason }) => void;

const TOP_USERS = 10;

export class GatewayBackend implements AdminBackend {
  readonly sampler: RateSampler;
  readonly ledger: UsageLedger;
  private readonly gateway: Gateway;
  private readonly history: HistoryStore | null;
  private readonly historyError: string | null;
  private readonly quota: QuotaEnforcer | null;
  private readonly reloadFn: () => Promise<ReloadResult>;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly tunUp: () => boolean;
  private readonly certificatePem: () => string | null;
  private certificateCache: { pem: string; notAfter: string | null } | null = null;
  /** User edits run one at a time: each reads the file the previous one wrote. */
  private userEdits: Promise<unknown> = Promise.resolve();
  private readonly startedMono: number;
  private readonly endedListeners = new Set<EndedListener>();
  private readonly offClosed: () => void;
  private readonly evictTimer: TimerHandle;

  constructor(options: GatewayBackendOptions) {
    this.gateway = options.gateway;
    this.history = options.history;
    this.historyError = options.historyError ?? null;
    this.quota = options.quota ?? null;
    this.reloadFn = options.reload;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.tunUp = options.tunUp ?? (() => this.gateway.listenerKinds.length > 0);
    this.certificatePem = options.certificatePem ?? (() => null);
    this.startedMono = this.clock.now();
    const sessions = this.gateway.sessions;
    this.sampler = new RateSampler({ clock: this.clock, sessions: () => sessions.list(), intervalMs: options.sampleIntervalMs });
    this.ledger = new UsageLedger({ clock: this.clock, retainMs: options.ledgerRetainMs });
    this.sampler.start();
    // Other gateways list this one's sessions from its records: give them the sampled rates too.
    this.gateway.fleetSessions?.registry.setDescriber((s) => this.sessionView(s));
    this.offClosed = sessions.onClosed((session, reason) => {
      this.ledger.addEnded(session.user, session.counters);
      const durationSeconds = Math.max(0, (this.clock.now() - session.startedMono) / 1000);
      for (const listener of this.endedListeners) {
        try {
          listener({ durationSeconds, reason });
        } catch (err) {
          this.logger.error({ err }, 'a session-ended listener threw; ignored');
        }
      }
    });
    // Eviction also runs without scrapes, so a gateway nobody scrapes does not grow the ledger without bound.
    this.evictTimer = this.clock.setInterval(() => this.evict(), Math.min(60_000, Math.max(1000, this.ledger.retainMs / 10)));
  }

  /** Cancel the timers and listeners (the operator surface calls this on stop). Idempotent. */
  close(): void {
    this.sampler.stop();
    this.evictTimer.cancel();
    this.offClosed();
    this.endedListeners.clear();
  }

  // ── sessions ───────────────────────────────────────────────────────────────────────────────────────

  listSessions(): SessionView[] {
    return this.gateway.sessions.list().map((s) => this.sessionView(s));
  }

  getSession(id: string): SessionView | null {
    const session = this.gateway.sessions.get(id);
    return session === undefined ? null : this.sessionView(session);
  }

  killSession(id: string): boolean {
    const session = this.gateway.sessions.get(id);
    if (session === undefined) return false;
    this.logger.info({ session: id, user: session.user }, 'admin: session killed');
    return this.gateway.sessions.end(session, 'admin_kill', 'closed by the administrator');
  }

  killUserSessions(name: string): number | null {
    if (this.userConfig(name) === undefined) return null;
    const closed = this.gateway.sessions.killUser(name, 'admin_kill', 'closed by the administrator');
    this.logger.info({ user: name, closed }, "admin: user's sessions killed");
    return closed;
  }

  // ── sessions of the fleet (this gateway alone without one) ─────────────────────────────────────────

  async listAllSessions(gateway: string | null): Promise<SessionListView> {
    const fleet = this.gateway.fleetSessions;
    if (fleet === null) return { sessions: gateway === null || gateway === this.gateway.currentConfig.gatewayId ? this.listSessions() : [] };
    return fleet.list(this.listSessions(), gateway);
  }

  async findSession(id: string): Promise<SessionView | null> {
    const local = this.getSession(id);
    const fleet = this.gateway.fleetSessions;
    if (local === null && fleet !== null) return fleet.remoteSession(id);
    return local === null || fleet === null ? local : { ...local, gateway: fleet.gatewayId };
  }

  async killAnySession(id: string): Promise<{ readonly gateway?: string } | null> {
    const fleet = this.gateway.fleetSessions;
    if (this.killSession(id)) return fleet === null ? {} : { gateway: fleet.gatewayId };
    if (fleet === null) return null;
    const ended = await fleet.killRemote(id, 'admin_kill', 'closed by the administrator');
    if (ended !== null) this.logger.info({ session: id, gateway: ended.gateway }, 'admin: session on another gateway killed');
    return ended;
  }

  async killAnyUserSessions(name: string): Promise<number | null> {
    const here = this.killUserSessions(name);
    const fleet = this.gateway.fleetSessions;
    if (here === null || fleet === null) return here;
    try {
      const there = await fleet.killUserRemote(name, 'admin_kill', 'closed by the administrator');
      if (there > 0) this.logger.info({ user: name, closed: there }, "admin: user's sessions on other gateways killed");
      return here + there;
    } catch (err) {
      // Those here are closed already: say so with the error, which names the gateway that did not answer.
      if (isQuicgateError(err)) throw new QuicgateError(err.code, `${err.message} (${here} closed on this gateway)`, { cause: err, details: { ...err.details, closedHere: here } });
      throw err;
    }
  }

  // ── users and stats ────────────────────────────────────────────────────────────────────────────────

  async getUser(name: string): Promise<UserView | null> {
    const user = this.userConfig(name);
    if (user === undefined) return null;
    const live = this.gateway.sessions.sessionsOf(name);
    // With a fleet, the user's sessions on every gateway (others' rates as of their last lease renewal).
    const { views, scope: sessionsScope } = await this.liveSessions(null, name);
    const usage = await this.usageOf(name, live);
    return {
      name,
      disabled: user.disabled,
      bandwidth: user.bandwidth,
      burst: user.bandwidth === null ? null : (user.burst ?? defaultBurst(user.bandwidth)),
      rateIn: views.reduce((a, v) => a + v.rateIn, 0),
      rateOut: views.reduce((a, v) => a + v.rateOut, 0),
      maxSessions: user.maxSessions ?? this.gateway.currentConfig.limits.maxSessionsPerUser,
      sessions: views,
      usage: usage.usage,
      quota: this.quota?.view(user) ?? null,
      scope: { gateway: this.gateway.currentConfig.gatewayId, sessions: sessionsScope, usage: usage.scope },
    };
  }

  async stats(windowHours: number, gateway: string | null = null): Promise<StatsView> {
    const history = await this.readableHistory();
    // Live figures taken after the history answered, so both describe the same moment.
    const { views, scope: live } = await this.liveSessions(gateway, null);
    const self = this.gateway.currentConfig.gatewayId;
    const base = { windowHours, activeSessions: views.length, activeUsers: new Set(views.map((v) => v.user)).size };
    if (history !== null) {
      try {
        const h = await history.stats({ windowHours, topUsers: TOP_USERS, gatewayId: gateway });
        return {
          ...base,
          sessionsInWindow: h.sessionsStarted,
          bytesInWindow: { in: h.bytesIn, out: h.bytesOut },
          topUsers: h.topUsers.map((u) => ({ user: u.user, bytes: u.bytesIn + u.bytesOut })),
          rejections: h.rejectionsByReason,
          scope: { gateway: self, history: this.historyScope(), live },
        };
      } catch (err) {
        this.logger.warn({ err: errorText(err) }, 'history stats unavailable; answering from memory');
      }
    }
    const scope = { gateway: self, history: 'memory' as const, live };
    // From memory: what this process has seen (since start; ended sessions until evicted), whatever the window;
    // nothing of another gateway.
    if (gateway !== null && gateway !== self) return { ...base, sessionsInWindow: 0, bytesInWindow: { in: 0, out: 0 }, topUsers: [], rejections: {}, scope };
    const sessionStats = this.gateway.sessions.stats();
    const traffic = this.userTraffic();
    let bytesIn = 0;
    let bytesOut = 0;
    for (const t of traffic.values()) {
      bytesIn += t.bytesIn;
      bytesOut += t.bytesOut;
    }
    const topUsers = [...traffic]
      .map(([user, t]) => ({ user, bytes: t.bytesIn + t.bytesOut }))
      .sort((a, b) => b.bytes - a.bytes || a.user.localeCompare(b.user))
      .slice(0, TOP_USERS);
    return {
      ...base,
      sessionsInWindow: sessionStats.opened,
      bytesInWindow: { in: bytesIn, out: bytesOut },
      topUsers,
      rejections: nonZero(sessionStats.rejections),
      scope,
    };
  }

  /** The contract's errors: an invalid new config becomes QG_ERR_RELOAD_FAILED with the loader's message. */
  async reload(): Promise<ReloadResult> {
    let result: ReloadResult;
    try {
      result = await this.reloadFn();
    } catch (err) {
      if (isQuicgateError(err, 'QG_ERR_CONFIG_INVALID') || isQuicgateError(err, 'QG_ERR_UNIT_INVALID')) {
        throw new QuicgateError('QG_ERR_RELOAD_FAILED', err.message, { cause: err });
      }
      throw err;
    }
    return {
      bandwidthChanged: result.bandwidthChanged,
      usersRemoved: result.usersRemoved,
      sessionsClosed: result.sessionsClosed,
      needRestart: result.needRestart,
      changed: result.changed,
    };
  }

  // ── console views ──────────────────────────────────────────────────────────────────────────────────

  fleet(): FleetView {
    const fleet = this.gateway.fleet;
    const gatewayId = this.gateway.currentConfig.gatewayId;
    if (fleet === null) return { enabled: false, gatewayId, link: null, linkSince: null, rate: null, addresses: null };
    const { link, linkSince, rate } = fleet.status;
    const { claims, conflicts, fallbacks, reserveEmpty, renewConflicts, reserveSize } = fleet.addresses.stats();
    const held = fleet.addresses
      .heldAddresses()
      .flatMap((h) => [h.ipv4, h.ipv6].filter((a): a is string => a !== null).map((address) => ({ address, user: h.user, session: h.id })));
    return {
      enabled: true,
      gatewayId,
      link,
      linkSince: new Date(linkSince).toISOString(),
      rate: { ...rate },
      addresses: { held, reserve: reserveSize, claims, conflicts, fallbacks, reserveEmpty, renewConflicts },
    };
  }

  overview(): OverviewView {
    const config = this.gateway.currentConfig;
    const sessions = this.listSessions();
    const perUser = new Map<string, { n: number; rateIn: number; rateOut: number }>();
    for (const s of sessions) {
      const u = perUser.get(s.user) ?? { n: 0, rateIn: 0, rateOut: 0 };
      u.n++;
      u.rateIn += s.rateIn;
      u.rateOut += s.rateOut;
      perUser.set(s.user, u);
    }
    const users = config.users.map((user) => {
      const live = perUser.get(user.name);
      return {
        name: user.name,
        disabled: user.disabled,
        bandwidth: user.bandwidth,
        rateIn: live?.rateIn ?? 0,
        rateOut: live?.rateOut ?? 0,
        sessions: live?.n ?? 0,
        maxSessions: user.maxSessions ?? config.limits.maxSessionsPerUser,
        quota: this.quota?.view(user) ?? null,
      };
    });
    const health = this.health();
    return {
      at: new Date(this.clock.wallNow()).toISOString(),
      sessions,
      users,
      gateway: {
        id: config.gatewayId,
        fleet: this.gateway.fleetSessions !== null,
        historyBackend: config.history.backend,
        status: health.status,
        uptimeSeconds: health.uptimeSeconds,
        history: health.checks.history,
        historyError: health.checks.historyError ?? null,
        certificateNotAfter: this.certificateNotAfter(),
        sessions: sessions.length,
        maxSessions: config.limits.maxTotalSessions,
        drops: { ...this.gateway.drops },
      },
    };
  }

  async hourly(windowHours: number, gateway: string | null = null): Promise<HourlyView> {
    const history = await this.readableHistory();
    if (history === null) return { windowHours, available: false, hours: [] };
    const hours = (await history.hourly(windowHours, gateway)).map((h) => ({
      hour: new Date(h.hourMs).toISOString(),
      sessions: h.sessions,
      bytesIn: h.bytesIn,
      bytesOut: h.bytesOut,
    }));
    return { windowHours, available: true, hours };
  }

  async pastSessions(query: PastSessionsQuery): Promise<PastSessionsView> {
    const history = await this.readableHistory();
    if (history === null) return { available: false, sessions: [] };
    const sinceMs = this.clock.wallNow() - query.windowHours * 3_600_000;
    const rows = await history.searchSessions({ sinceMs: Math.floor(sinceMs), search: query.search, limit: query.limit, gatewayId: query.gateway ?? null });
    return {
      available: true,
      sessions: rows.map((r) => ({
        id: r.id,
        user: r.user,
        ipv4: r.ipv4,
        ipv6: r.ipv6,
        peer: r.peer,
        transport: r.transport,
        startedAt: new Date(r.startedAt).toISOString(),
        endedAt: r.endedAt === null ? null : new Date(r.endedAt).toISOString(),
        durationSeconds: r.durationMs === null ? null : r.durationMs / 1000,
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
        status: r.status,
        endReason: r.closeReason,
        endMessage: r.closeMessage,
        gateway: r.gatewayId,
      })),
    };
  }

  updateUser(name: string, changes: UserChanges): Promise<UserUpdateResult | null> {
    const run = this.userEdits.then(() => this.editUser(name, changes));
    this.userEdits = run.catch(() => undefined);
    return run;
  }

  /** Same path as `quicgate users set` + reload: the users file is edited in place, then re-read by reload. */
  private async editUser(name: string, changes: UserChanges): Promise<UserUpdateResult | null> {
    const config = this.gateway.currentConfig;
    if (this.userConfig(name) === undefined) return null;
    const file = config.usersFile;
    if (file === null) {
      throw new QuicgateError(
        'QG_ERR_CONFIG_INVALID',
        `${config.source} keeps its users inline; the console edits a users file: move the users to a file named by users_file`,
        { details: { file: config.source } },
      );
    }
    const options = { defaultBandwidth: config.defaultBandwidth };
    const users = await loadUsersFile(file, options);
    const index = users.findIndex((u) => u.name === name);
    const before = users[index];
    if (before === undefined) {
      throw new QuicgateError('QG_ERR_USER_NOT_FOUND', `user ${name} is running but no longer in ${file}; reload to apply the file`, { details: { name, file } });
    }
    const after = { ...before, ...changes };
    const described: string[] = [];
    if (before.bandwidth !== after.bandwidth) described.push(`bandwidth ${rateText(before.bandwidth)} -> ${rateText(after.bandwidth)}`);
    if (before.disabled !== after.disabled) described.push(after.disabled ? 'disabled' : 'enabled');
    if (described.length === 0) return { user: name, file, changes: [], reload: null };
    await saveUsersFile(file, users.map((u, i) => (i === index ? after : u)), options);
    this.logger.info({ user: name, file, changes: described }, 'admin: users file edited; reloading');
    return { user: name, file, changes: described, reload: await this.reload() };
  }

  private certificateNotAfter(): string | null {
    const pem = this.certificatePem();
    if (pem === null) return null;
    if (this.certificateCache?.pem !== pem) {
      let notAfter: string | null = null;
      try {
        notAfter = new Date(new X509Certificate(pem).validTo).toISOString();
      } catch (err) {
        this.logger.warn({ err: errorText(err) }, 'server certificate could not be parsed for its expiry');
      }
      this.certificateCache = { pem, notAfter };
    }
    return this.certificateCache.notAfter;
  }

  // ── health and metrics ─────────────────────────────────────────────────────────────────────────────

  health(): HealthView {
    const tun = this.tunUp() ? 'ok' : 'down';
    const listener = this.gateway.listenerKinds.length > 0 ? 'ok' : 'down';
    const { state: history, error: historyError } = this.historyState();
    return {
      status: tun === 'ok' && listener === 'ok' && history !== 'degraded' ? 'ok' : 'degraded',
      uptimeSeconds: Math.floor((this.clock.now() - this.startedMono) / 1000),
      checks: { tun, listener, history, historyError },
    };
  }

  metrics(): MetricsSnapshot {
    const stats = this.gateway.sessions.stats();
    const byTransport: Partial<Record<TransportKind, number>> = {};
    for (const s of this.gateway.sessions.list()) byTransport[s.transport] = (byTransport[s.transport] ?? 0) + 1;
    this.evict();
    const users = [...this.userTraffic()].map(([user, t]) => ({
      user,
      bytesIn: t.bytesIn,
      bytesOut: t.bytesOut,
      packetsIn: t.packetsIn,
      packetsOut: t.packetsOut,
      quotaUsed: this.quota?.used(user) ?? null,
    }));
    const health = this.history?.health();
    const historyEnabled = this.gateway.currentConfig.history.enabled;
    return {
      activeSessions: stats.sessions,
      sessionsStarted: stats.opened,
      sessionsEnded: stats.ended,
      rejections: stats.rejections,
      resumeRefused: stats.resumeRefused,
      listenerErrors: stats.listenerErrors,
      drops: { ...this.gateway.drops },
      poolFree: { ipv4: stats.pool.ipv4?.free ?? null, ipv6: stats.pool.ipv6?.free ?? null },
      liveBuckets: this.gateway.registry.bucketCount,
      sessionsByTransport: byTransport,
      users,
      historyDegraded: health === undefined ? historyEnabled : health.degraded,
      historyPending: health?.pending ?? 0,
      connections: this.gateway.connectionStats,
      historyDropped: health?.dropped ?? 0,
      historyWorkerRestarts: health?.workerRestarts ?? 0,
      fleetSessions: this.fleetMetrics(),
    };
  }

  private fleetMetrics(): FleetSessionMetrics | null {
    const fleet = this.gateway.fleetSessions;
    if (fleet === null) return null;
    const s = fleet.stats();
    return {
      degraded: s.degraded,
      localOnlyAdmissions: s.localOnlyAdmissions,
      resyncs: s.resyncs,
      gatewaysLost: s.gatewaysLost,
      routedKillsServed: s.routedKillsServed,
      replacedRemote: s.replacedRemote,
      malformed: s.malformedRecords + s.malformedMessages,
    };
  }

  onSessionEnded(listener: EndedListener): () => void {
    this.endedListeners.add(listener);
    return () => void this.endedListeners.delete(listener);
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────────────────

  private sessionView(s: Session): SessionView {
    return sessionViewOf(s, this.sampler.rateOf(s.id));
  }

  /** All-time usage: the history (flushed first, so live sessions are in it exactly once), else memory. */
  private async usageOf(name: string, live: readonly Session[]): Promise<{ usage: UserView['usage']; scope: UserView['scope']['usage'] }> {
    const history = await this.readableHistory();
    if (history !== null) {
      try {
        const u = await history.userUsage(name);
        return { usage: { sessions: u.sessions, bytesIn: u.bytesIn, bytesOut: u.bytesOut }, scope: this.historyScope() };
      } catch (err) {
        this.logger.warn({ err: errorText(err), user: name }, 'history usage unavailable; answering from memory');
      }
    }
    const ended = this.ledger.get(name);
    let bytesIn = ended?.bytesIn ?? 0;
    let bytesOut = ended?.bytesOut ?? 0;
    for (const s of live) {
      bytesIn += s.counters.bytesIn;
      bytesOut += s.counters.bytesOut;
    }
    return { usage: { sessions: (ended?.sessions ?? 0) + live.length, bytesIn, bytesOut }, scope: 'memory' };
  }

  /** Whose rows the readable history holds: PostgreSQL is the fleet's (every gateway writes it), SQLite this gateway's. */
  private historyScope(): 'fleet' | 'gateway' {
    return this.gateway.currentConfig.history.backend === 'postgres' ? 'fleet' : 'gateway';
  }

  /**
   * Live sessions (of one gateway, of one user, or all), with a fleet the fleet's (listAllSessions: Redis read
   * at request time), `scope` 'gateway' when only this gateway's could be listed.
   */
  private async liveSessions(gateway: string | null, user: string | null): Promise<{ views: SessionView[]; scope: 'fleet' | 'gateway' }> {
    const list = await this.listAllSessions(gateway);
    const views = user === null ? list.sessions : list.sessions.filter((s) => s.user === user);
    return { views, scope: list.fleet?.complete === true ? 'fleet' : 'gateway' };
  }

  /**
   * The history, flushed so that queued starts/ends and the live counters are in the file, when it is
   * healthy; null otherwise (a degraded or stalled store's file lags behind and would mix with live counters
   * twice). The flush and the query go through the history's worker thread; a stalled one makes this null.
   */
  private async readableHistory(): Promise<HistoryStore | null> {
    const history = this.history;
    // While degraded, a flush per request would be one more failing write; the store retries on its own.
    if (history === null || !history.health().ok) return null;
    await history.flush();
    return history.health().ok ? history : null;
  }

  /** Per user: ended sessions in the ledger plus live sessions. */
  private userTraffic(): Map<string, { bytesIn: number; bytesOut: number; packetsIn: number; packetsOut: number }> {
    const out = new Map<string, { bytesIn: number; bytesOut: number; packetsIn: number; packetsOut: number }>();
    for (const user of this.ledger.users()) {
      const t = this.ledger.get(user);
      if (t !== undefined) out.set(user, { bytesIn: t.bytesIn, bytesOut: t.bytesOut, packetsIn: t.packetsIn, packetsOut: t.packetsOut });
    }
    for (const s of this.gateway.sessions.list()) {
      let t = out.get(s.user);
      if (t === undefined) {
        t = { bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0 };
        out.set(s.user, t);
      }
      t.bytesIn += s.counters.bytesIn;
      t.bytesOut += s.counters.bytesOut;
      t.packetsIn += s.counters.packetsIn;
      t.packetsOut += s.counters.packetsOut;
    }
    return out;
  }

  private evict(): void {
    const sessions = this.gateway.sessions;
    const evicted = this.ledger.evict((user) => sessions.sessionsOf(user).length > 0);
    if (evicted.length > 0) this.logger.debug({ users: evicted }, 'per-user metrics forgotten');
  }

  private historyState(): { state: HealthView['checks']['history']; error: string | null } {
    if (!this.gateway.currentConfig.history.enabled && this.history === null) return { state: 'disabled', error: null };
    if (this.history === null) return { state: 'degraded', error: this.historyError ?? 'history could not be opened' };
    const h = this.history.health();
    return { state: h.ok ? 'ok' : 'degraded', error: h.lastError };
  }

  private userConfig(name: string): UserConfig | undefined {
    return this.gateway.currentConfig.users.find((u) => u.name === name);
  }
}

function nonZero<K extends string>(counts: Readonly<Record<K, number>>): Partial<Record<K, number>> {
  const out: Partial<Record<K, number>> = {};
  for (const key of Object.keys(counts) as K[]) if (counts[key] > 0) out[key] = counts[key];
  return out;
}

function rateText(rate: number | null): string {
  return rate === null ? 'unlimited' : formatRate(rate);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
