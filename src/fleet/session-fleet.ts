/**
 * The session side of a fleet, wired in one object for the Gateway: liveness (the lease), the shared session
 * caps and records, and kills routed to the owning gateway.
 *
 *   start()  kill router subscribes ─► liveness beats ─► every held beat: resync or refresh the records
 *   a lost gateway (this one reaped it) ─► onGatewayLost listeners (the history closes its rows as crash)
 *   list()   this gateway's sessions from memory + the other live gateways' records from Redis
 *   kill()   here, else the owner (found in the records) through the router
 *   stop()   router unsubscribes, lease and records given up (a clean stop is not reported lost)
 *
 * While Redis is down: admissions on local caps, lists and kills of this gateway's own sessions only (the
 * fleet part fails with QG_ERR_FLEET_UNAVAILABLE; lists say so in their `fleet` field).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { FleetListInfo, SessionView } from '../admin/backend.js';
import type { Clock } from '../clock.js';
import type { FleetConfig } from '../config/types.js';
import { QuicgateError, isQuicgateError } from '../errors.js';
import type { EndReason } from '../gateway/session.js';
import { sessionViewOf } from '../gateway/session-view.js';
import type { SessionManager } from '../gateway/sessions.js';
import { FleetKillRouter } from './kill-router.js';
import { GatewayLiveness } from './liveness.js';
import type { FleetRedis } from './redis.js';
import { FleetSessionRegistry, type FleetSessionRecord, type FleetSessionStats } from './session-registry.js';

/** How long a routed kill waits for the owner's reply. */
export const DEFAULT_KILL_TIMEOUT_MS = 3_000;

export interface SessionFleetOptions {
  readonly redis: FleetRedis;
  readonly config: FleetConfig;
  readonly gatewayId: string;
  readonly sessions: SessionManager;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How long an admitted request may take to open its session (handshake timeout + margin). */
  readonly reservationMs: number;
  readonly killTimeoutMs?: number;
  readonly newId?: () => string;
}

export type GatewayLostListener = (gatewayId: string) => void | Promise<void>;

export class SessionFleet {
  readonly liveness: GatewayLiveness;
  readonly registry: FleetSessionRegistry;
  readonly router: FleetKillRouter;
  private readonly opts: SessionFleetOptions;
  private readonly lostListeners: GatewayLostListener[] = [];
  private registeredPending = false;
  private started = false;

  constructor(options: SessionFleetOptions) {
    this.opts = options;
    const { redis, gatewayId, clock, sessions } = options;
    const logger = options.logger.child({ component: 'fleet-sessions' });
    this.liveness = new GatewayLiveness({ redis, gatewayId, leaseMs: options.config.sessionLeaseMs, clock, logger });
    this.router = new FleetKillRouter({
      redis,
      gatewayId,
      clock,
      logger,
      timeoutMs: options.killTimeoutMs ?? DEFAULT_KILL_TIMEOUT_MS,
      handler: {
        killSession: (id, reason, message) => {
          const session = sessions.get(id);
          return session !== undefined && sessions.end(session, reason, message);
        },
        killUser: (name, reason, message) => sessions.killUser(name, reason, message),
      },
    });
    this.registry = new FleetSessionRegistry({
      redis,
      gatewayId,
      clock,
      logger,
      leaseHeld: () => this.liveness.leaseHeld,
      reservationMs: options.reservationMs,
      liveSessions: () => sessions.list(),
      newId: options.newId ?? randomUUID,
      describe: (s) => sessionViewOf(s, { in: 0, out: 0 }),
      endLocal: (id, reason, message) => {
        const session = sessions.get(id);
        if (session !== undefined) sessions.end(session, reason, message);
      },
      endRemote: (gw, id, reason, message) => {
        this.router.kill(gw, id, reason, message).catch((err: unknown) => logger.warn({ err: errorText(err), gateway: gw, session: id }, 'fleet: replacing a session on another gateway failed; its record no longer counts'));
      },
    });
    this.liveness.on('registered', () => {
      this.registeredPending = true;
    });
    this.liveness.on('beat', () => {
      const registered = this.registeredPending;
      this.registeredPending = false;
      void this.registry.afterBeat(registered);
    });
    this.liveness.on('gatewayLost', (id) => this.emitLost(id, logger));
  }

  get gatewayId(): string {
    return this.opts.gatewayId;
  }

  get redis(): FleetRedis {
    return this.opts.redis;
  }

  /** Called once per lost gateway, on the one gateway that reaped it. Returns an unsubscribe function. */
  onGatewayLost(listener: GatewayLostListener): () => void {
    this.lostListeners.push(listener);
    return () => {
      const i = this.lostListeners.indexOf(listener);
      if (i >= 0) this.lostListeners.splice(i, 1);
    };
  }

  /**
   * Install the caps on the session manager, subscribe and start beating; does not wait for Redis (admissions
   * are local-only until the first held beat). `subscribed` settles when the control channel is subscribed.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.opts.sessions.setSharedCaps(this.registry);
    // The subscriber queues SUBSCRIBE until it connects, so this may wait for Redis; nothing else does.
    this.subscribed = this.router.start().catch((err: unknown) => this.opts.logger.warn({ err: errorText(err) }, 'fleet: control channel could not be subscribed'));
    this.liveness.start();
  }

  /** Settles once the control channel is subscribed (or failed to be). */
  subscribed: Promise<void> = Promise.resolve();

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.opts.sessions.setSharedCaps(null);
    this.registry.close();
    await this.router.stop();
    await this.liveness.stop();
  }

  /** Every live session of the fleet: `local` (this gateway's views) and the other gateways' records. */
  async list(local: readonly SessionView[], gateway: string | null): Promise<{ sessions: FleetSessionRecord[]; fleet: FleetListInfo }> {
    const self = this.opts.gatewayId;
    const mine = local.map((v) => ({ ...v, gateway: self }));
    try {
      const gateways = await this.registry.liveGateways();
      const wanted = gateway === null ? gateways : gateways.filter((g) => g === gateway);
      const remote = await this.registry.remoteRecords(wanted);
      const all = [...(gateway === null || gateway === self ? mine : []), ...remote];
      return { sessions: all, fleet: { gateway: self, gateways: gateways.includes(self) ? gateways : [...gateways, self].sort(), complete: true } };
    } catch (err) {
      this.opts.redis.markFailed(err);
      return { sessions: gateway === null || gateway === self ? mine : [], fleet: { gateway: self, gateways: [self], complete: false, error: errorText(err) } };
    }
  }

  /** A session of another gateway by id (null when no live gateway lists it). Throws QG_ERR_FLEET_UNAVAILABLE. */
  async remoteSession(id: string): Promise<FleetSessionRecord | null> {
    const owner = await this.fleetCall(() => this.registry.ownerOf(id));
    if (owner === null || owner === this.opts.gatewayId) return null;
    const records = await this.fleetCall(() => this.registry.remoteRecords([owner]));
    return records.find((r) => r.id === id) ?? null;
  }

  /** End a session of another gateway: false when no live gateway has it; throws QG_ERR_FLEET_* when its owner cannot be asked. */
  async killRemote(id: string, reason: EndReason, message: string): Promise<{ readonly gateway: string } | null> {
    const owner = await this.fleetCall(() => this.registry.ownerOf(id));
    if (owner === null || owner === this.opts.gatewayId) return null;
    try {
      return (await this.router.kill(owner, id, reason, message)) ? { gateway: owner } : null;
    } catch (err) {
      // The reply may be what was lost: a session whose record is gone has ended.
      if (!isQuicgateError(err, 'QG_ERR_FLEET_TIMEOUT') || (await this.registry.ownerOf(id).catch(() => owner)) !== null) throw err;
      return { gateway: owner };
    }
  }

  /** End the user's sessions on every other live gateway; how many ended. Throws QG_ERR_FLEET_* (after trying all). */
  async killUserRemote(name: string, reason: EndReason, message: string): Promise<number> {
    const gateways = await this.fleetCall(() => this.registry.otherGatewaysOf(name));
    const results = await Promise.allSettled(gateways.map((gw) => this.router.killUser(gw, name, reason, message)));
    let closed = 0;
    let failure: unknown = null;
    for (const r of results) {
      if (r.status === 'fulfilled') closed += r.value;
      else failure ??= r.reason;
    }
    if (failure !== null) throw failure;
    return closed;
  }

  stats(): FleetSessionStats & { readonly leaseHeld: boolean; readonly gatewaysLost: number; readonly routedKillsServed: number; readonly malformedMessages: number } {
    const router = this.router.stats();
    return {
      ...this.registry.stats(),
      leaseHeld: this.liveness.leaseHeld,
      gatewaysLost: this.liveness.gatewaysLost,
      routedKillsServed: router.served,
      malformedMessages: router.malformed,
    };
  }

  private async fleetCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      this.opts.redis.markFailed(err);
      throw new QuicgateError('QG_ERR_FLEET_UNAVAILABLE', `the fleet's Redis cannot be reached: ${errorText(err)}`, { cause: err });
    }
  }

  private emitLost(id: string, logger: Logger): void {
    for (const listener of this.lostListeners) {
      Promise.resolve()
        .then(() => listener(id))
        .catch((err: unknown) => logger.error({ err: errorText(err), gateway: id }, 'fleet: a gateway-lost listener failed'));
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
