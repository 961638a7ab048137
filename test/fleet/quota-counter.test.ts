import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { FleetQuotaCounter } from '../../src/fleet/quota-counter.js';
import { FleetRedis } from '../../src/fleet/redis.js';
import { QuotaEnforcer } from '../../src/gateway/quota.js';
import { serverConfig, sessionLimits } from '../support/config-fixture.js';
import { silentLogger } from '../../src/log.js';
import { startTestRedis, waitUntil, type TestRedis } from '../support/redis-server.js';
import { fleetConfig, passwordUsers, startTestGateway, type TestGateway } from './fleet-harness.js';

let redis: TestRedis;
let prefixSeq = 0;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis.dispose();
});
afterEach(async () => {
  for (const close of closers.splice(0)) await close().catch(() => undefined);
});

async function counters(n: number): Promise<{ counters: FleetQuotaCounter[]; links: FleetRedis[]; prefix: string }> {
  const prefix = `qgq${++prefixSeq}:`;
  const links: FleetRedis[] = [];
  const list: FleetQuotaCounter[] = [];
  for (let i = 0; i < n; i++) {
    const link = new FleetRedis({ redisUrl: redis.url, keyPrefix: prefix }, { maxRetryDelayMs: 100 });
    await link.connect();
    closers.push(() => link.close());
    links.push(link);
    list.push(new FleetQuotaCounter({ redis: link, gatewayId: `gw${i}`, logger: silentLogger() }));
  }
  return { counters: list, links, prefix };
}

const watch = (localUsed: number) => [{ user: 'alice', periodKey: '2026-12-07', localUsed }];

describe('FleetQuotaCounter (real redis-server)', () => {
  it('sums the bytes of every gateway; each sees the fleet total', async () => {
    const { counters: [a, b] } = await counters(2);
    a!.add('alice', '2026-12-07', 300);
    b!.add('alice', '2026-12-07', 500);
    a!.flush(watch(300));
    b!.flush(watch(500));
    await waitUntil(() => a!.flushCount === 1 && b!.flushCount === 1, 5_000, 'both flushed');
    // Whichever flushed first seeded the counter with what it knew before its own bytes (0).
    a!.flush(watch(300));
    await waitUntil(() => a!.flushCount === 2, 5_000, 'a read again');
    expect(a!.used('alice', '2026-12-07')).toBe(800);
    expect(b!.used('alice', '2026-12-07')! <= 800).toBe(true);
    a!.add('alice', '2026-12-07', 50);
    expect(a!.used('alice', '2026-12-07')).toBe(850);
  });

  it('buffers while Redis is down and counts every byte once when it returns', async () => {
    const { counters: [a], links: [link], prefix } = await counters(1);
    a!.add('alice', '2026-12-07', 100);
    a!.flush(watch(100));
    await waitUntil(() => a!.flushCount === 1, 5_000, 'first flush');
    await redis.stop();
    await waitUntil(() => link!.state === 'down', 10_000, 'link down');
    a!.add('alice', '2026-12-07', 40);
    a!.flush(watch(140));
    await waitUntil(() => a!.degraded, 5_000, 'flush failed');
    a!.add('alice', '2026-12-07', 2);
    a!.flush(watch(142));
    expect(a!.used('alice', '2026-12-07')).toBe(142);
    await redis.start();
    await waitUntil(() => link!.state === 'up', 15_000, 'link up');
    // Redis came back empty (no persistence): the retried batch seeds the counter with what this gateway knew
    // before it (100) and adds its 40; the next batch adds the 2 counted meanwhile.
    for (let i = 0; i < 50 && !(a!.flushCount >= 3 && !a!.degraded); i++) {
      a!.flush(watch(142));
      await new Promise((r) => setTimeout(r, 50));
    }
    const probe = new FleetRedis({ redisUrl: redis.url, keyPrefix: prefix });
    await probe.connect();
    closers.push(() => probe.close());
    expect(await probe.commands.get(`${prefix}quota:alice:2026-12-07`)).toBe('142');
    expect(a!.used('alice', '2026-12-07')).toBe(142);
  });
});

describe('QuotaEnforcer with the fleet counter', () => {
  it('disconnects the user on every gateway when the quota is spent across them', async () => {
    const fleet = fleetConfig(redis.url, `qgqe${++prefixSeq}:`);
    const users = await passwordUsers(['alice'], { quota: { bytes: 1000, period: 'day', action: 'disconnect', throttleRate: null } });
    const gws: TestGateway[] = [];
    const enforcers: QuotaEnforcer[] = [];
    for (const id of ['a', 'b']) {
      const gw = await startTestGateway(id, fleet, { limits: sessionLimits(), users });
      closers.push(() => gw.stop());
      gws.push(gw);
      const config = serverConfig({ users, fleet, gatewayId: id });
      const enforcer = new QuotaEnforcer({
        sessions: gw.sessions,
        registry: gw.sessions.registry,
        config: () => config,
        history: null,
        clock: systemClock,
        logger: gw.log.logger,
        shared: new FleetQuotaCounter({ redis: gw.redis, gatewayId: id, logger: gw.log.logger }),
      });
      gw.sessions.setAdmissionCheck(enforcer.admissionCheck);
      enforcers.push(enforcer);
      closers.push(async () => enforcer.stop());
    }
    const onA = (await gws[0]!.connect('alice')).session!;
    const onB = (await gws[1]!.connect('alice')).session!;
    onA.counters.bytesIn = 600;
    onB.counters.bytesOut = 600;
    // Each alone is under 1000; together they are over: within a few ticks both gateways disconnect alice.
    await waitUntil(
      () => {
        for (const e of enforcers) e.tick();
        return onA.state.kind === 'closed' && onB.state.kind === 'closed';
      },
      5_000,
      'alice disconnected on both gateways',
    );
    expect(gws.map((g) => g.ended.map((e) => e.reason))).toEqual([['quota_exceeded'], ['quota_exceeded']]);
    expect((await gws[1]!.connect('alice')).result).toMatchObject({ ok: false, code: 'quota_exceeded' });
  });
});
