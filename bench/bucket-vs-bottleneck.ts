/**
 * Why the per-packet bandwidth check is a hand-written token bucket and not bottleneck:
 * the same "may these N bytes go now?" check through bottleneck (schedule with weight = bytes, and
 * check + incrementReservoir) versus TokenBucket.tryConsume. Prints ns per check, heap growth (total and per
 * check) and GC runs during the measured loop, and the time ratio. The bucket's residue (a fraction of a byte
 * per check) is V8 and profiler background, not per-check allocation: test/gateway/bucket.test.ts asserts zero
 * collections over 1e6 checks.   Run: npx tsx bench/bucket-vs-bottleneck.ts
 */
import Bottleneck from 'bottleneck';
import { GCProfiler, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { TokenBucket } from '../src/gateway/bucket.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

interface Result {
  readonly name: string;
  readonly checks: number;
  readonly nsPerCheck: number;
  readonly heapDeltaBytes: number;
  readonly gcRuns: number;
}

async function measure(name: string, checks: number, warmup: number, run: (n: number) => unknown): Promise<Result> {
  for (let i = 0; i < 10; i++) await run(warmup); // let V8 optimize before measuring
  gc();
  gc();
  const profiler = new GCProfiler();
  profiler.start();
  const heapBefore = process.memoryUsage().heapUsed;
  const start = process.hrtime.bigint();
  await run(checks);
  const elapsed = Number(process.hrtime.bigint() - start);
  const heapAfter = process.memoryUsage().heapUsed;
  const gcRuns = profiler.stop()?.statistics.length ?? 0;
  return { name, checks, nsPerCheck: elapsed / checks, heapDeltaBytes: heapAfter - heapBefore, gcRuns };
}

const PACKET = 1200;
const RATE = 1e12; // high enough that every check passes: we measure the cost of asking, not of waiting
const noop = (): Promise<void> => Promise.resolve();

// Hand-written bucket: one timestamp per batch of 64 packets, like the forwarding path.
const bucket = new TokenBucket(RATE, RATE);
let clockMs = 0;
function bucketChecks(n: number): number {
  let passed = 0;
  let now = clockMs;
  for (let i = 0; i < n; i++) {
    if ((i & 63) === 0) now += 0.01;
    if (bucket.tryConsume(PACKET, now)) passed++;
  }
  clockMs = now;
  return passed;
}

function newLimiter(): Bottleneck {
  return new Bottleneck({ reservoir: Number.MAX_SAFE_INTEGER, maxConcurrent: null, minTime: 0 });
}

// bottleneck, one packet at a time (what a per-packet await would do).
const sequential = newLimiter();
async function bottleneckSequential(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await sequential.schedule({ weight: PACKET }, noop);
}

// bottleneck, a whole burst of packets submitted at once (best case for its internal batching).
const concurrent = newLimiter();
async function bottleneckConcurrent(n: number): Promise<void> {
  const jobs: Array<Promise<void>> = [];
  for (let i = 0; i < n; i++) jobs.push(concurrent.schedule({ weight: PACKET }, noop));
  await Promise.all(jobs);
}

// bottleneck's non-queueing check: "would it run now?" then charge the reservoir.
const checker = newLimiter();
async function bottleneckCheckAndCharge(n: number): Promise<void> {
  for (let i = 0; i < n; i++) if (await checker.check(PACKET)) await checker.incrementReservoir(-PACKET);
}

const results: Result[] = [];
results.push(await measure('TokenBucket.tryConsume', 10_000_000, 100_000, bucketChecks));
results.push(await measure('bottleneck schedule (sequential)', 300, 10, bottleneckSequential));
results.push(await measure('bottleneck schedule (2000 at once)', 2_000, 100, bottleneckConcurrent));
results.push(await measure('bottleneck check+incrementReservoir', 300, 10, bottleneckCheckAndCharge));

const base = results[0]!;
console.log('per-packet bandwidth check, 1200-byte packets\n');
console.log(`${'method'.padEnd(38)}${'checks'.padStart(11)}${'ns/check'.padStart(14)}${'heap Δ (B)'.padStart(13)}${'B/check'.padStart(11)}${'GC runs'.padStart(9)}${'× bucket'.padStart(12)}`);
for (const r of results) {
  console.log(
    `${r.name.padEnd(38)}${String(r.checks).padStart(11)}${r.nsPerCheck.toFixed(1).padStart(14)}${String(r.heapDeltaBytes).padStart(13)}${(r.heapDeltaBytes / r.checks).toFixed(2).padStart(11)}${String(r.gcRuns).padStart(9)}${(r.nsPerCheck / base.nsPerCheck).toFixed(0).padStart(12)}`,
  );
}
console.log(
  '\nbottleneck is promise-based: every check allocates a job and promises and yields to the event loop (setTimeout 0),\n' +
    'so it cannot sit on the synchronous per-packet path; it serves admission (a few attempts per second) instead.',
);
await Promise.all([sequential.stop(), concurrent.stop(), checker.stop()]);
