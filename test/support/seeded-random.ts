/**
 * A seeded source of numbers in [0, 1) for tests that need the same draws on every run, so a failing run can be
 * repeated with its seed (mulberry32; written by hand because fast-check's arbitraries bias towards edge
 * values, and a uniform stream is wanted here).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
