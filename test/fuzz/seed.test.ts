/** The property tests run from a known seed (test/support/fc-seed.ts): the same run twice, whatever the clock. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_FC_SEED } from '../support/fc-seed.js';

describe('fast-check seed', () => {
  it('is FC_SEED when set, else the fixed default, for every property', () => {
    const expected = process.env.FC_SEED ? Number(process.env.FC_SEED) : DEFAULT_FC_SEED;
    expect(fc.readConfigureGlobal().seed).toBe(expected);
  });

  it('makes a property draw the same values on every run', () => {
    const draw = (): number[] => {
      const seen: number[] = [];
      fc.assert(fc.property(fc.integer(), (n) => void seen.push(n)), { numRuns: 20 });
      return seen;
    };
    const first = draw();
    expect(draw()).toEqual(first);
    expect(new Set(first).size).toBeGreaterThan(1);
  });
});
