/**
 * A gateway's fleet parts (config `fleet`), set up in one place and torn down in reverse order:
 *
 *   FleetRedis (connect: waits at most `connectWaitMs`, else the gateway starts degraded and goes up later)
 *     ─► RateLeases (users' shared rates) ─► FleetAddressBook (tunnel addresses; its renewal starts with the gateway)
 *     ─► FleetAttemptBudget (the auth throttle's per-source budget)
 *
 * Gateway.open() calls startFleet() before it listens, Gateway.stop() calls stop() after the sessions ended.
 * Nothing here blocks forwarding or connects: every fleet part falls back locally while Redis is unreachable.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { FleetConfig } from '../config/types.js';
import type { AddressPool } from '../gateway/pool.js';
import type { UserRegistry } from '../gateway/registry.js';
import { DEFAULT_WINDOW_MS } from '../gateway/admission.js';
import { FleetAddressBook, type FleetAddressStats } from './addresses.js';
import { FleetAttemptBudget } from './attempt-budget.js';
import { RateLeases, type RoundListener } from './rate-leases.js';
import { FleetRedis, type FleetLinkState } from './redis.js';

export interface FleetStatus {
  readonly gatewayId: string;
  readonly link: FleetLinkState;
  /** Wall-clock ms of the last link state change. */
  readonly linkSince: number;
  readonly rate: RateLeases['stats'];
  readonly addresses: FleetAddressStats;
  /** Auth attempts the fleet's budget could not answer for (the local throttle decided them). */
  readonly attemptsUnanswered: number;
}

export interface FleetStartOptions {
  readonly config: FleetConfig;
  readonly gatewayId: string;
  readonly registry: UserRegistry;
  /** The gateway's address pool, which the fleet's address claims guard. */
  readonly pool: AddressPool;
  /** auth_attempts.per_source_per_minute, shared by the fleet. */
  readonly attemptsPerSource: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Longest start waits for Redis (default 2 s). */
  readonly connectWaitMs?: number;
}

export class Fleet {
  private linkSince: number;

  private constructor(
    readonly gatewayId: string,
    readonly redis: FleetRedis,
    readonly rate: RateLeases,
    readonly addresses: FleetAddressBook,
    readonly attempts: FleetAttemptBudget,
    private readonly clock: Clock,
  ) {
    this.linkSince = clock.wallNow();
  }

  static async start(opts: FleetStartOptions): Promise<Fleet> {
    const { config, logger, clock } = opts;
    const redis = new FleetRedis(config);
    const rate = new RateLeases({ redis, registry: opts.registry, gatewayId: opts.gatewayId, intervalMs: config.leaseIntervalMs, clock, logger });
    const addresses = new FleetAddressBook({
      redis,
      pool: opts.pool,
      gatewayId: opts.gatewayId,
      leaseMs: config.sessionLeaseMs,
      reserve: config.addressReserve,
      clock,
      logger,
    });
    const attempts = new FleetAttemptBudget({ redis, limit: opts.attemptsPerSource, windowMs: DEFAULT_WINDOW_MS, clock, logger });
    const fleet = new Fleet(opts.gatewayId, redis, rate, addresses, attempts, clock);
    redis.on('state', (state, reason) => {
      fleet.linkSince = clock.wallNow();
      if (state === 'up') logger.info({ gatewayId: opts.gatewayId }, 'fleet link up');
      else logger.warn({ gatewayId: opts.gatewayId, reason }, 'fleet link down: shared state unavailable, local fallbacks in force');
    });
    redis.connectInBackground();
    await waitForLink(redis, clock, opts.connectWaitMs ?? 2_000);
    rate.start();
    return fleet;
  }

  /** Lease round outcomes (for the metrics' histogram); returns an unsubscribe function. */
  onRound(listener: RoundListener): () => void {
    return this.rate.onRound(listener);
  }

  get status(): FleetStatus {
    return {
      gatewayId: this.gatewayId,
      link: this.redis.state,
      linkSince: this.linkSince,
      rate: this.rate.stats,
      addresses: this.addresses.stats(),
      attemptsUnanswered: this.attempts.unanswered,
    };
  }

  /** Reverse order of start: leases released, then the connection closed. */
  async stop(): Promise<void> {
    await this.attempts.close();
    await this.addresses.stop();
    await this.rate.stop();
    await this.redis.close();
  }
}

/** Resolves when the link is up or after `ms`, whichever is first (a Redis that is down must not hold the start). */
function waitForLink(redis: FleetRedis, clock: Clock, ms: number): Promise<void> {
  if (redis.state === 'up') return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      timer.cancel();
      redis.off('state', onState);
      resolve();
    };
    const onState = (state: FleetLinkState): void => {
      if (state === 'up') done();
    };
    const timer = clock.setTimeout(done, ms);
    redis.on('state', onState);
  });
}
