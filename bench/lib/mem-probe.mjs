// Bench-only memory probe, preloaded into a process that bench/scale.ts starts:
//
//   node --expose-gc --import ./bench/lib/mem-probe.mjs bin/quicgate.js server --config …
//
// On SIGUSR2 it forces full garbage collections (several, with macrotask turns in between so that weak
// callbacks and finalizers that free native memory - e.g. of closed HTTP/2 sessions - have run), then writes
// ONE JSON line to stderr:
//   {"msg":"memprobe","seq":n,"rss":…,"rssAnon":…,"rssFile":…,"heapUsed":…,"heapTotal":…,"heapPhysical":…,"external":…,
//    "arrayBuffers":…,"newSpace":…,"oldSpace":…,"malloc":{inUse,free,mmapped,arenaBytes,topReleasable,arenas}|null,"mallocStatsMs":…}
// (bytes; rss/rssAnon/rssFile from /proc/self/smaps_rollup, malloc from glibc's mallinfo2 through the TUN addon,
// heapPhysical = V8's resident heap pages (v8.getHeapStatistics), the rest from process.memoryUsage() and
// v8.getHeapSpaceStatistics()). Nothing of the measured program
// changes: the probe only adds this handler (and loads dist/gateway/native-memory.js: `npm run build` first).
// MEMPROBE_TRIM_FROM=n: from the n-th probe on, it then calls malloc_trim(0) and adds
// "trimmed":{released,ms,rss,rssAnon,malloc} measured after it (this changes the program: the allocator gives
// its free pages back at those probes).
// MEMPROBE_SNAPSHOT_DIR=dir also writes a heap snapshot per probe (dir/probe-<seq>.heapsnapshot).
import { join } from 'node:path';
import v8 from 'node:v8';
import { mallocStats, mallocTrim, residentMemory } from '../../dist/gateway/native-memory.js';

const gc = globalThis.gc;
if (typeof gc !== 'function') {
  process.stderr.write('mem-probe: run node with --expose-gc\n');
  process.exit(2);
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
let seq = 0;
const trimFrom = Number(process.env.MEMPROBE_TRIM_FROM ?? 0);

function status() {
  const r = residentMemory();
  return { rss: r?.rss ?? NaN, rssAnon: r?.anon ?? NaN, rssFile: r?.file ?? NaN };
}

async function probe() {
  const n = ++seq;
  for (let i = 0; i < 3; i++) {
    gc();
    await turn();
  }
  const mu = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));
  const line = {
    msg: 'memprobe',
    seq: n,
    ...status(),
    heapUsed: mu.heapUsed,
    heapTotal: mu.heapTotal,
    heapPhysical: v8.getHeapStatistics().total_physical_size,
    external: mu.external,
    arrayBuffers: mu.arrayBuffers,
    newSpace: spaces.new_space ?? 0,
    oldSpace: spaces.old_space ?? 0,
    malloc: mallocStats(),
  };
  const s0 = process.hrtime.bigint();
  mallocStats();
  line.mallocStatsMs = Number(process.hrtime.bigint() - s0) / 1e6; // what one sample costs (walks the free lists)
  if (trimFrom > 0 && n >= trimFrom) {
    const t0 = process.hrtime.bigint();
    const released = mallocTrim();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const { rss, rssAnon } = status();
    line.trimmed = { released, ms, rss, rssAnon, malloc: mallocStats() };
  }
  const dir = process.env.MEMPROBE_SNAPSHOT_DIR;
  if (dir) line.snapshot = v8.writeHeapSnapshot(join(dir, `probe-${n}.heapsnapshot`));
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

process.on('SIGUSR2', () => {
  probe().catch((err) => process.stderr.write(`${JSON.stringify({ msg: 'memprobe failed', err: String(err) })}\n`));
});
