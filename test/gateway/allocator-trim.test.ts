import { describe, expect, it } from 'vitest';
import { FakeClock, type Clock } from '../../src/clock.js';
import { AllocatorTrimmer } from '../../src/gateway/allocator-trim.js';
import type { NativeMallocStats } from '../../src/gateway/native-memory.js';
import { captureLog } from '../support/log-capture.js';

const MiB = 1024 * 1024;

/**
 * A process double: resident anonymous memory = V8 heap + malloc in use + what the allocator keeps free
 * (`kept`, plus 4 MiB of stacks and such); a trim gives `kept` back.
 */
function processDouble() {
  const p = {
    heap: 30 * MiB,
    inUse: 13 * MiB,
    kept: 0,
    trims: 0,
    stats: (): NativeMallocStats => ({ inUse: p.inUse, free: p.kept, mmapped: 0, arenaBytes: 0, topReleasable: 0, arenas: -1 }),
    trim: (): boolean => {
      p.trims++;
      p.kept = 0;
      return true;
    },
    anonResident: (): number => p.heap + p.inUse + p.kept + 4 * MiB,
    heapResident: (): number => p.heap,
  };
  return p;
}

describe('AllocatorTrimmer', () => {
  it('trims once the freed memory kept resident grew by the threshold, not for live memory, and not again before the gap', () => {
    const clock = new FakeClock();
    const log = captureLog();
    const p = processDouble();
    const trimmer = new AllocatorTrimmer({ thresholdBytes: 16 * MiB, clock, logger: log.logger, intervalMs: 5000, minGapMs: 10_000, ...p });
    trimmer.start();

    // A flood: live TLS and HTTP/2 state (in use) and V8 objects grow RSS, but nothing is kept yet.
    p.inUse += 60 * MiB;
    p.heap += 20 * MiB;
    clock.advance(5000);
    expect(p.trims).toBe(0);
    // It subsides: the state is freed and the allocator keeps it.
    p.inUse -= 60 * MiB;
    p.heap -= 20 * MiB;
    p.kept = 60 * MiB;
    clock.advance(5000);
    expect(p.trims).toBe(1);
    expect(trimmer.stats).toEqual({ trims: 1, releasedBytes: 60 * MiB });
    expect(log.matching('malloc_trim')).toMatchObject([{ retainedBytes: 60 * MiB + 4 * MiB, releasedBytes: 60 * MiB, mallocInUseBytes: 13 * MiB }]);

    // A second flood right after: kept again at once, but the trim waits for the gap (10 s from the first).
    p.kept = 40 * MiB;
    clock.advance(4000);
    expect(p.trims).toBe(1);
    clock.advance(6000);
    expect(p.trims).toBe(2);

    // Below the threshold, and live growth (many sessions): no trims.
    p.kept = 10 * MiB;
    p.inUse += 200 * MiB;
    clock.advance(120_000);
    expect(p.trims).toBe(2);
    trimmer.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('measures from the lowest level since the last trim, so memory given back by itself lowers the bar', () => {
    const clock = new FakeClock();
    const p = processDouble();
    p.kept = 30 * MiB; // at start the allocator already keeps 30 MiB
    const trimmer = new AllocatorTrimmer({ thresholdBytes: 16 * MiB, clock, logger: captureLog().logger, intervalMs: 5000, ...p });
    trimmer.start();
    clock.advance(5000);
    expect(p.trims).toBe(0);
    p.kept = 0; // returned (e.g. the top of the heap, by free itself)
    clock.advance(5000);
    p.kept = 20 * MiB;
    clock.advance(5000);
    expect(p.trims).toBe(1);
    trimmer.stop();
  });

  it('samples less often when a sample is dear (1,000 times its cost, at least the interval)', () => {
    const fake = new FakeClock();
    let skew = 0;
    const clock: Clock = { now: () => fake.now() + skew, wallNow: () => fake.wallNow(), setTimeout: (fn, ms) => fake.setTimeout(fn, ms), setInterval: (fn, ms) => fake.setInterval(fn, ms) };
    const p = processDouble();
    let samples = 0;
    const stats = (): NativeMallocStats => {
      samples++;
      skew += 20; // a fragmented heap: mallinfo2 takes 20 ms
      return p.stats();
    };
    const trimmer = new AllocatorTrimmer({ thresholdBytes: 16 * MiB, clock, logger: captureLog().logger, intervalMs: 5000, ...p, stats });
    trimmer.start();
    expect(samples).toBe(1); // the level at start
    fake.advance(60_000); // samples at 5 s, then every 20 s: 25 s, 45 s
    expect(samples).toBe(4);
    trimmer.stop();
    expect(fake.pendingTimers).toBe(0);
  });

  it('does nothing without allocator figures (no addon, not glibc), and says so once', () => {
    const clock = new FakeClock();
    const log = captureLog();
    let trims = 0;
    const trimmer = new AllocatorTrimmer({ thresholdBytes: MiB, clock, logger: log.logger, stats: () => null, trim: () => (trims++, true) });
    trimmer.start();
    clock.advance(60_000);
    expect(trims).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    expect(log.matching('not trimming')).toHaveLength(1);
  });
});
