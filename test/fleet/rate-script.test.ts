/**
 * The rate-lease Lua script on a real redis-server: several gateway ids in one process call it as the fleet's
 * gateways would. Shares add up to the limit, follow demand, expire when a gateway stops renewing, and the
 * newest limit change wins.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { leaseRound, USERS_PER_CALL, type LeaseGrant } from '../../src/fleet/rate-script.js';
import { startTestRedis, type TestRedis } from '../support/redis-server.js';

const L = 2_500_000; // 20 Mbit/s in bytes/s
const TTL = 400;
const KEY_TTL = 60_000;

let server: TestRedis;
let redis: Redis;

async function lease(gw: string, limit: number, demand: number, key = 'qgt:rate:alice'): Promise<LeaseGrant> {
  const [grant] = await leaseRound(redis, gw, TTL, KEY_TTL, [{ key, limit, demand }]);
  return grant!;
}

/** Rounds of every gateway in turn, each renewing with `demand(gw, lastGrant)`; returns the last grants. */
async function rounds(gws: readonly string[], count: number, demand: (gw: string, grant: number) => number, limit = L): Promise<Map<string, number>> {
  const grants = new Map<string, number>(gws.map((g) => [g, 0]));
  for (let r = 0; r < count; r++) {
    for (const gw of gws) grants.set(gw, (await lease(gw, limit, demand(gw, grants.get(gw)!))).grant);
  }
  return grants;
}

const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
/** A user who wants more than any share: offers what the bucket passes plus what it queues and drops. */
const saturated = (_gw: string, grant: number): number => Math.max(grant, 100_000) * 1.2;

describe('rate-lease script (real redis-server)', () => {
  beforeAll(async () => {
    server = await startTestRedis();
    redis = new Redis(server.url, { lazyConnect: true });
    await redis.connect();
  });
  afterAll(async () => {
    redis.disconnect();
    await server.dispose();
  });
  beforeEach(async () => {
    await redis.flushall();
  });

  it('one gateway alone gets the whole limit', async () => {
    expect((await lease('gw1', L, 0)).grant).toBe(L);
    const grants = await rounds(['gw1'], 5, saturated);
    expect(grants.get('gw1')).toBe(L);
  });

  it('two and three saturated gateways split the limit evenly, the shares adding up to it', async () => {
    for (const gws of [['gw1', 'gw2'], ['gw1', 'gw2', 'gw3']]) {
      await redis.flushall();
      const grants = await rounds(gws, 10, saturated);
      expect(Math.abs(sum(grants) - L)).toBeLessThanOrEqual(gws.length);
      for (const g of gws) expect(grants.get(g)! / (L / gws.length)).toBeCloseTo(1, 2);
    }
  });

  it('follows demand: an app-limited gateway keeps a little headroom, the saturated one takes the rest; a dip of a round or two costs no share', async () => {
    const grants = await rounds(['gw1', 'gw2'], 10, saturated);
    expect(grants.get('gw1')! / L).toBeCloseTo(0.5, 2);
    // gw1's user now wants only 10 % of the limit; gw2's still wants everything.
    // Its demand is a peak decaying 15 % a round: the share follows within about 2 s (20 rounds of 100 ms).
    const early = await rounds(['gw1', 'gw2'], 3, (gw, grant) => (gw === 'gw1' ? 0.1 * L : saturated(gw, grant)));
    expect(early.get('gw1')! / L).toBeGreaterThan(0.4);
    const shifted = await rounds(['gw1', 'gw2'], 17, (gw, grant) => (gw === 'gw1' ? 0.1 * L : saturated(gw, grant)));
    expect(shifted.get('gw1')! / L).toBeCloseTo(0.13, 2);
    expect(shifted.get('gw2')! / L).toBeCloseTo(0.87, 2);
    // A TCP flow on gw2 that backs off to 60 % for two rounds (a loss) keeps nearly all of its share (0.87; a
    // share sized by the dip alone would be 1.3 × 0.6 × 0.87 = 0.68).
    const dip = await rounds(['gw1', 'gw2'], 2, (gw, grant) => (gw === 'gw1' ? 0.1 * L : 0.6 * grant));
    expect(dip.get('gw2')! / L).toBeGreaterThan(0.84);
    await rounds(['gw1', 'gw2'], 2, (gw, grant) => (gw === 'gw1' ? 0.1 * L : saturated(gw, grant)));
    // And back: gw1's user wants everything again; it grows back to half within a few rounds.
    const back = await rounds(['gw1', 'gw2'], 6, saturated);
    expect(back.get('gw1')! / L).toBeCloseTo(0.5, 2);
  });

  it('while demand jumps about, the shares the gateways hold never add up to more than the limit (1 % floors aside)', async () => {
    let state = 12345;
    const random = (): number => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const gws = ['gw1', 'gw2', 'gw3'];
    const held = new Map(gws.map((g) => [g, 0]));
    let worst = 0;
    for (let step = 0; step < 300; step++) {
      const gw = gws[Math.floor(random() * 3)]!;
      const r = random();
      const demand = r < 0.3 ? 0 : r < 0.6 ? random() * L : saturated(gw, held.get(gw)!);
      held.set(gw, (await lease(gw, L, demand)).grant);
      worst = Math.max(worst, sum(held) / L);
    }
    expect(worst).toBeLessThanOrEqual(1.03);
  });

  it('ack-clocked flows (TCP offers about what it is let through, ±30 %, now and then a loss): the held shares stay near the limit', async () => {
    let state = 99;
    const random = (): number => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    for (const gws of [['gw1', 'gw2'], ['gw1', 'gw2', 'gw3']]) {
      await redis.flushall();
      const held = new Map(gws.map((g) => [g, L / gws.length]));
      let total = 0;
      let samples = 0;
      for (let r = 0; r < 200; r++) {
        for (const gw of gws) {
          const demand = held.get(gw)! * (0.7 + 0.6 * random()) * (random() < 0.1 ? 0.6 : 1);
          held.set(gw, (await lease(gw, L, demand)).grant);
          if (r >= 20) {
            total += sum(held) / L;
            samples++;
          }
        }
      }
      // Measured 0.9957 (two) and 0.9978 (three) with this seed.
      expect(total / samples).toBeGreaterThan(0.99);
      for (const g of gws) expect(held.get(g)! / (L / gws.length)).toBeGreaterThan(0.7);
    }
  });

  it('an idle gateway keeps a 1 % floor, so the busy one moves at least 0.99 of the limit', async () => {
    const grants = await rounds(['gw1', 'gw2'], 30, (gw, grant) => (gw === 'gw1' ? 0 : saturated(gw, grant)));
    expect(grants.get('gw1')! / L).toBeCloseTo(0.01, 3);
    expect(grants.get('gw2')! / L).toBeCloseTo(0.99, 3);
  });

  it('a gateway that stops renewing loses its share after the lease time', async () => {
    await rounds(['gw1', 'gw2'], 10, saturated);
    expect((await lease('gw2', L, saturated('gw2', L / 2))).grant / L).toBeCloseTo(0.5, 2);
    await new Promise((r) => setTimeout(r, TTL + 150));
    // gw1 is gone: its fields are removed and gw2 gets everything.
    expect((await lease('gw2', L, saturated('gw2', L / 2))).grant).toBe(L);
    expect(await redis.hexists('qgt:rate:alice', 't:gw1')).toBe(0);
  });

  it('a release gives the share to the others at once', async () => {
    await rounds(['gw1', 'gw2'], 10, saturated);
    expect(await lease('gw1', 0, 0)).toEqual({ grant: 0, limit: 0 });
    expect((await lease('gw2', L, L)).grant).toBe(L);
  });

  it('a limit changed on one gateway becomes the fleet limit; a gateway new to the user adopts it', async () => {
    await rounds(['gw1', 'gw2'], 5, saturated);
    // gw1's config now says 10 Mbit/s; gw2 still reports 20 but has not changed, so it follows.
    const half = L / 2;
    // gw1 takes its part of the new limit at once (gw2's half of the old one counts as half of the new one).
    expect(await lease('gw1', half, half)).toEqual({ grant: half / 2, limit: half });
    const gw2 = await lease('gw2', L, L);
    expect(gw2.limit).toBe(half);
    const after = await rounds(['gw1', 'gw2'], 8, (gw, grant) => saturated(gw, grant), half);
    expect(sum(after) / half).toBeCloseTo(1, 3);
    // A third gateway joining with the old 20 Mbit/s in its config adopts the fleet's 10.
    expect((await lease('gw3', L, 0)).limit).toBe(half);
  });

  it('a gateway that was away from the user and changed its limit meanwhile sets it on its return', async () => {
    await rounds(['gw1', 'gw2'], 3, saturated);
    await lease('gw1', 0, 0); // alice left gw1
    // gw1 reloads alice's limit to 30 Mbit/s while she is away; she comes back through gw1.
    expect((await lease('gw1', 3_750_000, 0)).limit).toBe(3_750_000);
  });

  it('one round renews many users in one pipeline, more than one script call', async () => {
    const n = USERS_PER_CALL * 2 + 7;
    const requests = Array.from({ length: n }, (_, i) => ({ key: `qgt:rate:u${i}`, limit: 1000 + i, demand: 0 }));
    const grants = await leaseRound(redis, 'gw1', TTL, KEY_TTL, requests);
    expect(grants).toHaveLength(n);
    expect(grants.every((g, i) => g.grant === 1000 + i && g.limit === 1000 + i)).toBe(true);
    const ttl = await redis.pttl('qgt:rate:u5');
    expect(ttl).toBeGreaterThan(KEY_TTL - 5_000);
  });
});
