/**
 * The per-source attempt budget (auth_attempts.per_source_per_minute) shared by the fleet, on bottleneck's
 * Redis clustering: one Bottleneck.Group whose limiters (one per source and window) keep their reservoir in
 * Redis, so an attempt at any gateway spends the same budget.
 *
 *   admit(key)   window = floor(wall clock / window) (the same on every gateway) ─► group.key(window:key)
 *                ─► reservoir left in Redis: true; empty: false (highWater 0 + OVERFLOW: never queued)
 *                ─► Redis down, or no answer within timeoutMs: null, and the caller's local throttle decides
 *   giveBack     incrementReservoir(1) on the same limiter (right password)
 *   new window   the last window's limiters are deleted (local objects, their heartbeat timers, Redis keys);
 *                keys nobody deleted expire in Redis after two windows (bottleneck's `timeout`)
 *
 * The first attempt of a source in a window sets its limiter up in Redis (init script, two SUBSCRIBEs, client
 * registration), later ones cost one script call; test/fleet/attempt-budget.test.ts prints both. AdmissionThrottle
 * keeps its local refusal in front, so a refused source costs no Redis round trip for the rest of its window.
 */
import Bottleneck from 'bottleneck';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { SharedAttemptBudget } from '../gateway/admission.js';
import { bounded } from './bounded.js';
import type { FleetRedis } from './redis.js';

export interface FleetAttemptBudgetOptions {
  readonly redis: FleetRedis;
  /** Attempts per source per window (the local throttle's limit). */
  readonly limit: number;
  readonly windowMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Longest an attempt waits for Redis before the local throttle decides (ms). */
  readonly timeoutMs?: number;
}

const admitted = (): Promise<true> => Promise.resolve(true);

export class FleetAttemptBudget implements SharedAttemptBudget {
  private readonly redis: FleetRedis;
  private readonly windowMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private limit: number;
  private connection: Bottleneck.IORedisConnection | null = null;
  private group: Bottleneck.Group | null = null;
  private window = -1;
  private closed = false;
  private failures = 0;

  constructor(options: FleetAttemptBudgetOptions) {
    this.redis = options.redis;
    this.windowMs = options.windowMs;
    this.clock = options.clock;
    this.logger = options.logger;
    this.timeoutMs = options.timeoutMs ?? 500;
    this.limit = options.limit;
  }

  /** Attempts the fleet could not answer for (the local throttle decided them). */
  get unanswered(): number {
    return this.failures;
  }

  async admit(key: string): Promise<boolean | null> {
    const group = this.currentGroup();
    if (group === null) return null;
    const limiter = group.key(`${this.window}:${key}`);
    try {
      return await bounded(this.clock, this.timeoutMs, limiter.schedule({ weight: 1, expiration: this.windowMs }, admitted));
    } catch (err) {
      if (err instanceof Bottleneck.BottleneckError) return false;
      this.failures++;
      this.redis.markFailed(err);
      return null;
    }
  }

  async giveBack(key: string): Promise<void> {
    const group = this.currentGroup();
    if (group === null || !group.keys().includes(`${this.window}:${key}`)) return;
    const limiter = group.key(`${this.window}:${key}`);
    try {
      const left = await bounded(this.clock, this.timeoutMs, limiter.currentReservoir());
      if (left !== null && left < this.limit) await bounded(this.clock, this.timeoutMs, limiter.incrementReservoir(1));
    } catch (err) {
      this.failures++;
      this.redis.markFailed(err);
    }
  }

  setLimit(limit: number): void {
    // Limiters already made keep their budget; the next window's get the new one.
    this.limit = limit;
    this.group?.updateSettings({ reservoir: limit });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.dropWindow();
    this.group = null;
    await this.connection?.disconnect(false).catch(() => undefined);
    this.connection = null;
  }

  /** The group of the current window, made on first use while Redis is up; null while it is down. */
  private currentGroup(): Bottleneck.Group | null {
    if (this.closed || this.redis.state !== 'up' || this.limit <= 0) return null;
    const window = Math.floor(this.clock.wallNow() / this.windowMs);
    if (this.group === null) {
      // Bottleneck makes its subscriber with client.duplicate(); FleetRedis's clients connect lazily, which a
      // duplicate would inherit and never connect. So bottleneck gets a duplicate that connects at once (same
      // URL, timeouts, no offline queue): two more connections per gateway, closed with the budget.
      this.connection = new Bottleneck.IORedisConnection({ client: this.redis.commands.duplicate({ lazyConnect: false }), Redis });
      catchUnsubscribe(this.connection);
      // Link errors are the FleetRedis state's business (and bounded() turns a hang into null).
      this.connection.on('error', (err: unknown) => this.logger.debug({ err }, 'fleet attempt budget: Redis error'));
      this.group = new Bottleneck.Group({
        id: this.redis.key('auth'),
        datastore: 'ioredis',
        connection: this.connection,
        clearDatastore: false,
        timeout: 2 * this.windowMs,
        reservoir: this.limit,
        highWater: 0,
        strategy: Bottleneck.strategy.OVERFLOW,
        maxConcurrent: null,
        minTime: 0,
      });
      this.group.on('error', (err: unknown) => this.logger.debug({ err }, 'fleet attempt budget: limiter error'));
    }
    if (window !== this.window) {
      void this.dropWindow();
      this.window = window;
    }
    return this.group;
  }

  private async dropWindow(): Promise<void> {
    const group = this.group;
    if (group === null) return;
    const prefix = `${this.window}:`;
    await Promise.all(
      group
        .keys()
        .filter((k) => k.startsWith(prefix))
        .map((k) => group.deleteKey(k).catch(() => undefined)),
    );
  }

}

/**
 * bottleneck 2.19.5 (pinned exactly) unsubscribes a dropped limiter's channels in a promise nobody awaits
 * (IORedisConnection.__removeLimiter__); while Redis is down the refused UNSUBSCRIBE would be an unhandled
 * rejection, which ends a Node process. Its subscriber (`subscriber`, a duplicate of our client) gets an
 * unsubscribe that cannot reject: Redis drops the subscription with the connection anyway.
 * test/fleet/attempt-budget.test.ts fails if the property is not there.
 */
export function catchUnsubscribe(connection: Bottleneck.IORedisConnection): void {
  const subscriber = (connection as unknown as { subscriber?: Redis }).subscriber;
  if (subscriber === undefined) throw new Error('bottleneck IORedisConnection has no subscriber: not the pinned 2.19.5');
  const unsubscribe = subscriber.unsubscribe.bind(subscriber);
  subscriber.unsubscribe = ((...channels: string[]) => unsubscribe(...channels).catch(() => 0)) as Redis['unsubscribe'];
}
