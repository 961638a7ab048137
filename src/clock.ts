/**
 * Injectable time. Everything that measures or waits goes through a Clock so that unit tests can run
 * limits, timeouts and the token bucket on a fake clock.
 */
export interface Clock {
  /** Monotonic milliseconds (fractional), for rates, timeouts and durations. */
  now(): number;
  /** Wall-clock milliseconds since the epoch, for timestamps shown to people and stored in history. */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  setInterval(fn: () => void, ms: number): TimerHandle;
}

export interface TimerHandle {
  cancel(): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref?.();
    return { cancel: () => clearInterval(t) };
  },
};

/** A clock that moves only when told to; timers fire in order during advance(). */
export class FakeClock implements Clock {
  private monotonic = 0;
  private readonly wallStart: number;
  private nextId = 1;
  private readonly timers = new Map<number, { at: number; fn: () => void; every: number | undefined }>();

  constructor(wallStart = Date.UTC(2026, 0, 1)) {
    this.wallStart = wallStart;
  }

  now(): number {
    return this.monotonic;
  }

  wallNow(): number {
    return this.wallStart + this.monotonic;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, Math.max(ms, 1));
  }

  /** Number of timers not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const target = this.monotonic + ms;
    for (;;) {
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, t] of this.timers) {
        if (t.at <= target && t.at < nextAt) {
          nextAt = t.at;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const timer = this.timers.get(nextId)!;
      this.monotonic = Math.max(this.monotonic, timer.at);
      if (timer.every === undefined) this.timers.delete(nextId);
      else timer.at += timer.every;
      timer.fn();
    }
    this.monotonic = target;
  }

  private add(fn: () => void, ms: number, every: number | undefined): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: this.monotonic + Math.max(0, ms), fn, every });
    return { cancel: () => void this.timers.delete(id) };
  }
}
