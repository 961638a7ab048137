/**
 * Measures what a loop allocates on the JS heap: heap growth after a full GC, and how many collections ran
 * meanwhile (a loop that allocates even 16 bytes per call triggers several scavenges over 1e6 calls).
 */
import { GCProfiler, getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

export interface AllocationMeasurement {
  readonly heapDelta: number;
  readonly collections: number;
}

/** Warms `run` up (so it is optimized), then measures one call of `run(iterations)`. */
export function measureAllocation(run: (iterations: number) => unknown, iterations: number): AllocationMeasurement {
  for (let i = 0; i < 20; i++) run(10_000);
  gc();
  gc();
  const profiler = new GCProfiler();
  profiler.start();
  const before = process.memoryUsage().heapUsed;
  run(iterations);
  const after = process.memoryUsage().heapUsed;
  const result = profiler.stop();
  return { heapDelta: after - before, collections: result?.statistics.length ?? 0 };
}

/**
 * The quietest of `attempts` measurements. Something else in the test worker (the runner's own messages) can
 * set off a collection now and then; a loop that allocates per call sets one off in every attempt.
 */
export function measureAllocationQuietest(run: (iterations: number) => unknown, iterations: number, attempts = 3): AllocationMeasurement {
  let best: AllocationMeasurement | null = null;
  for (let i = 0; i < attempts; i++) {
    const m = measureAllocation(run, iterations);
    if (best === null || m.collections < best.collections || (m.collections === best.collections && m.heapDelta < best.heapDelta)) best = m;
    if (best.collections === 0) break;
  }
  return best!;
}

function youngNow(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_used_size ?? 0;
}

function newSpaceUsed(spaces: readonly { spaceName: string; spaceUsedSize: number }[]): number {
  return spaces.find((s) => s.spaceName === 'new_space')?.spaceUsedSize ?? 0;
}

/**
 * Bytes `run(iterations)` allocated in the young generation (after a warm-up), from the space's fill before
 * and after each collection the GC profiler saw: finer than a count of collections, for a loop whose
 * allocation is to be compared with a known amount. Large objects allocated straight in other spaces are
 * not seen.
 */
export function measureYoungBytes(run: (iterations: number) => unknown, iterations: number): number {
  for (let i = 0; i < 20; i++) run(10_000);
  gc();
  gc();
  const profiler = new GCProfiler();
  profiler.start();
  let last = youngNow();
  run(iterations);
  const end = youngNow();
  const stats = profiler.stop()?.statistics ?? [];
  let bytes = 0;
  for (const s of stats) {
    bytes += newSpaceUsed(s.beforeGC.heapSpaceStatistics) - last;
    last = newSpaceUsed(s.afterGC.heapSpaceStatistics);
  }
  return bytes + end - last;
}
