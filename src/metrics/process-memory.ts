/**
 * Process memory beyond prom-client's defaults (RSS, V8 heap, external): the C allocator's live bytes vs the
 * freed bytes it keeps (mallinfo2, src/gateway/native-memory.ts) and resident anonymous vs file-backed memory.
 * A leak grows `quicgate_process_malloc_inuse_bytes`; allocator retention after a flood grows only
 * `..._retained_bytes` and RSS (docs/robustness.md). Read on scrape: mallinfo2 walks the arenas' free lists,
 * a scrape's work, never per packet.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AllocatorTrimStats } from '../gateway/allocator-trim.js';
import { mallocStats, residentMemory } from '../gateway/native-memory.js';

/**
 * Registers the gauges on `registry`; without the TUN addon or glibc the malloc series stay absent. With a
 * trimmer (config `memory.trim_after_freed`), also its trims and what they gave back.
 */
export function registerProcessMemoryMetrics(registry: Registry, trimmer: { readonly stats: AllocatorTrimStats } | null): void {
  const registers = [registry];
  const malloc = (name: string, help: string, value: (m: NonNullable<ReturnType<typeof mallocStats>>) => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.reset();
        const stats = mallocStats();
        if (stats !== null && value(stats) >= 0) this.set(value(stats));
      },
    });
  };
  malloc('quicgate_process_malloc_inuse_bytes', 'C allocator (glibc malloc): bytes allocated and not freed (TLS, HTTP/2, libuv, Buffer contents).', (m) => m.inUse);
  malloc(
    'quicgate_process_malloc_retained_bytes',
    'C allocator (glibc malloc): freed bytes kept in its arenas, not returned to the system (part may be non-resident after a trim).',
    (m) => m.free,
  );
  malloc('quicgate_process_malloc_arenas', 'C allocator (glibc malloc): arenas (main + per-thread).', (m) => m.arenas);
  new Gauge({
    name: 'quicgate_process_resident_bytes',
    help: 'Resident memory by kind (/proc/self/smaps_rollup): anon = heaps, stacks, arenas; file = mapped files and shared memory.',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      const resident = residentMemory();
      if (resident === null) return;
      this.set({ kind: 'anon' }, resident.anon);
      this.set({ kind: 'file' }, resident.file);
    },
  });
  if (trimmer === null) return;
  new Counter({
    name: 'quicgate_process_malloc_trims_total',
    help: 'malloc_trim calls once memory.trim_after_freed of freed memory was kept resident (after a flood).',
    registers,
    collect() {
      this.reset();
      this.inc(trimmer.stats.trims);
    },
  });
  new Counter({
    name: 'quicgate_process_malloc_trim_released_bytes_total',
    help: 'Resident anonymous memory those trims gave back to the system.',
    registers,
    collect() {
      this.reset();
      this.inc(trimmer.stats.releasedBytes);
    },
  });
}
