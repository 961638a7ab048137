import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { AdmissionThrottle, sourceKey } from '../../src/gateway/admission.js';
import { captureLog } from '../support/log-capture.js';

const open: AdmissionThrottle[] = [];
function throttle(perSourcePerMinute: number, clock: FakeClock, log = captureLog()): AdmissionThrottle {
  const t = new AdmissionThrottle({ perSourcePerMinute, clock, logger: log.logger });
  open.push(t);
  return t;
}
afterEach(() => {
  for (const t of open.splice(0)) t.close();
});

async function attempts(t: AdmissionThrottle, source: string, n: number): Promise<boolean[]> {
  const results: boolean[] = [];
  for (let i = 0; i < n; i++) results.push(await t.admit(source));
  return results;
}

describe('sourceKey', () => {
  it('keys IPv4 by address (also IPv4-mapped) and IPv6 by /64', () => {
    expect(sourceKey('192.0.2.7')).toBe('192.0.2.7');
    expect(sourceKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(sourceKey('2001:db8:5:6:1:2:3:4')).toBe('2001:db8:5:6::/64');
    expect(sourceKey('2001:db8:5:6::99')).toBe('2001:db8:5:6::/64');
  });
});

describe('AdmissionThrottle', () => {
  it('admits the budget, then refuses at once, while other sources are unaffected', async () => {
    const clock = new FakeClock();
    const t = throttle(3, clock);
    expect(await attempts(t, '192.0.2.10', 3)).toEqual([true, true, true]);
    const started = performance.now();
    expect(await t.admit('192.0.2.10')).toBe(false);
    expect(performance.now() - started).toBeLessThan(500); // refused, not queued
    expect(await attempts(t, '192.0.2.11', 3)).toEqual([true, true, true]);
    expect(await t.admit('2001:db8:9::1')).toBe(true);
    expect(t.throttled).toBe(1);
  });

  it('counts concurrent attempts exactly', async () => {
    const t = throttle(5, new FakeClock());
    const results = await Promise.all(Array.from({ length: 12 }, () => t.admit('192.0.2.20')));
    expect(results.filter(Boolean)).toHaveLength(5);
  });

  it('treats addresses of one IPv6 /64 as one source', async () => {
    const t = throttle(2, new FakeClock());
    expect(await t.admit('2001:db8:7:1::1')).toBe(true);
    expect(await t.admit('2001:db8:7:1::2')).toBe(true);
    expect(await t.admit('2001:db8:7:1:ffff::3')).toBe(false);
    expect(await t.admit('2001:db8:7:2::1')).toBe(true);
  });

  it('refills the budget each window and forgets idle sources', async () => {
    const clock = new FakeClock();
    const t = throttle(2, clock);
    await attempts(t, '192.0.2.30', 2);
    await attempts(t, '192.0.2.31', 1);
    expect(await t.admit('192.0.2.30')).toBe(false);
    expect(t.trackedSources).toBe(2);
    clock.advance(60_000);
    expect(t.trackedSources).toBe(0);
    expect(await attempts(t, '192.0.2.30', 3)).toEqual([true, true, false]);
  });

  it('gives a successful attempt back: a source spends only failed attempts and those being checked', async () => {
    const clock = new FakeClock();
    const t = throttle(3, clock);
    // 20 users behind one NAT log in one after another: each attempt is admitted, then given back.
    for (let i = 0; i < 20; i++) {
      expect(await t.admit('192.0.2.40')).toBe(true);
      await t.succeeded('192.0.2.40');
    }
    // A guesser from there still runs dry after the budget.
    expect(await attempts(t, '192.0.2.40', 4)).toEqual([true, true, true, false]);
    // Giving back never raises the budget above its limit, and a burst of parallel attempts counts in full.
    await t.succeeded('192.0.2.40');
    await t.succeeded('192.0.2.40');
    await t.succeeded('192.0.2.40');
    await t.succeeded('192.0.2.40');
    const burst = await Promise.all(Array.from({ length: 6 }, () => t.admit('192.0.2.40')));
    expect(burst.filter(Boolean)).toHaveLength(3);
  });

  it('gives nothing back across a window, for an unknown source or with throttling off', async () => {
    const clock = new FakeClock();
    const t = throttle(2, clock);
    await attempts(t, '192.0.2.50', 2);
    clock.advance(60_000);
    await t.succeeded('192.0.2.50'); // the attempt belonged to the last window
    await t.succeeded('192.0.2.51');
    expect(t.trackedSources).toBe(0);
    expect(await attempts(t, '192.0.2.50', 3)).toEqual([true, true, false]);
    const off = throttle(0, clock);
    await off.succeeded('192.0.2.50');
    expect(off.trackedSources).toBe(0);
  });

  it('logs a throttled source once per window', async () => {
    const clock = new FakeClock();
    const log = captureLog();
    const t = throttle(1, clock, log);
    await attempts(t, '192.0.2.40', 6);
    await attempts(t, '192.0.2.41', 3);
    const lines = log.matching('too many connection attempts');
    expect(lines.map((l) => l.source).sort()).toEqual(['192.0.2.40', '192.0.2.41']);
    clock.advance(60_000);
    await attempts(t, '192.0.2.40', 4);
    expect(log.matching('too many connection attempts')).toHaveLength(3);
    expect(t.throttled).toBe(5 + 2 + 3);
  });

  it('a limit of 0 turns throttling off; setLimit applies from the next window', async () => {
    const clock = new FakeClock();
    const off = throttle(0, clock);
    expect((await attempts(off, '192.0.2.50', 50)).every(Boolean)).toBe(true);
    const t = throttle(1, clock);
    expect(await attempts(t, '192.0.2.51', 2)).toEqual([true, false]);
    t.setLimit(3);
    expect(await t.admit('192.0.2.51')).toBe(false);
    clock.advance(60_000);
    expect(await attempts(t, '192.0.2.51', 4)).toEqual([true, true, true, false]);
  });

  it('refuses a throttled source without the limiter, and marks it blocked once it was refused as often as its budget', async () => {
    const clock = new FakeClock();
    const t = throttle(3, clock);
    expect(await attempts(t, '192.0.2.60', 4)).toEqual([true, true, true, false]);
    // From now on the limiter is not asked (no promise chain, no BottleneckError per attempt).
    const group = (t as unknown as { group: { key(k: string): unknown } }).group;
    const key = group.key.bind(group);
    let limiterCalls = 0;
    group.key = (k: string) => (limiterCalls++, key(k));
    expect(t.isBlocked('192.0.2.60')).toBe(false);
    expect(await attempts(t, '192.0.2.60', 2)).toEqual([false, false]);
    expect(limiterCalls).toBe(0);
    expect(t.isBlocked('192.0.2.60')).toBe(true);
    expect(t.isBlocked('::ffff:192.0.2.60')).toBe(true);
    expect(t.isBlocked('192.0.2.61')).toBe(false);
    expect(t.throttled).toBe(3);
    clock.advance(60_000);
    expect(t.isBlocked('192.0.2.60')).toBe(false);
    expect(await t.admit('192.0.2.60')).toBe(true);
  });
});
