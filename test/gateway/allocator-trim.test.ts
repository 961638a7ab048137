import { describe, expect, it } from 'vitest';
import { FakeClock, type Clock } from '../../src/clock.js';
import { AllocatorTrimmer } from '../../src/gateway/allocator-trim.js';
import type { NativeMallocStats, ResidentMemory } from '../../src/gateway/native-memory.js';
import { captureLog } from '../support/log-capture.js';

const MiB = 1024 * 1024;

/** An allocator double: in-use bytes set by the test, trims counted, resident anon falls by what was freed. */
function allocator(): { inUse: number; trims: number; anon: number; stats: () => NativeMallocStats; trim: () => boolean; resident: () => ResidentMemory } {
  const a = {
    inUse: 20 * MiB,
    trims: 0,
    anon: 100 * MiB,
    stats: (): NativeMallocStats => ({ inUse: a.inUse, free: 0, mmapped: 0, arenaBytes: 0, topReleasable: 0, arenas: 4 }),
    trim: (): boolean => {
      a.trims++;
      a.anon -= 10 * MiB;
      return true;
    },
    resident: (): ResidentMemory => ({ rss: a.anon + 50 * MiB, anon: a.anon, file: 50 * MiB }),
  };
  return a;
}

describe('AllocatorTrimmer', () => {
  it('trims once in-use bytes fell by the threshold from their peak, and not again before the gap', () => {
    const clock = new FakeClock();
    const log = captureLog();
    const a = allocator();
    const trimmer = new AllocatorTrimmer({ thresholdBytes: 32 * MiB, clock, logger: log.logger, intervalMs: 5000, minGapMs: 30_000, ...a });
    trimmer.start();

    a.inUse = 120 * MiB; // a flood: 1,000 connections with TLS and HTTP/2 state
    clock.advance(5000);
    a.inUse = 100 * MiB; // falling, not yet by 32 MiB
    clock.advance(5000);
    expect(a.trims).toBe(0);
    a.inUse = 21 * MiB; // the flood is over
    clock.advance(5000);
    expect(a.trims).toBe(1);
    expect(trimmer.stats).toEqual({ trims: 1, releasedBytes: 10 * MiB });
    expect(log.matching('malloc_trim')).toMatchObject([{ freedBytes: 99 * MiB, releasedBytes: 10 * MiB, mallocInUseBytes: 21 * MiB }]);

    // A second flood right after: its fall waits for the gap (30 s from the first trim), then trims.
    a.inUse = 90 * MiB;
    clock.advance(5000);
    a.inUse = 22 * MiB;
    clock.advance(5000);
    expect(a.trims).toBe(1);
    clock.advance(20_000);
    expect(a.trims).toBe(2);

    // Quiet: in-use steady, no trims.
    clock.advance(120_000);
    expect(a.trims).toBe(2);
    trimmer.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('samples less often when a sample is dear (1,000 times its cost, at least the interval)', () => {
    const fake = new FakeClock();
    let skew = 0;
    const clock: Clock = { now: () => fake.now() + skew, wallNow: () => fake.wallNow(), setTimeout: (fn, ms) => fake.setTimeout(fn, ms), setInterval: (fn, ms) => fake.setInterval(fn, ms) };
    const a = allocator();
    let samples = 0;
    const stats = (): NativeMallocStats => {
      samples++;
      skew += 20; // a fragmented heap: mallinfo2 takes 20 ms
      return a.stats();
    };
    const trimmer = new AllocatorTrimmer({ thresholdBytes: 32 * MiB, clock, logger: captureLog().logger, intervalMs: 5000, stats, trim: a.trim, resident: a.resident });
    trimmer.start();
    expect(samples).toBe(1); // the check at start
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
