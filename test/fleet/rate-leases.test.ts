/**
 * The lease client (RateLeases) of two and three "gateways" in one process: each its own registry, FakeClock
 * (the intervals the demand is measured over) and FleetRedis to one real redis-server. Offered load is put on
 * each bucket's counter as the forwarding path would; rounds are run by hand.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import type { FleetConfig } from '../../src/config/types.js';
import { RateLeases } from '../../src/fleet/rate-leases.js';
import { FleetRedis } from '../../src/fleet/redis.js';
import { UserRegistry } from '../../src/gateway/registry.js';
import { captureLog, type CapturedLog } from '../support/log-capture.js';
import { startTestRedis, waitUntil, type TestRedis } from '../support/redis-server.js';

const L = 2_500_000;
const INTERVAL = 100;

let server: TestRedis;

class TestGateway {
  readonly clock = new FakeClock();
  readonly registry = new UserRegistry({ clock: this.clock, fleetFallbackShare: 0.5 });
  readonly redis: FleetRedis;
  readonly leases: RateLeases;
  readonly log: CapturedLog = captureLog('info');

  constructor(readonly id: string) {
    const config: Pick<FleetConfig, 'redisUrl' | 'keyPrefix'> = { redisUrl: server.url, keyPrefix: 'qgt:' };
    this.redis = new FleetRedis(config, { maxRetryDelayMs: 100 });
    this.leases = new RateLeases({ redis: this.redis, registry: this.registry, gatewayId: id, intervalMs: INTERVAL, clock: this.clock, logger: this.log.logger, ttlMs: 400 });
  }

  connect(user = 'alice', id = `${this.id}-c1`): void {
    this.registry.add(user, id, { bandwidth: L, burst: null });
  }

  rate(user = 'alice'): number {
    return this.registry.bucketOf(user)?.rate ?? 0;
  }

  /** One interval of offered load (bytes/s), then the round at its end. */
  async interval(offeredBps: number, user = 'alice'): Promise<void> {
    const bucket = this.registry.bucketOf(user);
    if (bucket !== null) bucket.offered += offeredBps * (INTERVAL / 1000);
    this.clock.advance(INTERVAL);
    await this.leases.round();
  }
}

/** A user who wants more than the share: 20 % above what the bucket passes (the rest waits or is dropped). */
const saturating = (gw: TestGateway): number => gw.rate() * 1.2;

async function run(gws: readonly TestGateway[], rounds: number, offered: (gw: TestGateway) => number = saturating): Promise<void> {
  for (let r = 0; r < rounds; r++) for (const gw of gws) await gw.interval(offered(gw));
}

const total = (gws: readonly TestGateway[]): number => gws.reduce((sum, gw) => sum + gw.rate(), 0);

describe('RateLeases (lease client, real redis-server)', () => {
  let gws: TestGateway[] = [];

  beforeAll(async () => {
    server = await startTestRedis();
  });
  afterAll(async () => {
    await server.dispose();
  });
  beforeEach(async () => {
    for (const gw of gws) await gw.redis.close();
    gws = [];
    const flush = new FleetRedis({ redisUrl: server.url, keyPrefix: 'qgt:' });
    await flush.connect();
    await flush.commands.flushall();
    await flush.close();
  });

  async function fleet(n: number): Promise<TestGateway[]> {
    gws = Array.from({ length: n }, (_, i) => new TestGateway(`gw${i + 1}`));
    await Promise.all(gws.map((gw) => gw.redis.connect()));
    for (const gw of gws) gw.connect();
    return gws;
  }

  it('one gateway: the whole limit after the first round (fallback share before it)', async () => {
    const [gw1] = await fleet(1);
    expect(gw1!.rate()).toBe(L / 2);
    await run(gws, 1);
    expect(gw1!.rate()).toBe(L);
  });

  it('two and three saturated gateways: the buckets add up to the limit, evenly', async () => {
    for (const n of [2, 3]) {
      for (const gw of gws) await gw.redis.close();
      await fleet(n);
      await run(gws, 10);
      expect(Math.abs(total(gws) / L - 1)).toBeLessThan(0.001);
      for (const gw of gws) expect(gw.rate() / (L / n)).toBeCloseTo(1, 2);
    }
  });

  it('shares follow offered load, not what each bucket let through', async () => {
    const [gw1, gw2] = await fleet(2);
    await run(gws, 10);
    // gw1's user stops; gw2's user keeps offering more than its share. gw1's demand decays (a peak losing
    // 15 % a round), so its share moves to gw2 within about 2 s.
    await run(gws, 25, (gw) => (gw === gw1 ? 0 : saturating(gw)));
    expect(gw2!.rate() / L).toBeGreaterThan(0.98);
    // gw1's user comes back with a full load: it grows back to half by offering more than its bucket passes.
    await run(gws, 10);
    expect(gw1!.rate() / L).toBeCloseTo(0.5, 2);
    expect(Math.abs(total(gws) / L - 1)).toBeLessThan(0.001);
  });

  it('a user leaving a gateway releases its share at once; a gateway that stops renewing loses it after the lease time', async () => {
    const [gw1, gw2, gw3] = await fleet(3);
    await run(gws, 10);
    gw1!.registry.remove('gw1-c1');
    await run([gw1!, gw2!, gw3!], 2);
    expect((gw2!.rate() + gw3!.rate()) / L).toBeCloseTo(1, 3);
    // gw3 goes silent (crashed): after its 400 ms lease gw2 gets everything.
    await new Promise((r) => setTimeout(r, 550));
    await run([gw2!], 1);
    expect(gw2!.rate()).toBe(L);
  });

  it('Redis down: every gateway at the fallback share at once, logged once; back up: shared limit again', async () => {
    const [gw1, gw2] = await fleet(2);
    await run(gws, 10);
    await server.stop();
    await waitUntil(() => gws.every((gw) => gw.redis.state === 'down'), 10_000, 'links down');
    await run(gws, 5);
    for (const gw of gws) {
      expect(gw.rate()).toBe(L * 0.5);
      expect(gw.leases.stats.state).toBe('fallback');
      expect(gw.leases.stats.roundsFailed).toBe(5);
      expect(gw.log.matching('fleet rate leases failing')).toHaveLength(1);
    }
    expect(total(gws)).toBe(L);
    await server.start();
    await waitUntil(() => gws.every((gw) => gw.redis.state === 'up'), 15_000, 'links up');
    await run(gws, 10);
    // Redis came back empty (no persistence): the shares are rebuilt from demand, no lease counted twice.
    expect(Math.abs(total(gws) / L - 1)).toBeLessThan(0.001);
    expect(gw1!.rate() / gw2!.rate()).toBeCloseTo(1, 1);
    for (const gw of gws) {
      expect(gw.leases.stats.state).toBe('shared');
      expect(gw.log.matching('fleet rate leases restored')).toHaveLength(1);
    }
  });

  it('many users in one round, one round trip; stop() releases every lease', async () => {
    const [gw1] = await fleet(1);
    for (let i = 0; i < 1200; i++) gw1!.connect(`u${i}`, `c-u${i}`);
    const latencies: number[] = [];
    gw1!.leases.onRound((seconds, ok) => ok && latencies.push(seconds));
    await gw1!.interval(0);
    expect(gw1!.leases.stats.users).toBe(1201);
    expect(gw1!.rate('u1199')).toBe(L);
    expect(latencies).toHaveLength(1);
    await gw1!.leases.stop();
    const probe = new FleetRedis({ redisUrl: server.url, keyPrefix: 'qgt:' });
    await probe.connect();
    expect(await probe.commands.hexists('qgt:rate:u7', 't:gw1')).toBe(0);
    await probe.close();
  });

  it('the timer runs rounds every interval and skips a tick while a round is in flight', async () => {
    const [gw1] = await fleet(1);
    gw1!.leases.start();
    gw1!.clock.advance(INTERVAL);
    gw1!.clock.advance(INTERVAL); // the first round has not answered yet
    expect(gw1!.leases.stats.roundsSkipped).toBe(1);
    await waitUntil(() => gw1!.leases.stats.roundsOk === 1, 5_000, 'first round');
    expect(gw1!.rate()).toBe(L);
    await gw1!.leases.stop();
  });
});
