/**
 * Gives the C allocator's freed memory back to the system after a flood (config `memory.trim_after_freed`).
 *
 * glibc keeps what TLS, HTTP/2 and libuv free in its arenas: after 1,500 held TLS connections the gateway had
 * 13 MiB of malloc in use and ~80-105 MiB free but kept, which RSS shows as if it were leaked (bench/flood.ts,
 * docs/robustness.md). Every `intervalMs` the trimmer samples malloc's in-use bytes (mallinfo2: a walk of the
 * arenas' free lists, never per packet); once they have fallen by `thresholdBytes` from their peak since the
 * last trim, it calls malloc_trim(0) (a few ms; at most once per `minGapMs`). A fall in live bytes is what a
 * subsiding flood (or a mass disconnect) looks like, whichever transport carried it; the allocator's own free
 * figure cannot serve, as it still counts the pages a trim already gave back. A sample costs ~0.05 ms after a
 * flood (its freed chunks coalesce) but can reach ~20 ms with 100,000 scattered free chunks; the next sample then
 * waits 1,000 times as long as this tick took (at least `intervalMs`), so sampling stays under 0.1 % of the loop.
 */
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import { mallocStats, mallocTrim, residentMemory, type NativeMallocStats, type ResidentMemory } from './native-memory.js';

export const DEFAULT_TRIM_INTERVAL_MS = 5000;
export const DEFAULT_TRIM_MIN_GAP_MS = 30_000;

export interface AllocatorTrimOptions {
  /** Trim once malloc's in-use bytes fell this much from their peak. */
  readonly thresholdBytes: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly intervalMs?: number;
  readonly minGapMs?: number;
  /** The allocator and /proc, injectable for tests (native-memory.ts by default). */
  readonly stats?: (countArenas: boolean) => NativeMallocStats | null;
  readonly trim?: () => boolean | null;
  readonly resident?: () => ResidentMemory | null;
}

export interface AllocatorTrimStats {
  readonly trims: number;
  /** Resident anonymous memory the trims gave back (smaps_rollup before - after), bytes. */
  readonly releasedBytes: number;
}

export class AllocatorTrimmer {
  private readonly opts: AllocatorTrimOptions;
  private timer: TimerHandle | null = null;
  private stopped = false;
  private peak = 0;
  private lastTrimAt = -Infinity;
  private trims = 0;
  private releasedBytes = 0;

  constructor(opts: AllocatorTrimOptions) {
    this.opts = opts;
  }

  /** Starts sampling; without allocator figures (no addon, not glibc) it logs that once and does nothing. */
  start(): void {
    if (this.timer !== null || this.stopped) return;
    if (this.read() === null) {
      this.opts.logger.info('memory.trim_after_freed: no glibc allocator figures here (TUN addon missing or another C library); not trimming');
      return;
    }
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  get stats(): AllocatorTrimStats {
    return { trims: this.trims, releasedBytes: this.releasedBytes };
  }

  private schedule(lastSampleMs: number): void {
    const delay = Math.max(this.opts.intervalMs ?? DEFAULT_TRIM_INTERVAL_MS, lastSampleMs * 1000);
    this.timer = this.opts.clock.setTimeout(() => {
      const started = this.opts.clock.now();
      this.tick();
      if (!this.stopped) this.schedule(this.opts.clock.now() - started);
    }, delay);
  }

  /** One sample, and the trim when due. */
  private tick(): void {
    const now = this.read();
    if (now === null) return;
    this.peak = Math.max(this.peak, now.inUse);
    const freed = this.peak - now.inUse;
    const at = this.opts.clock.now();
    if (freed < this.opts.thresholdBytes || at - this.lastTrimAt < (this.opts.minGapMs ?? DEFAULT_TRIM_MIN_GAP_MS)) return;
    const resident = this.opts.resident ?? residentMemory;
    const before = resident();
    const started = this.opts.clock.now();
    (this.opts.trim ?? mallocTrim)();
    const ms = this.opts.clock.now() - started;
    const after = resident();
    const released = before !== null && after !== null ? Math.max(0, before.anon - after.anon) : 0;
    this.trims++;
    this.releasedBytes += released;
    this.lastTrimAt = at;
    this.peak = now.inUse;
    this.opts.logger.info(
      { freedBytes: freed, releasedBytes: released, mallocInUseBytes: now.inUse, ms: Math.round(ms * 10) / 10 },
      'memory freed since the last peak given back to the system (malloc_trim)',
    );
  }

  private read(): NativeMallocStats | null {
    return (this.opts.stats ?? mallocStats)(false);
  }
}
