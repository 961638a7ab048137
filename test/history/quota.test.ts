import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { periodKey } from '../../src/history/quota.js';

describe('periodKey', () => {
  it('formats UTC day and month keys', () => {
    const t = Date.UTC(2026, 10, 23, 23, 59, 59, 999);
    expect(periodKey('day', t)).toBe('2026-11-23');
    expect(periodKey('month', t)).toBe('2026-11');
    expect(periodKey('day', t + 1)).toBe('2026-11-24');
    expect(periodKey('month', Date.UTC(2026, 11, 31, 23, 59, 59, 999) + 1)).toBe('2027-01');
  });

  it('day keys sort like time and start with the month key', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4_000_000_000_000 }), fc.integer({ min: 0, max: 10_000_000_000 }), (a, d) => {
        const ka = periodKey('day', a);
        const kb = periodKey('day', a + d);
        expect(ka <= kb).toBe(true);
        expect(ka.startsWith(periodKey('month', a))).toBe(true);
        expect(ka).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      }),
    );
  });
});
