/**
 * Current per-session rates for the operator views: samples each live session's byte counters once per
 * interval on a Clock timer and answers "bytes per second over the last few seconds" from the oldest and
 * newest sample. The forwarding path is untouched: it keeps writing plain counters; this only reads them.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { TrafficCounters } from './session.js';

/** What the sampler reads from a session; a gateway Session satisfies it structurally. */
export interface SampledSession {
  readonly id: string;
  readonly startedMono: number;
  readonly counters: Readonly<TrafficCounters>;
}

export interface RateSamplerOptions {
  readonly clock: Clock;
  /** The live sessions, read once per sample. */
  readonly sessions: () => Iterable<SampledSession>;
  /** Default 1000 ms. */
  readonly intervalMs?: number;
  /** How many intervals the rate spans. Default 5. */
  readonly windowSamples?: number;
}

export interface Rate {
  /** Bytes per second, client → gateway. */
  readonly in: number;
  /** Bytes per second, gateway → client. */
  readonly out: number;
}

interface Sample {
  readonly t: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

const ZERO: Rate = { in: 0, out: 0 };

export class RateSampler {
  private readonly samples = new Map<string, Sample[]>();
  private readonly clock: Clock;
  private readonly source: () => Iterable<SampledSession>;
  private readonly intervalMs: number;
  private readonly keep: number;
  private timer: TimerHandle | null = null;

  constructor(options: RateSamplerOptions) {
    this.clock = options.clock;
    this.source = options.sessions;
    this.intervalMs = options.intervalMs ?? 1000;
    this.keep = Math.max(1, options.windowSamples ?? 5) + 1;
  }

  /** Idempotent. */
  start(): void {
    this.timer ??= this.clock.setInterval(() => this.sample(), this.intervalMs);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  /** Take one sample of every live session now and forget sessions that are gone (the timer calls this). */
  sample(): void {
    const now = this.clock.now();
    const live = new Set<string>();
    for (const s of this.source()) {
      live.add(s.id);
      let list = this.samples.get(s.id);
      if (list === undefined) {
        // Counters start at zero when the session opens, so its start is a free first sample.
        list = [{ t: s.startedMono, bytesIn: 0, bytesOut: 0 }];
        this.samples.set(s.id, list);
      }
      list.push({ t: now, bytesIn: s.counters.bytesIn, bytesOut: s.counters.bytesOut });
      if (list.length > this.keep) list.splice(0, list.length - this.keep);
    }
    for (const id of this.samples.keys()) if (!live.has(id)) this.samples.delete(id);
  }

  /** Rate of a session over its sampled window; zero until it has been sampled. */
  rateOf(id: string): Rate {
    const list = this.samples.get(id);
    const first = list?.[0];
    const last = list?.[list.length - 1];
    if (first === undefined || last === undefined || last.t <= first.t) return ZERO;
    const seconds = (last.t - first.t) / 1000;
    return {
      in: Math.max(0, (last.bytesIn - first.bytesIn) / seconds),
      out: Math.max(0, (last.bytesOut - first.bytesOut) / seconds),
    };
  }

  get trackedSessions(): number {
    return this.samples.size;
  }
}
