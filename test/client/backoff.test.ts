import { describe, expect, it } from 'vitest';
import { Backoff } from '../../src/client/backoff.js';

describe('Backoff', () => {
  it('grows exponentially with jitter within [ceiling/2, ceiling] and caps at max', () => {
    const low = new Backoff({ initialMs: 1000, maxMs: 60_000, maxAttempts: null, random: () => 0 });
    const high = new Backoff({ initialMs: 1000, maxMs: 60_000, maxAttempts: null, random: () => 0.999999 });
    const lows = Array.from({ length: 10 }, () => low.next());
    const highs = Array.from({ length: 10 }, () => high.next());
    expect(lows.slice(0, 4)).toEqual([500, 1000, 2000, 4000]);
    expect(highs[0]).toBeCloseTo(1000, 0);
    expect(highs[3]).toBeCloseTo(8000, 0);
    expect(Math.max(...highs)).toBeLessThanOrEqual(60_000);
    expect(highs[9]).toBeCloseTo(60_000, 0);
    expect(lows[9]).toBe(30_000);
  });

  it('counts attempts, resets, and is exhausted at maxAttempts', () => {
    const b = new Backoff({ initialMs: 10, maxMs: 100, maxAttempts: 3 });
    expect(b.exhausted).toBe(false);
    b.next();
    b.next();
    b.next();
    expect(b.attempts).toBe(3);
    expect(b.exhausted).toBe(true);
    b.reset();
    expect(b.exhausted).toBe(false);
    expect(b.attempts).toBe(0);
  });
});
