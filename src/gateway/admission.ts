/**
 * Per-source throttle of connection and authentication attempts (before any password work is done).
 *
 *   admit(source) ─► key (IPv4 address, or IPv6 /64) ─► Bottleneck.Group limiter for that key
 *     reservoir left ─► job runs at once ─► true
 *     reservoir empty ─► highWater 0 + OVERFLOW drops the job at once (never queued) ─► false, logged once/window
 *     already throttled this window ─► false at once, without the limiter (no promise chain or error object)
 *   isBlocked(source): refused as often as its budget this window ─► the listener drops it before TLS
 *   succeeded(source) after a right password ─► the attempt is given back (up to the budget), so what a source
 *     spends is its failed attempts plus those still being checked: many users behind one NAT can all log in,
 *     while a guesser (and a burst of parallel guesses, each counted until checked) runs dry
 *   every window (clock interval): all per-source limiters are dropped, so budgets refill and idle sources
 *   leave no state behind.
 *   fleet (setShared): an attempt the local budget admits also spends the fleet's budget for the source
 *     (src/fleet/attempt-budget.ts); the fleet's refusal counts like a local one; while Redis cannot answer,
 *     the local budget alone decides (never unlimited).
 *
 * bottleneck fits here (a few attempts per second, async is fine); it does not fit the per-packet path (see
 * bucket.ts and bench/bucket-vs-bottleneck.ts). The window runs on the injectable Clock rather than
 * bottleneck's own reservoir refresh, which would start a real 250 ms heartbeat timer for every source.
 */
import Bottleneck from 'bottleneck';
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { sourceKey } from '../transport/source-key.js';

export const DEFAULT_WINDOW_MS = 60_000;

export interface AdmissionThrottleOptions {
  /** Attempts allowed per source per window; 0 turns throttling off. */
  readonly perSourcePerMinute: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Length of a budget window (tests and tuning); one minute by default. */
  readonly windowMs?: number;
}

export { sourceKey };

const admitted = (): Promise<true> => Promise.resolve(true);

/** The fleet-wide budget per source: true admitted, false refused, null: cannot tell now (local decides). */
export interface SharedAttemptBudget {
  admit(key: string): Promise<boolean | null>;
  giveBack(key: string): Promise<void>;
  setLimit(perSourcePerMinute: number): void;
}

export class AdmissionThrottle {
  private readonly group: Bottleneck.Group;
  private readonly logger: Logger;
  private readonly windowMs: number;
  private limit: number;
  /**
   * Throttled sources of the current window and how many attempts each had refused. A source in here is
   * refused at once (no limiter call, no error object per attempt); it is logged when it enters.
   */
  private readonly refusedThisWindow = new Map<string, number>();
  /** Sources already logged as throttled in the current window. */
  private readonly loggedThisWindow = new Set<string>();
  private readonly timer: TimerHandle;
  private readonly clock: Clock;
  private windowStartedAt: number;
  private throttledCount = 0;
  private shared: SharedAttemptBudget | null = null;

  constructor(options: AdmissionThrottleOptions) {
    this.logger = options.logger;
    this.windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    this.limit = Math.max(0, Math.floor(options.perSourcePerMinute));
    this.group = new Bottleneck.Group(this.limiterOptions());
    this.clock = options.clock ?? systemClock;
    this.windowStartedAt = this.clock.now();
    this.timer = this.clock.setInterval(() => this.newWindow(), this.windowMs);
  }

  /** True when the attempt is within the source's budget (and counted); false when it is throttled. */
  async admit(sourceAddress: string): Promise<boolean> {
    if (this.limit === 0) return true;
    const key = sourceKey(sourceAddress);
    const refused = this.refusedThisWindow.get(key);
    if (refused !== undefined) {
      this.refusedThisWindow.set(key, refused + 1);
      this.throttledCount++;
      return false;
    }
    try {
      await this.group.key(key).schedule({ weight: 1 }, admitted);
    } catch (err) {
      if (!(err instanceof Bottleneck.BottleneckError)) throw err;
      return this.refuse(key);
    }
    if (this.shared !== null && (await this.shared.admit(key)) === false) return this.refuse(key);
    return true;
  }

  /** Share the budget with a fleet (null: this gateway alone). */
  setShared(shared: SharedAttemptBudget | null): void {
    this.shared = shared;
  }

  private refuse(key: string): false {
    this.throttledCount++;
    this.refusedThisWindow.set(key, 1);
    if (!this.loggedThisWindow.has(key)) {
      this.loggedThisWindow.add(key);
      this.logger.warn(
        { source: key, limit: this.limit, windowMs: this.windowMs },
        'too many connection attempts from this source; further ones are refused until the window ends',
      );
    }
    return false;
  }

  /**
   * The attempt admitted for `sourceAddress` had the right password: give it back, within this window and up
   * to the budget. Never throws.
   */
  async succeeded(sourceAddress: string): Promise<void> {
    if (this.limit === 0) return;
    const key = sourceKey(sourceAddress);
    await this.shared?.giveBack(key);
    if (!this.group.keys().includes(key)) return; // a new window began: the budget is full again anyway
    try {
      const limiter = this.group.key(key);
      const left = await limiter.currentReservoir();
      if (left !== null && left < this.limit) {
        await limiter.incrementReservoir(1);
        // It has budget again: back to the limiter (a parallel burst from a NAT may have run it dry meanwhile).
        this.refusedThisWindow.delete(key);
      }
    } catch (err) {
      this.logger.error({ err, source: key }, 'could not give back a throttle attempt');
    }
  }

  /**
   * Whether a source kept trying after it was throttled: as many refused attempts in this window as its
   * budget. The tunnel listener then drops its new connections at accept, before any TLS work (see
   * src/transport/connection-guard.ts); until then it still gets its 429 answer. Synchronous and cheap.
   */
  isBlocked(sourceAddress: string): boolean {
    if (this.limit === 0 || this.refusedThisWindow.size === 0) return false;
    const refused = this.refusedThisWindow.get(sourceKey(sourceAddress));
    return refused !== undefined && refused >= this.limit;
  }

  /** New budget per source; applies from the next window (budgets already started keep theirs). */
  setLimit(perSourcePerMinute: number): void {
    this.limit = Math.max(0, Math.floor(perSourcePerMinute));
    this.group.updateSettings(this.limiterOptions());
    this.shared?.setLimit(this.limit);
  }

  /** Sources with a limiter in the current window. */
  get trackedSources(): number {
    return this.group.keys().length;
  }

  /** Time until budgets refill (the current window ends): what a refused caller is told to wait. */
  get retryAfterMs(): number {
    return Math.max(0, this.windowStartedAt + this.windowMs - this.clock.now());
  }

  /** Attempts refused since start. */
  get throttled(): number {
    return this.throttledCount;
  }

  close(): void {
    this.timer.cancel();
    this.newWindow();
  }

  private newWindow(): void {
    this.windowStartedAt = this.clock.now();
    this.refusedThisWindow.clear();
    this.loggedThisWindow.clear();
    for (const key of this.group.keys()) {
      this.group.deleteKey(key).catch((err: unknown) => this.logger.error({ err, source: key }, 'could not drop a throttle limiter'));
    }
  }

  private limiterOptions(): Bottleneck.ConstructorOptions {
    // highWater 0 with OVERFLOW: a job that cannot run at once is dropped, never queued.
    return { reservoir: this.limit, highWater: 0, strategy: Bottleneck.strategy.OVERFLOW, maxConcurrent: null, minTime: 0 };
  }
}
