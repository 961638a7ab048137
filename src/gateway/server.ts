/**
 * The gateway: ties config, address pool, user registry, session manager, TUN, tunnel listener and the
 * forwarding path together, and owns their order of start and stop. Parts are injected so that unit tests run
 * the same wiring over an in-memory TUN and transport.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.js';
import { RELOAD_EFFECTS, type ReloadEffect } from '../config/schema.js';
import type { ServerConfig } from '../config/types.js';
import { QuicgateError, isQuicgateError } from '../errors.js';
import { Fleet } from '../fleet/fleet.js';
import { SessionFleet } from '../fleet/session-fleet.js';
import type { ControlMessage } from '../transport/control.js';
import type { ConnectionGuardStats } from '../transport/connection-guard.js';
import type { AcceptedConnection, Admission, TunnelListener } from '../transport/types.js';
import type { TunDevice, TunSettings } from '../tun/device.js';
import type { AdmissionThrottle } from './admission.js';
import { cursorStartFor, type FleetAddressBook } from '../fleet/addresses.js';
import { Forwarder } from './forwarding.js';
import { AddressPool } from './pool.js';
import { UserRegistry } from './registry.js';
import type { EndReason, RejectReason, Session } from './session.js';
import { SessionManager, type HeldAddresses } from './sessions.js';
import { buildAssignment } from './tunnel-assignment.js';

export interface ReloadSummary {
  readonly bandwidthChanged: readonly string[];
  readonly usersRemoved: readonly string[];
  readonly sessionsClosed: number;
  /** Settings that differ in the new config but apply only after a restart (file key names). */
  readonly needRestart: readonly string[];
  /** Every setting that differs, with how it took effect (src/config/schema.ts, RELOAD_EFFECTS). */
  readonly changed: readonly ChangedSetting[];
}

export interface ChangedSetting {
  readonly key: string;
  readonly effect: Exclude<ReloadEffect, 'none'>;
}

export interface ListenRequest {
  readonly config: ServerConfig;
  readonly admission: Admission;
  /** The per-source attempt throttle (malformed requests spend it; blocked sources are dropped at accept). */
  readonly throttle: AdmissionThrottle;
  readonly logger: Logger;
}

export interface GatewayParts {
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly openTun: (settings: TunSettings) => Promise<TunDevice>;
  readonly listen: (request: ListenRequest) => Promise<TunnelListener>;
}

/** Per-session state of the control handler set up in Gateway.accept(). */
interface SessionControlState {
  /** Clock time the session was last sent a keepalive_ack; -Infinity before the first. */
  lastKeepaliveAck: number;
}

export class Gateway {
  readonly pool: AddressPool;
  readonly registry: UserRegistry;
  readonly sessions: SessionManager;
  private forwarder: Forwarder | null = null;
  private tun: TunDevice | null = null;
  private listener: TunnelListener | null = null;
  /** Config `fleet`: the parts shared with other gateways through Redis (src/fleet/fleet.ts); null alone. */
  private fleetParts: Fleet | null = null;
  /** Config `fleet`: sessions shared with the other gateways (caps, lists, kills, liveness); null alone. */
  private sessionFleet: SessionFleet | null = null;
  private stopping: Promise<void> | null = null;
  private readonly clock: Clock;
  private readonly logger: Logger;

  private constructor(
    private config: ServerConfig,
    private readonly parts: GatewayParts,
  ) {
    this.clock = parts.clock ?? systemClock;
    this.logger = parts.logger;
    // In a fleet the last-address memory is Redis's (sticky through any gateway), not this process's.
    this.pool = new AddressPool(config, config.fleet === null ? {} : { rememberUsers: 0, cursorStart: cursorStartFor(config.gatewayId) });
    this.registry = new UserRegistry({ clock: this.clock, shaping: config.shaping, fleetFallbackShare: config.fleet?.fallbackShare ?? null });
    this.sessions = new SessionManager({
      config,
      pool: this.pool,
      // A fleet's addresses are claimed through Redis (src/fleet/addresses.ts); fleetParts is set before any session.
      ...(config.fleet === null
        ? {}
        : {
            addresses: {
              allocate: (user: string, preferred: readonly string[], id: string) => this.fleetAddressBook().allocate(user, preferred, id),
              release: (held: HeldAddresses) => (this.fleetParts === null ? this.pool.release(held) : this.fleetParts.addresses.release(held)),
            },
          }),
      registry: this.registry,
      clock: this.clock,
      logger: this.logger,
    });
  }

  static async start(config: ServerConfig, parts: GatewayParts): Promise<Gateway> {
    const gateway = new Gateway(config, parts);
    try {
      await gateway.open();
    } catch (err) {
      logStartFailure(gateway.logger, err);
      await gateway.stop('error');
      throw err;
    }
    return gateway;
  }

  get currentConfig(): ServerConfig {
    return this.config;
  }

  get drops(): Readonly<Record<string, number>> {
    return this.forwarder?.drops ?? {};
  }

  /** Whether the TUN device is open (for health). */
  get tunOpen(): boolean {
    return this.tun !== null;
  }

  /** The tunnel listener's connections without a session and what its guard closed (null: no guard). */
  get connectionStats(): ConnectionGuardStats | null {
    return this.listener?.connectionStats?.() ?? null;
  }

  /** The fleet's session part (null: this gateway alone, or not started). */
  get fleetSessions(): SessionFleet | null {
    return this.sessionFleet;
  }

  get listenerKinds(): readonly string[] {
    return this.listener?.kinds ?? [];
  }

  private fleetAddressBook(): FleetAddressBook {
    if (this.fleetParts === null) throw new QuicgateError('QG_ERR_CLOSED', 'the fleet parts are not running');
    return this.fleetParts.addresses;
  }

  /** The fleet parts (null: this gateway alone, or not started). */
  get fleet(): Fleet | null {
    return this.fleetParts;
  }

  private async open(): Promise<void> {
    const { config } = this;
    // Fleet first, so the first session's rate is already shared; it waits for Redis a short, bounded time.
    if (config.fleet !== null) {
      this.fleetParts = await Fleet.start({
        config: config.fleet,
        gatewayId: config.gatewayId,
        registry: this.registry,
        pool: this.pool,
        attemptsPerSource: config.authAttempts.perSourcePerMinute,
        clock: this.clock,
        logger: this.logger,
      });
      this.sessions.throttle.setShared(this.fleetParts.attempts);
      this.fleetParts.addresses.start((id) => {
        const session = this.sessions.get(id);
        if (session !== undefined) this.sessions.end(session, 'error', 'another gateway holds this tunnel address; reconnect');
      });
      // Sessions share the fleet's connections; admitted on local caps until the lease is held.
      this.sessionFleet = new SessionFleet({
        redis: this.fleetParts.redis,
        config: config.fleet,
        gatewayId: config.gatewayId,
        sessions: this.sessions,
        clock: this.clock,
        logger: this.logger,
        // An admitted request opens its session within the handshake timeout; the margin covers clock skew.
        reservationMs: config.connections.handshakeTimeoutMs + 5_000,
      });
      this.sessionFleet.start();
    }
    // The port first: a second gateway with the same config fails on it (naming address and port), not on the
    // TUN name; sessions arriving before the TUN is open are closed by accept().
    this.listener = await this.parts.listen({
      config,
      admission: (request) => this.sessions.authenticate(request),
      throttle: this.sessions.throttle,
      logger: this.logger,
    });
    this.tun = await this.parts.openTun(gatewayTunSettings(config));
    this.forwarder = new Forwarder({
      tun: this.tun,
      clock: this.clock,
      shapingDelayMs: config.shapingDelayMs,
      allowClientToClient: config.allowClientToClient,
    });
    // The session manager attaches and detaches every session's route and shaping as part of open and end.
    this.sessions.setDataPlane(this.forwarder);
    this.sessions.start();
    this.listener.onConnection((accepted) => this.accept(accepted));
    this.logger.info(
      { tun: this.tun.name, listen: `${config.listen}:${config.port}`, transports: this.listener.kinds },
      'gateway up',
    );
  }

  private accept(accepted: AcceptedConnection): void {
    const book = this.fleetParts?.addresses ?? null;
    if (book === null) {
      this.openSession(accepted);
      return;
    }
    // In a fleet the addresses are claimed in Redis first (bounded wait; null: the reserve will serve).
    const { request } = accepted;
    const user = this.config.users.find((u) => u.name === request.user) ?? { name: request.user, staticAddresses: [] };
    void book.prepare(user, request.previousAddresses).then(
      (ticket) => {
        book.stage(ticket);
        try {
          this.openSession(accepted);
        } finally {
          book.unstage();
        }
      },
      // Pool exhausted: the open below refuses with the reason the client understands.
      () => this.openSession(accepted),
    );
  }

  private openSession({ connection, request }: AcceptedConnection): void {
    if (this.stopping !== null || this.forwarder === null) {
      connection.close({ reason: 'server_shutdown', message: 'gateway is shutting down' });
      return;
    }
    let session: Session;
    try {
      session = this.sessions.open(connection, request);
    } catch (err) {
      const reason: RejectReason | 'error' = isQuicgateError(err, 'QG_ERR_POOL_EXHAUSTED')
        ? 'pool_exhausted'
        : isQuicgateError(err, 'QG_ERR_USER_LIMIT')
          ? 'user_limit'
          : isQuicgateError(err, 'QG_ERR_SERVER_LIMIT')
            ? 'server_limit'
            : 'error';
      const message = err instanceof Error ? err.message : String(err);
      if (reason === 'error') this.logger.error({ err, user: request.user }, 'session open failed');
      // close() sends the one close message (a sendControl of it first made two).
      connection.close({ reason, message, retry: true });
      return;
    }
    const control: SessionControlState = { lastKeepaliveAck: -Infinity };
    connection.setControlHandler((message) => this.onControl(session, control, message));
    connection.sendControl(buildAssignment(this.config, session, connection.maxDatagramBytes, this.sessions.resumeSecretOf(session)));
  }

  /** `control` is this session's control-channel state: when it was last sent a keepalive_ack. */
  private onControl(session: Session, control: SessionControlState, message: ControlMessage): void {
    switch (message.type) {
      case 'keepalive': {
        this.sessions.touch(session);
        // One event loop serves every client: a keepalive flood must not buy a control-stream write per line
        // (it cut another client's throughput to 57% in test/e2e/hostile.test.ts). At most one ack per quarter
        // interval per session; an honest client sends one keepalive per interval.
        const now = this.clock.now();
        if (now - control.lastKeepaliveAck < this.config.keepaliveIntervalMs / 4) return;
        control.lastKeepaliveAck = now;
        session.connection.sendControl({ type: 'keepalive_ack', t: message.t });
        return;
      }
      case 'close':
        // The client is leaving; its transport close follows, which ends the session as client_closed.
        session.connection.close({ reason: 'client_closed', message: message.message ?? 'client closed' });
        return;
      default:
        // assign/keepalive_ack are gateway-to-client only: ignore them from a client.
        return;
    }
  }

  /**
   * Apply a re-read config. Which setting applies how comes from the schema's RELOAD_EFFECTS: live ones now
   * (bandwidths on the live shared buckets, removed or disabled users' sessions closed with `user_removed`,
   * limits, throttle, client-to-client policy, log level), new_sessions ones with the next assignment, restart
   * ones stay at the running value and are reported. Every changed setting is in the summary and the log. On any
   * error the running config stays (QG_ERR_RELOAD_FAILED). Callers serialize reloads (server-command.ts).
   */
  reload(next: ServerConfig): ReloadSummary {
    const before = this.config;
    const changed: ChangedSetting[] = [];
    const kept: Partial<Record<keyof ServerConfig, unknown>> = {};
    for (const field of Object.keys(RELOAD_EFFECTS) as (keyof ServerConfig)[]) {
      const { key, effect } = RELOAD_EFFECTS[field];
      if (effect === 'none' || JSON.stringify(before[field]) === JSON.stringify(next[field])) continue;
      changed.push({ key, effect });
      if (effect === 'restart') kept[field] = before[field];
    }
    const oldUsers = new Map(before.users.map((u) => [u.name, u]));
    const liveBefore = this.sessions.size;
    try {
      this.sessions.applyUsers(next.users, { defaultBandwidth: next.defaultBandwidth, limits: next.limits });
    } catch (err) {
      throw new QuicgateError('QG_ERR_RELOAD_FAILED', `reload refused: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.sessions.throttle.setLimit(next.authAttempts.perSourcePerMinute);
    this.forwarder?.setAllowClientToClient(next.allowClientToClient);
    this.registry.setShaping(next.shaping);
    this.config = { ...next, ...kept } as ServerConfig;
    const names = new Set(next.users.map((u) => u.name));
    const needRestart = changed.filter((c) => c.effect === 'restart').map((c) => c.key);
    const summary: ReloadSummary = {
      bandwidthChanged: next.users
        .filter((u) => oldUsers.has(u.name) && (oldUsers.get(u.name)!.bandwidth !== u.bandwidth || oldUsers.get(u.name)!.burst !== u.burst))
        .map((u) => u.name),
      usersRemoved: [
        ...[...oldUsers.keys()].filter((n) => !names.has(n)),
        ...next.users.filter((u) => u.disabled && !oldUsers.get(u.name)?.disabled).map((u) => u.name),
      ],
      sessionsClosed: Math.max(0, liveBefore - this.sessions.size),
      needRestart,
      changed,
    };
    this.logger.info({ ...summary, changed: changed.map((c) => `${c.key} (${c.effect})`) }, 'config reloaded');
    if (needRestart.length > 0) this.logger.warn({ keys: needRestart }, 'these settings change only with a restart');
    // Last, so the reload itself is still logged at the level it was asked at.
    this.logger.level = next.logLevel;
    return summary;
  }

  /** Close every session with `reason`, stop listening and close the TUN. Idempotent. */
  stop(reason: EndReason = 'server_shutdown'): Promise<void> {
    this.stopping ??= (async () => {
      this.sessions.closeAll(reason);
      this.sessions.stop();
      // After the sessions' releases were queued: the lease and records are given up, not left to expire.
      await this.sessionFleet?.stop().catch((err: unknown) => this.logger.warn({ err }, 'fleet sessions stop failed'));
      const listener = this.listener;
      this.listener = null;
      await listener?.close().catch((err: unknown) => this.logger.warn({ err }, 'listener close failed'));
      const tun = this.tun;
      this.tun = null;
      await tun?.close().catch((err: unknown) => this.logger.warn({ err }, 'tun close failed'));
      const fleet = this.fleetParts;
      this.fleetParts = null;
      await fleet?.stop().catch((err: unknown) => this.logger.warn({ err }, 'fleet stop failed'));
      this.logger.info({ reason }, 'gateway stopped');
    })();
    return this.stopping;
  }
}

/** Logged as well as returned: the log is where an operator looks first (e.g. for a port in use). */
export function logStartFailure(logger: Logger, err: unknown): void {
  const fields = isQuicgateError(err) ? { code: err.code, ...err.details } : {};
  logger.error({ ...fields, err: err instanceof Error ? err.message : String(err) }, 'gateway failed to start');
}

export function gatewayTunSettings(config: ServerConfig): TunSettings {
  const addresses = [];
  for (const net of [config.networks.ipv4, config.networks.ipv6]) {
    if (net !== null) addresses.push({ cidr: `${net.gateway}/${net.cidr.slice(net.cidr.lastIndexOf('/') + 1)}` });
  }
  return { name: config.tunName, mtu: config.mtu, addresses, routes: [], txQueueLen: 4096, offload: config.tunOffload };
}
