/**
 * The auth throttle's per-source budget shared through a real redis-server (bottleneck's clustering): two
 * AdmissionThrottles, each with its own FleetRedis, stand for two gateways.
 */
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import Bottleneck from 'bottleneck';
import { Redis } from 'ioredis';
import { catchUnsubscribe, FleetAttemptBudget } from '../../src/fleet/attempt-budget.js';
import { FleetRedis } from '../../src/fleet/redis.js';
import { AdmissionThrottle } from '../../src/gateway/admission.js';
import { startTestRedis, waitUntil, type TestRedis } from '../support/redis-server.js';

const logger = pino({ level: 'silent' });
const BUDGET = 5;
const WINDOW_MS = 60_000;
/** Real timers, a fixed wall clock: the fleet's windows are wall-clock minutes, and no test may straddle two. */
const clock = { ...systemClock, wallNow: () => Date.UTC(2026, 11, 7, 12, 0, 30) };

interface TestGateway {
  readonly redis: FleetRedis;
  readonly budget: FleetAttemptBudget;
  readonly throttle: AdmissionThrottle;
}

let redis: TestRedis;
let live: TestGateway[] = [];
let prefixes = 0;

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis.dispose();
});
afterEach(async () => {
  for (const gw of live) {
    gw.throttle.close();
    await gw.budget.close();
    await gw.redis.close();
  }
  live = [];
});

async function gateways(n: number, limit = BUDGET): Promise<TestGateway[]> {
  const prefix = `qga${++prefixes}:`;
  const out: TestGateway[] = [];
  for (let i = 0; i < n; i++) {
    const fleetRedis = new FleetRedis({ redisUrl: redis.url, keyPrefix: prefix }, { maxRetryDelayMs: 100 });
    await fleetRedis.connect();
    const budget = new FleetAttemptBudget({ redis: fleetRedis, limit, windowMs: WINDOW_MS, clock, logger, timeoutMs: 2_000 });
    const throttle = new AdmissionThrottle({ perSourcePerMinute: limit, logger, windowMs: WINDOW_MS });
    throttle.setShared(budget);
    const gw = { redis: fleetRedis, budget, throttle };
    out.push(gw);
    live.push(gw);
  }
  return out;
}

describe('FleetAttemptBudget with AdmissionThrottle (real redis-server)', () => {
  it('holds one source to one budget across two gateways: 2 x budget attempts, budget admitted', async () => {
    const [a, b] = await gateways(2);
    const verdicts: boolean[] = [];
    for (let i = 0; i < 2 * BUDGET; i++) verdicts.push(await (i % 2 === 0 ? a! : b!).throttle.admit('192.0.2.77'));
    expect(verdicts.filter(Boolean)).toHaveLength(BUDGET);
    // Each gateway alone admitted fewer than its local budget: the refusals came from the shared one.
    expect(a!.throttle.throttled + b!.throttle.throttled).toBe(BUDGET);
    // Another source is not touched, and a refused one is refused at once (locally) from then on.
    expect(await b!.throttle.admit('192.0.2.78')).toBe(true);
    expect(a!.throttle.isBlocked('192.0.2.77')).toBe(false);
  });

  it('gives an attempt back fleet-wide after a right password', async () => {
    const [a, b] = await gateways(2, 2);
    expect(await a!.throttle.admit('192.0.2.80')).toBe(true);
    await a!.throttle.succeeded('192.0.2.80');
    expect(await b!.throttle.admit('192.0.2.80')).toBe(true);
    expect(await b!.throttle.admit('192.0.2.80')).toBe(true);
    expect(await a!.throttle.admit('192.0.2.80')).toBe(false);
  });

  it('falls back to the local budget while Redis is down (never unlimited), and shares again when it is back', async () => {
    const [a, b] = await gateways(2);
    await redis.stop();
    await waitUntil(() => a!.redis.state === 'down' && b!.redis.state === 'down', 10_000, 'links down');
    const down: boolean[] = [];
    for (let i = 0; i < 4 * BUDGET; i++) down.push(await (i % 2 === 0 ? a! : b!).throttle.admit('192.0.2.90'));
    // Each gateway held the source to its own budget.
    expect(down.filter(Boolean)).toHaveLength(2 * BUDGET);
    await redis.start();
    await waitUntil(() => a!.redis.state === 'up' && b!.redis.state === 'up', 15_000, 'links up');
    const up: boolean[] = [];
    for (let i = 0; i < 2 * BUDGET; i++) up.push(await (i % 2 === 0 ? a! : b!).throttle.admit('192.0.2.91'));
    expect(up.filter(Boolean)).toHaveLength(BUDGET);
  });

  it('prints what an attempt costs: local only, first attempt of a source in the fleet, later attempts', async () => {
    const [a] = await gateways(1, 1_000_000);
    const local = new AdmissionThrottle({ perSourcePerMinute: 1_000_000, logger, windowMs: WINDOW_MS });
    const n = 200;
    const time = async (fn: (i: number) => Promise<unknown>): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await fn(i);
      return (performance.now() - t0) / n;
    };
    const localMs = await time(() => local.admit('192.0.2.100'));
    const firstMs = await time((i) => a!.throttle.admit(`198.51.100.${i % 250}`));
    const laterMs = await time(() => a!.throttle.admit('198.51.100.1'));
    local.close();
    console.log(
      `attempt cost (${n} each, sequential, loopback redis-server): local ${localMs.toFixed(3)} ms, fleet first of a source ${firstMs.toFixed(3)} ms, fleet later ${laterMs.toFixed(3)} ms`,
    );
    expect(firstMs).toBeGreaterThan(0);
    expect(laterMs).toBeGreaterThan(0);
  });
});

describe("bottleneck's IORedisConnection (pinned 2.19.5, reached into by catchUnsubscribe)", () => {
  it('is the pinned version, and an UNSUBSCRIBE refused by a dead link resolves instead of rejecting', async () => {
    const pkg = (await import('bottleneck/package.json', { with: { type: 'json' } })).default as { version: string };
    expect(pkg.version).toBe('2.19.5');
    // A client that never connects and queues nothing: every command is refused at once.
    const client = new Redis({ host: '192.0.2.1', port: 9, lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
    const connection = new Bottleneck.IORedisConnection({ client, Redis });
    connection.on('error', () => undefined);
    const subscriber = (connection as unknown as { subscriber: Redis }).subscriber;
    expect(subscriber).toBeInstanceOf(Redis);
    await expect(subscriber.unsubscribe('b_x')).rejects.toThrow();
    catchUnsubscribe(connection);
    await expect(subscriber.unsubscribe('b_x')).resolves.toBe(0);
    client.disconnect(false);
    subscriber.disconnect(false);
  });
});
