/**
 * Measures what a loop allocates on the JS heap: heap growth after a full GC, and how many collections ran
 * meanwhile (a loop that allocates even 16 bytes per call triggers several scavenges over 1e6 calls).
 */
import { GCProfiler, setFlagsFromString } from 'node:v8';
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
