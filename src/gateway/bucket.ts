/**
 * Token bucket for one user's bandwidth, shared by all of the user's sessions and both directions.
 *
 * Flow per check (all O(1), synchronous, no allocation):
 *   refill(now): tokens += elapsed ms × rate/ms, capped at burst  ──►  compare with the packet's bytes
 *   tryConsume: pay now or refuse  |  delayFor: ms until it could pay  |  consume: pay now, into debt if need be
 *
 * Tokens are bytes, so a 60-byte packet costs exactly 60. The balance may go negative (debt) when consume()
 * charges more than is there (a packet larger than the burst, a timer that fired a little early); debt is paid
 * back by the refill, which keeps the long-run rate exact.
 * A packet larger than the burst (up to 65535 bytes, a TSO super-packet) may go once the bucket is full: it
 * leaves debt of its length less the burst, so it never deadlocks and the long-run rate stays exact.
 */
// Written by hand: rate-limit libraries (bottleneck, limiter) are promise-based and allocate per call; the
// per-packet path needs a synchronous, allocation-free check (see bench/bucket-vs-bottleneck.ts).
import { systemClock, type Clock } from '../clock.js';
import { QuicgateError } from '../errors.js';
import type { UserScheduler } from './user-scheduler.js';

/**
 * Smallest default burst: 16 KiB. Room for ten 1500-byte packets (a TCP initial window, RFC 6928) or one
 * 9000-byte jumbo packet plus change, so a few full-size or coalesced packets go at once even at low rates;
 * yet small next to a second of traffic at the lowest rates people set (131 ms at 1 Mbit/s, where 64 KiB was
 * half a second and put a 5 s measurement ~6 % over the limit). From 2.6 Mbit/s up, rate × 50 ms is larger.
 */
export const MIN_DEFAULT_BURST = 16 * 1024;
/** The default burst covers this much time at the full rate: short, so a limit holds over short intervals too. */
export const DEFAULT_BURST_SECONDS = 0.05;

/** Default bucket depth in bytes for a rate in bytes per second: max(16 KiB, rate × 50 ms). */
export function defaultBurst(rate: number): number {
  return Math.max(MIN_DEFAULT_BURST, Math.ceil(rate * DEFAULT_BURST_SECONDS));
}

// Bytes. Float rounding of (delayFor × rate) must not refuse a packet at exactly its due time.
const ROUNDING_SLACK = 1e-6;

function checkRate(rate: number, burst: number | null | undefined): void {
  if (!Number.isFinite(rate) || rate <= 0) {
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', `bucket rate must be a positive number of bytes/s, got ${rate}`);
  }
  if (burst !== null && burst !== undefined && (!Number.isFinite(burst) || burst <= 0)) {
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', `bucket burst must be a positive number of bytes, got ${burst}`);
  }
}

export class TokenBucket {
  // Numeric fields start as numbers, never undefined: a field that once held undefined stays "tagged" in V8
  // and every fractional store then allocates a heap number.
  private ratePerMs = 0;
  private rateBytesPerSecond = 0;
  private depth = 0;
  /** Bytes that may go now; negative while in debt. */
  private tokens = 0;
  /** Monotonic ms of the last refill. */
  private last = 0;
  /**
   * The user's shaping scheduler (user-scheduler.ts), made on the first packet that must wait and kept with
   * the bucket, so the per-packet path reaches it without a lookup. Not part of the bucket's arithmetic; it
   * holds no queue and no timer while nothing waits.
   */
  scheduler: UserScheduler | null = null;
  /**
   * Shaping inside the limit (config `shaping`): true fair (per-flow queues), false fifo (one queue per session
   * and direction). Set by the registry at creation and on reload; read by the scheduler per packet.
   */
  fair = true;
  /**
   * 1 while the fair scheduler holds packets of the user: tryConsume then refuses, so every packet goes
   * through the scheduler and none passes one that waits (fifo keeps the old fast path: only the packet's own
   * queue must be empty).
   */
  holding = 0;
  /**
   * Bytes offered to this bucket since the fleet's lease client last took them (takeOffered): every packet
   * that paid at once (tryConsume) and every one handed to shaping (shapeOrDrop, whether it waits or is
   * dropped), each counted once. The user's demand on this gateway, not what it was allowed: a share sized
   * from consumed bytes alone would never grow past itself.
   */
  offered = 0;
  private readonly clock: Clock;

  /** `rate` in bytes/s; `burst` in bytes (null: defaultBurst(rate)). Starts full. */
  constructor(rate: number, burst: number | null = null, clock: Clock = systemClock) {
    checkRate(rate, burst);
    this.clock = clock;
    this.rateBytesPerSecond = rate;
    this.ratePerMs = rate / 1000;
    this.depth = burst ?? defaultBurst(rate);
    this.tokens = this.depth;
    this.last = clock.now();
  }

  /** Bytes per second. */
  get rate(): number {
    return this.rateBytesPerSecond;
  }

  /** Bucket depth in bytes. */
  get burst(): number {
    return this.depth;
  }

  /** Bytes that may go now (negative while in debt). */
  available(now: number = this.clock.now()): number {
    this.refill(now);
    return this.tokens;
  }

  /** May `bytes` go now, ahead of nothing that waits? Consumes them on yes. */
  tryConsume(bytes: number, now: number = this.clock.now()): boolean {
    if (this.holding !== 0) return false;
    this.refill(now);
    if (this.tokens + ROUNDING_SLACK < (bytes < this.depth ? bytes : this.depth)) return false;
    this.tokens -= bytes;
    this.offered += bytes;
    return true;
  }

  /** Offered bytes since the last call (see `offered`), and start counting anew. */
  takeOffered(): number {
    const bytes = this.offered;
    this.offered = 0;
    return bytes;
  }

  /** Milliseconds until `bytes` may go (0 if now). Consumes nothing. */
  delayFor(bytes: number, now: number = this.clock.now()): number {
    this.refill(now);
    const missing = (bytes < this.depth ? bytes : this.depth) - this.tokens;
    return missing <= ROUNDING_SLACK ? 0 : missing / this.ratePerMs;
  }

  /** Charge `bytes` unconditionally (into debt if need be), for packets already accepted for shaping. */
  consume(bytes: number, now: number = this.clock.now()): void {
    this.refill(now);
    this.tokens -= bytes;
  }

  /**
   * Change the limit of a live bucket without resetting it: time so far is credited at the old rate, any debt
   * stays, the balance is capped at the new burst. `burst` omitted or null: defaultBurst(rate).
   */
  setRate(rate: number, burst: number | null = null, now: number = this.clock.now()): void {
    checkRate(rate, burst);
    this.refill(now);
    this.rateBytesPerSecond = rate;
    this.ratePerMs = rate / 1000;
    this.depth = burst ?? defaultBurst(rate);
    if (this.tokens > this.depth) this.tokens = this.depth;
    // Packets waiting for the old rate: their release time moves with the new one.
    this.scheduler?.rateChanged();
  }

  private refill(now: number): void {
    // A batch may pass a timestamp slightly older than the last one; time never runs backwards here.
    if (now <= this.last) return;
    const tokens = this.tokens + (now - this.last) * this.ratePerMs;
    this.tokens = tokens < this.depth ? tokens : this.depth;
    this.last = now;
  }
}
