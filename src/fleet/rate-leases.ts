/**
 * This gateway's lease client for users' fleet-wide rates: every `lease_interval` one round renews the leases
 * of all connected limited users at once (rate-script.ts, one pipeline) and hands each granted share to the
 * registry, which alone sets the buckets (registry.ts, setFleetGrant). Nothing here runs per packet: the
 * buckets count offered bytes in a plain field (bucket.ts `offered`) that the round reads and resets.
 *
 *   round:  registry.leaseViews() ─► demand = offered bytes / elapsed ─► leaseRound (Redis) ─► setFleetGrant
 *           users leased last round and gone now ─► released in the same call (their share goes to the others)
 *   failure (Redis unreachable, a call that fails or times out): every user at fallback_share of their limit
 *           (registry.clearFleetGrants), logged once; the next round that succeeds restores shares, logged once.
 *
 * A round still in flight when the timer fires again is not doubled up: the tick is skipped and counted.
 * Leases live `ttl` (5 intervals, at least 1 s) in Redis: a gateway that stops renewing (crash, lost link, user gone) loses
 * its shares to the others within it, and since a degraded gateway's grants are dropped at once, no share is
 * enforced twice once Redis answers again.
 */
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import type { UserRegistry } from '../gateway/registry.js';
import type { FleetRedis } from './redis.js';
import { leaseRound, type LeaseRequest } from './rate-script.js';

export interface RateLeaseOptions {
  readonly redis: FleetRedis;
  readonly registry: UserRegistry;
  readonly gatewayId: string;
  readonly intervalMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Lease lifetime in Redis; default 5 intervals, at least 1 s (a busy gateway may skip a few rounds). */
  readonly ttlMs?: number;
  /** How long a user's hash outlives the last lease of any gateway; default 10 minutes. */
  readonly keyTtlMs?: number;
}

export interface RateLeaseStats {
  /** Whether the last round succeeded (shares in force) or failed (fallback shares). */
  readonly state: 'shared' | 'fallback';
  readonly roundsOk: number;
  readonly roundsFailed: number;
  /** Ticks skipped because the previous round was still in flight. */
  readonly roundsSkipped: number;
  /** Users in the last round. */
  readonly users: number;
  /** Duration of the last completed round, ms (-1 before the first). */
  readonly lastRoundMs: number;
}

export type RoundListener = (seconds: number, ok: boolean) => void;

export class RateLeases {
  private timer: TimerHandle | null = null;
  private inFlight: Promise<void> | null = null;
  private lastRoundAt = -1;
  /** Users this gateway holds a lease for in Redis (released when they leave). */
  private leased = new Set<string>();
  private degraded = false;
  private roundsOk = 0;
  private roundsFailed = 0;
  private roundsSkipped = 0;
  private lastUsers = 0;
  private lastRoundMs = -1;
  private readonly listeners = new Set<RoundListener>();
  private readonly ttlMs: number;
  private readonly keyTtlMs: number;

  constructor(private readonly opts: RateLeaseOptions) {
    this.ttlMs = opts.ttlMs ?? Math.max(5 * opts.intervalMs, 1_000);
    this.keyTtlMs = opts.keyTtlMs ?? 10 * 60_000;
  }

  start(): void {
    if (this.timer !== null) return;
    this.lastRoundAt = this.opts.clock.now();
    this.timer = this.opts.clock.setInterval(() => this.tick(), this.opts.intervalMs);
  }

  /** Stop the rounds; release this gateway's leases (bounded by the connection's command timeout). */
  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = null;
    await this.inFlight;
    if (this.leased.size === 0 || this.opts.redis.state !== 'up') return;
    const requests = [...this.leased].map((user) => this.release(user));
    this.leased.clear();
    await leaseRound(this.opts.redis.commands, this.opts.gatewayId, this.ttlMs, this.keyTtlMs, requests).catch(() => undefined);
  }

  get stats(): RateLeaseStats {
    return {
      state: this.degraded ? 'fallback' : 'shared',
      roundsOk: this.roundsOk,
      roundsFailed: this.roundsFailed,
      roundsSkipped: this.roundsSkipped,
      users: this.lastUsers,
      lastRoundMs: this.lastRoundMs,
    };
  }

  /** Called after every round with its duration (s) and outcome; returns an unsubscribe function. */
  onRound(listener: RoundListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private tick(): void {
    if (this.inFlight !== null) {
      this.roundsSkipped++;
      return;
    }
    this.inFlight = this.round().finally(() => {
      this.inFlight = null;
    });
  }

  /** One round now (the timer's work; tests call it directly). Never rejects. */
  async round(): Promise<void> {
    const { clock, registry, redis } = this.opts;
    const started = clock.now();
    const seconds = Math.max(1, started - this.lastRoundAt) / 1000;
    this.lastRoundAt = started;
    const users: string[] = [];
    const requests: LeaseRequest[] = [];
    for (const view of registry.leaseViews()) {
      users.push(view.user);
      requests.push({ key: redis.key('rate', view.user), limit: view.limit, demand: view.bucket.takeOffered() / seconds });
    }
    const current = new Set(users);
    const released = [...this.leased].filter((user) => !current.has(user));
    for (const user of released) requests.push(this.release(user));
    this.lastUsers = users.length;
    if (requests.length === 0) return;
    let grants;
    try {
      if (redis.state !== 'up') throw new Error('Redis link down');
      grants = await leaseRound(redis.commands, this.opts.gatewayId, this.ttlMs, this.keyTtlMs, requests);
    } catch (err) {
      redis.markFailed(err);
      this.roundsFailed++;
      this.finish(started, false);
      if (!this.degraded) {
        this.degraded = true;
        const message = err instanceof Error ? err.message : String(err);
        this.opts.logger.warn({ err: message, users: users.length }, 'fleet rate leases failing: enforcing fallback_share of each limit until Redis answers');
      }
      registry.clearFleetGrants();
      return;
    }
    this.roundsOk++;
    for (const user of released) this.leased.delete(user);
    for (const [i, user] of users.entries()) {
      this.leased.add(user);
      registry.setFleetGrant(user, grants[i]!.grant);
      if (process.env.QG_DEBUG_LEASES) this.opts.logger.info({ user, demand: Math.round(requests[i]!.demand * 8 / 1000), grant: Math.round(grants[i]!.grant * 8 / 1000) }, 'lease');
    }
    this.finish(started, true);
    if (this.degraded) {
      this.degraded = false;
      this.opts.logger.info({ users: users.length }, 'fleet rate leases restored: shared limits in force');
    }
  }

  private release(user: string): LeaseRequest {
    return { key: this.opts.redis.key('rate', user), limit: 0, demand: 0 };
  }

  private finish(started: number, ok: boolean): void {
    this.lastRoundMs = this.opts.clock.now() - started;
    for (const listener of this.listeners) listener(this.lastRoundMs / 1000, ok);
  }
}
