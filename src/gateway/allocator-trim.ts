/**
 * Gives the C allocator's freed memory back to the system after a flood (config `memory.trim_after_freed`).
 *
 * glibc keeps what TLS, HTTP/2 and libuv free in its arenas: after floods of 1,500 held TLS connections the
 * gateway had 13.5 MiB of malloc in use and ~110-125 MiB free but kept, which RSS shows as if it were leaked
 * (bench/flood.ts, docs/robustness.md). Every `intervalMs` the trimmer estimates the freed memory that is still
 * resident: anonymous RSS (/proc/self/statm) minus V8's resident heap minus malloc's in-use bytes (mallinfo2).
 * Once that grew by `thresholdBytes` over its level after the last trim (or its lowest since), it calls
 * malloc_trim(0) (5-30 ms measured; at most once per `minGapMs`). Neither malloc's free figure (it still counts
 * pages a trim gave back) nor a fall of its in-use bytes (a flood's short-lived handshake buffers never show in
 * a 5 s sample) tells how much there is to give back; the estimate does, whichever transport caused it.
 * A sample costs ~0.05 ms after a flood (its freed chunks coalesce) but mallinfo2 can reach ~20 ms with 100,000
 * scattered free chunks; the next sample then waits 1,000 times as long as this tick took (at least
 * `intervalMs`), so sampling stays under 0.1 % of the loop.
 */
import v8 from 'node:v8';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import { anonResidentBytes, mallocStats, mallocTrim, type NativeMallocStats } from './native-memory.js';

export const DEFAULT_TRIM_INTERVAL_MS = 5000;
export const DEFAULT_TRIM_MIN_GAP_MS = 10_000;

export interface AllocatorTrimOptions {
  /** Trim once the resident freed memory grew this much over its level after the last trim. */
  readonly thresholdBytes: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly intervalMs?: number;
  readonly minGapMs?: number;
  /** The allocator, the kernel and V8, injectable for tests (native-memory.ts and node:v8 by default). */
  readonly stats?: (countArenas: boolean) => NativeMallocStats | null;
  readonly trim?: () => boolean | null;
  readonly anonResident?: () => number | null;
  readonly heapResident?: () => number;
}

export interface AllocatorTrimStats {
  readonly trims: number;
  /** Resident anonymous memory the trims gave back (statm before - after), bytes. */
  readonly releasedBytes: number;
}

export class AllocatorTrimmer {
  private readonly opts: AllocatorTrimOptions;
  private timer: TimerHandle | null = null;
  private stopped = false;
  /** The resident freed estimate after the last trim, or its lowest since. */
  private base = Infinity;
  private lastTrimAt = -Infinity;
  private trims = 0;
  private releasedBytes = 0;

  constructor(opts: AllocatorTrimOptions) {
    this.opts = opts;
  }

  /** Starts sampling; without allocator figures (no addon, not glibc) it logs that once and does nothing. */
  start(): void {
    if (this.timer !== null || this.stopped) return;
    const first = this.sample();
    if (first === null) {
      this.opts.logger.info('memory.trim_after_freed: no glibc allocator figures here (TUN addon missing or another C library); not trimming');
      return;
    }
    this.base = first.retained;
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

  private schedule(lastTickMs: number): void {
    const delay = Math.max(this.opts.intervalMs ?? DEFAULT_TRIM_INTERVAL_MS, lastTickMs * 1000);
    this.timer = this.opts.clock.setTimeout(() => {
      const started = this.opts.clock.now();
      this.tick();
      if (!this.stopped) this.schedule(this.opts.clock.now() - started);
    }, delay);
  }

  /** One sample, and the trim when due. */
  private tick(): void {
    const now = this.sample();
    if (now === null) return;
    this.base = Math.min(this.base, now.retained);
    const grown = now.retained - this.base;
    const at = this.opts.clock.now();
    if (grown < this.opts.thresholdBytes || at - this.lastTrimAt < (this.opts.minGapMs ?? DEFAULT_TRIM_MIN_GAP_MS)) return;
    (this.opts.trim ?? mallocTrim)();
    const ms = this.opts.clock.now() - at;
    const after = this.sample();
    const released = after === null ? 0 : Math.max(0, now.anon - after.anon);
    this.trims++;
    this.releasedBytes += released;
    this.lastTrimAt = at;
    this.base = after?.retained ?? now.retained;
    this.opts.logger.info(
      { retainedBytes: now.retained, releasedBytes: released, mallocInUseBytes: now.inUse, ms: Math.round(ms * 10) / 10 },
      'freed memory the allocator kept given back to the system (malloc_trim)',
    );
  }

  /** Resident anonymous bytes and the part of them that is neither V8's heap nor malloc's live bytes. */
  private sample(): { readonly anon: number; readonly inUse: number; readonly retained: number } | null {
    const malloc = (this.opts.stats ?? mallocStats)(false);
    const anon = (this.opts.anonResident ?? anonResidentBytes)();
    if (malloc === null || anon === null) return null;
    const heap = (this.opts.heapResident ?? (() => v8.getHeapStatistics().total_physical_size))();
    return { anon, inUse: malloc.inUse, retained: anon - heap - malloc.inUse };
  }
}
