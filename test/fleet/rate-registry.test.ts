/**
 * The registry as the one owner of a user's rate in a fleet: the bucket runs at the granted share of the
 * effective limit (configured ∧ cap), at fallback_share of it without a grant, and a local change of limit or
 * cap holds at once; the bucket counts offered bytes (sent, queued and dropped) for the lease rounds.
 */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { defaultBurst } from '../../src/gateway/bucket.js';
import { newDropCounters } from '../../src/gateway/drops.js';
import { localRate, UserRegistry } from '../../src/gateway/registry.js';
import { shapeOrDrop, ShapingQueue } from '../../src/gateway/shaper.js';

const L = 1_000_000;

describe('localRate', () => {
  it('is the grant while there is one, else the fallback share; a configured burst shrinks with the share', () => {
    expect(localRate({ bandwidth: L, burst: 200_000 }, 250_000, 0.5)).toEqual({ bandwidth: 250_000, burst: 50_000 });
    expect(localRate({ bandwidth: L, burst: null }, -1, 0.5)).toEqual({ bandwidth: 500_000, burst: null });
    expect(localRate({ bandwidth: null, burst: null }, 123, 0.5)).toEqual({ bandwidth: null, burst: null });
    // A zero share is a bucket that passes (almost) nothing, never an invalid one.
    expect(localRate({ bandwidth: L, burst: null }, 0, 0.5).bandwidth).toBe(1);
  });
});

describe('UserRegistry in a fleet', () => {
  it('starts a user at the fallback share, then runs at the grant; clearFleetGrants goes back to the fallback', () => {
    const registry = new UserRegistry({ clock: new FakeClock(), fleetFallbackShare: 0.5 });
    const bucket = registry.add('alice', 'c1', { bandwidth: L, burst: null })!;
    expect(registry.inFleet).toBe(true);
    expect(bucket.rate).toBe(L / 2);
    expect(registry.setFleetGrant('alice', 300_000)).toBe(bucket);
    expect(bucket.rate).toBe(300_000);
    expect(bucket.burst).toBe(defaultBurst(300_000));
    registry.clearFleetGrants();
    expect(bucket.rate).toBe(L / 2);
    // A grant above the local limit (the fleet's limit was raised on another gateway) is taken as it is.
    registry.setFleetGrant('alice', 2 * L);
    expect(bucket.rate).toBe(2 * L);
  });

  it('a lower local limit or a quota cap holds at once, before the next lease round', () => {
    const registry = new UserRegistry({ clock: new FakeClock(), fleetFallbackShare: 0.5 });
    const bucket = registry.add('alice', 'c1', { bandwidth: L, burst: null })!;
    registry.setFleetGrant('alice', 900_000);
    registry.setRateCap('alice', 100_000);
    expect(bucket.rate).toBe(100_000);
    registry.setRateCap('alice', null);
    // The cap lifted: the clamped grant stays until the next round grants more.
    expect(bucket.rate).toBe(100_000);
    registry.setFleetGrant('alice', 600_000);
    expect(bucket.rate).toBe(600_000);
    registry.setUserLimit('alice', 400_000, null);
    expect(bucket.rate).toBe(400_000);
  });

  it('lists connected limited users with their effective limit for a lease round', () => {
    const registry = new UserRegistry({ clock: new FakeClock(), fleetFallbackShare: 0.5 });
    registry.add('alice', 'c1', { bandwidth: L, burst: null });
    registry.add('bob', 'c2', { bandwidth: null, burst: null });
    registry.add('carol', 'c3', { bandwidth: 2 * L, burst: null });
    registry.setRateCap('carol', 50_000);
    const views = [...registry.leaseViews()].map((v) => [v.user, v.limit]);
    expect(views).toEqual([
      ['alice', L],
      ['carol', 50_000],
    ]);
  });

  it('a gateway alone (no fleet) ignores grants: the bucket runs at the effective limit', () => {
    const registry = new UserRegistry({ clock: new FakeClock() });
    const bucket = registry.add('alice', 'c1', { bandwidth: L, burst: null })!;
    registry.setFleetGrant('alice', 10);
    expect(bucket.rate).toBe(L);
  });

  it('the bucket counts offered bytes once each: paid at once, or handed to shaping', () => {
    const clock = new FakeClock();
    const registry = new UserRegistry({ clock, fleetFallbackShare: 1 });
    const bucket = registry.add('alice', 'c1', { bandwidth: L, burst: 10_000 })!;
    expect(bucket.tryConsume(6000)).toBe(true);
    expect(bucket.tryConsume(6000)).toBe(false); // refused: not offered yet, the caller shapes it
    const sink = { send: () => undefined, flush: () => undefined };
    const queue = new ShapingQueue(clock, sink, 100);
    const data = Buffer.alloc(6000);
    data[0] = 0x45;
    shapeOrDrop(bucket, queue, data, 0, 6000, clock.now(), 100, newDropCounters());
    expect(bucket.takeOffered()).toBe(12_000);
    expect(bucket.takeOffered()).toBe(0);
  });
});
