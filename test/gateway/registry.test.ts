import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { AddressPool, type Allocation } from '../../src/gateway/pool.js';
import { UserRegistry, effectiveLimit, effectiveRate } from '../../src/gateway/registry.js';
import { defaultBurst } from '../../src/gateway/bucket.js';
import { userConfig } from '../support/config-fixture.js';

const limited = { bandwidth: 1_000_000, burst: 100_000 };
const unlimited = { bandwidth: null, burst: null };

/** Deterministic pseudo-random numbers (LCG), so a failing interleaving can be replayed by its seed. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

async function randomPause(random: () => number): Promise<void> {
  const steps = Math.floor(random() * 4);
  for (let i = 0; i < steps; i++) {
    if (random() < 0.5) await Promise.resolve();
    else await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

describe('effectiveLimit', () => {
  it("uses the user's resolved bandwidth (null = unlimited) with the user's burst", () => {
    expect(effectiveLimit(userConfig('a', { bandwidth: 5000, burst: 9000 }))).toEqual({ bandwidth: 5000, burst: 9000 });
    expect(effectiveLimit(userConfig('a'))).toEqual({ bandwidth: null, burst: null });
  });
});

describe('UserRegistry', () => {
  it("gives every connection of a user the very same bucket, used by both directions", () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    const first = registry.add('alice', 'c1', limited);
    const second = registry.add('alice', 'c2', { bandwidth: 5, burst: 5 }); // ignored: the bucket exists
    expect(first).not.toBeNull();
    expect(second).toBe(first);
    expect(second?.rate).toBe(1_000_000);
    // Inbound on one connection and outbound on the other drain one balance.
    let sent = 0;
    for (let i = 0; ; i++) {
      const bucket = i % 2 === 0 ? first! : second!;
      if (!bucket.tryConsume(1000)) break;
      sent += 1000;
    }
    expect(sent).toBe(100_000);
    expect(registry.add('bob', 'c3', limited)).not.toBe(first);
  });

  it('gives unlimited users no bucket', () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    expect(registry.add('carol', 'c1', unlimited)).toBeNull();
    expect(registry.bucketOf('carol')).toBeNull();
    expect(registry.connectionsOf('carol').size).toBe(1);
  });

  it('drops the bucket with the last connection, and a later connection gets a fresh one', () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    const bucket = registry.add('alice', 'c1', limited);
    registry.add('alice', 'c2', limited);
    expect(registry.remove('c1')).toEqual({ user: 'alice', lastOfUser: false });
    expect(registry.bucketOf('alice')).toBe(bucket);
    expect(registry.remove('c2')).toEqual({ user: 'alice', lastOfUser: true });
    expect(registry.bucketOf('alice')).toBeNull();
    expect(registry.has('alice')).toBe(false);
    expect(registry.bucketCount).toBe(0);
    const again = registry.add('alice', 'c3', limited);
    expect(again).not.toBe(bucket);
  });

  it('removing an unknown connection or user is a no-op', () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    registry.add('alice', 'c1', limited);
    expect(registry.remove('nope')).toBeNull();
    expect(registry.removeUser('nobody')).toEqual([]);
    expect(registry.remove('c1')).not.toBeNull();
    expect(registry.remove('c1')).toBeNull();
    expect(registry.connectionCount).toBe(0);
  });

  it('adding the same connection id twice changes nothing', () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    const bucket = registry.add('alice', 'c1', limited);
    expect(registry.add('alice', 'c1', limited)).toBe(bucket);
    expect(registry.connectionCount).toBe(1);
  });

  it('removeUser drops all of a user\'s connections and the bucket', () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    registry.add('alice', 'c1', limited);
    registry.add('alice', 'c2', limited);
    registry.add('bob', 'c3', limited);
    expect(registry.removeUser('alice').sort()).toEqual(['c1', 'c2']);
    expect(registry.userOfConnection('c1')).toBeUndefined();
    expect(registry.userCount).toBe(1);
    expect(registry.bucketCount).toBe(1);
  });

  it('setUserLimit changes a live bucket in place, or creates/drops it', () => {
    const clock = new FakeClock();
    const registry = new UserRegistry({ clock });
    const bucket = registry.add('alice', 'c1', limited)!;
    bucket.consume(100_000);
    expect(registry.setUserLimit('alice', 2_000_000, null)).toBe(bucket);
    expect(bucket.rate).toBe(2_000_000);
    expect(bucket.burst).toBe(defaultBurst(2_000_000));
    expect(bucket.available()).toBe(0); // not reset
    expect(registry.setUserLimit('alice', null, null)).toBeNull();
    expect(registry.bucketOf('alice')).toBeNull();
    const fresh = registry.setUserLimit('alice', 500_000, 50_000);
    expect(fresh).not.toBeNull();
    expect(fresh).not.toBe(bucket);
    expect(registry.bucketOf('alice')).toBe(fresh);
    expect(fresh?.rate).toBe(500_000);
    expect(registry.setUserLimit('nobody', 1000, null)).toBeNull();
    expect(registry.has('nobody')).toBe(false);
  });

  it('shaping (fair | fifo) goes on every bucket made and, on setShaping, on every live one', () => {
    const registry = new UserRegistry({ clock: new FakeClock(), shaping: 'fifo' });
    const alice = registry.add('alice', 'c1', limited)!;
    expect(alice.fair).toBe(false);
    registry.setShaping('fair');
    expect([alice.fair, registry.add('bob', 'c2', limited)!.fair]).toEqual([true, true]);
    expect(new UserRegistry().add('carol', 'c3', limited)!.fair).toBe(true); // the default
  });

  it('20 connections over 5 users, added and removed concurrently, leave nothing behind', async () => {
    for (const seed of [1, 2, 3, 42, 2026]) {
      const random = lcg(seed);
      const clock = new FakeClock();
      const registry = new UserRegistry({ clock });
      const pool = new AddressPool({
        networks: {
          ipv4: { cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
          ipv6: { cidr: '2001:db8:1::/64', gateway: '2001:db8:1::1' },
        },
        users: [],
      });
      const users = ['u0', 'u1', 'u2', 'u3', 'u4'];
      const limitOf = (user: string) => (Number(user.slice(1)) % 2 === 0 ? limited : unlimited); // u0, u2, u4 limited
      let bothOpen = 0;
      const connection = async (i: number): Promise<void> => {
        const user = users[i % users.length]!;
        await randomPause(random);
        const addresses: Allocation = pool.allocate(user);
        await randomPause(random);
        const bucket = registry.add(user, `conn-${i}`, limitOf(user));
        if (registry.connectionsOf(user).size > 1) {
          bothOpen++;
          expect(registry.bucketOf(user)).toBe(bucket); // identity while shared
        }
        expect(bucket === null).toBe(limitOf(user).bandwidth === null);
        await randomPause(random);
        registry.remove(`conn-${i}`);
        await randomPause(random);
        pool.release(addresses);
      };
      await Promise.all(Array.from({ length: 20 }, (_, i) => connection(i)));
      expect(bothOpen).toBeGreaterThan(0); // the interleaving did overlap connections of one user
      expect(registry.connectionCount).toBe(0);
      expect(registry.userCount).toBe(0);
      expect(registry.bucketCount).toBe(0);
      for (const user of users) expect(registry.bucketOf(user)).toBeNull();
      expect(pool.stats().ipv4?.inUse).toBe(0);
      expect(pool.stats().ipv6?.inUse).toBe(0);
      expect(pool.freeCount()).toBe(253);
    }
  });
});

describe('UserRegistry effective rate (configured limit capped by the rate cap)', () => {
  it('computes the effective limit in one place: the lower of the two, the cap with the default depth', () => {
    expect(effectiveRate(limited, null)).toEqual(limited);
    expect(effectiveRate(limited, 50_000)).toEqual({ bandwidth: 50_000, burst: null });
    expect(effectiveRate(limited, 2_000_000)).toEqual(limited);
    expect(effectiveRate(unlimited, 50_000)).toEqual({ bandwidth: 50_000, burst: null });
  });

  it('keeps a cap through configured-limit changes and for users who connect later; lifting it restores the configured limit', () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    registry.setRateCap('carol', 50_000); // offline
    const bucket = registry.add('carol', 'c1', limited);
    expect(bucket?.rate).toBe(50_000);
    expect(registry.setUserLimit('carol', 2_000_000, null)).toBe(bucket);
    expect(bucket?.rate).toBe(50_000);
    expect(registry.setUserLimit('carol', null, null)?.rate).toBe(50_000); // unlimited, still capped
    expect(registry.setRateCap('carol', null)).toBeNull(); // configured: unlimited
    expect(registry.setUserLimit('carol', 1_000_000, 100_000)?.burst).toBe(100_000);
    registry.remove('c1');
    expect(registry.rateCapOf('carol')).toBeNull();
  });
});
