/**
 * Shaping queue: holds packets that were already charged to the user's bucket (into debt) until their
 * release time, so a user over the limit is delayed by at most the configured shaping delay instead of being
 * dropped at once (TCP then settles at the limit instead of collapsing).
 *
 * Flow: enqueue(packet, releaseAt) copies the packet into a ring of bytes → one timer armed for the head's
 * release time → on expiry, every packet due is handed to `send`, then `flush` once → re-armed for the next.
 *
 * Written by hand: a byte ring with release stamps must not allocate per packet, which no queue library offers.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { TokenBucket } from './bucket.js';
import type { DropCounters } from './drops.js';

export interface ShaperSink {
  send(data: Buffer, offset: number, length: number): void;
  flush(): void;
}

export class ShapingQueue {
  private ring: Buffer | null = null;
  private readonly offsets: Uint32Array;
  private readonly lengths: Uint32Array;
  private readonly releaseAt: Float64Array;
  private head = 0;
  private count = 0;
  /** Byte position where the next packet is written, and where the oldest queued packet starts. */
  private writePos = 0;
  private timer: TimerHandle | null = null;
  private lastRelease = 0;
  /** Bytes waiting, for the fair-share check. */
  private bytesQueued = 0;
  /** The bucket whose activeQueues this queue counts itself in while non-empty (a reload may swap buckets). */
  private countedOn: TokenBucket | null = null;
  private closed = false;
  private readonly drainBound = (): void => this.drain();

  constructor(
    private readonly clock: Clock,
    private readonly sink: ShaperSink,
    private readonly capacityBytes: number,
    private readonly capacityPackets: number,
  ) {
    this.offsets = new Uint32Array(capacityPackets);
    this.lengths = new Uint32Array(capacityPackets);
    this.releaseAt = new Float64Array(capacityPackets);
  }

  get pending(): number {
    return this.count;
  }

  get queuedBytes(): number {
    return this.bytesQueued;
  }

  /** Release time of the last queued packet, for keeping order. */
  get tailRelease(): number {
    return this.count === 0 ? 0 : this.lastRelease;
  }

  /** Whether a packet of `length` bytes fits now. */
  hasRoom(length: number): boolean {
    if (this.closed || this.count >= this.capacityPackets || length > this.capacityBytes) return false;
    return this.placeFor(length) >= 0;
  }

  /** Copy a packet in; the caller checked hasRoom() and charged `bucket`. */
  enqueue(data: Buffer, offset: number, length: number, releaseAt: number, bucket: TokenBucket | null = null): void {
    const ring = (this.ring ??= Buffer.allocUnsafe(this.capacityBytes));
    const at = this.placeFor(length);
    if (at < 0) return;
    data.copy(ring, at, offset, offset + length);
    const slot = (this.head + this.count) % this.capacityPackets;
    this.offsets[slot] = at;
    this.lengths[slot] = length;
    const release = releaseAt > this.lastRelease || this.count === 0 ? releaseAt : this.lastRelease;
    this.releaseAt[slot] = release;
    this.lastRelease = release;
    this.writePos = at + length;
    if (this.count === 0 && bucket !== null) {
      bucket.activeQueues++;
      this.countedOn = bucket;
    }
    this.count++;
    this.bytesQueued += length;
    if (this.timer === null) this.arm();
  }

  /** Drop everything queued and stop the timer (session ended). */
  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
    this.count = 0;
    this.bytesQueued = 0;
    this.uncount();
    this.ring = null;
  }

  private uncount(): void {
    if (this.countedOn !== null) this.countedOn.activeQueues--;
    this.countedOn = null;
  }

  // Where a packet of `length` bytes would be written: contiguous, wrapping to 0 when the end is too short.
  private placeFor(length: number): number {
    if (this.count === 0) return length <= this.capacityBytes ? 0 : -1;
    const start = this.offsets[this.head]!;
    if (this.writePos >= start) {
      if (this.writePos + length <= this.capacityBytes) return this.writePos;
      return length <= start ? 0 : -1;
    }
    return this.writePos + length <= start ? this.writePos : -1;
  }

  private arm(): void {
    if (this.count === 0 || this.closed) return;
    const wait = this.releaseAt[this.head]! - this.clock.now();
    this.timer = this.clock.setTimeout(this.drainBound, wait > 0 ? wait : 0);
  }

  private drain(): void {
    this.timer = null;
    if (this.closed || this.ring === null) return;
    // Timers fire up to ~1 ms late; packets due within half a millisecond go in the same pass.
    const now = this.clock.now() + 0.5;
    let sent = 0;
    while (this.count > 0 && this.releaseAt[this.head]! <= now) {
      const length = this.lengths[this.head]!;
      this.sink.send(this.ring, this.offsets[this.head]!, length);
      this.head = (this.head + 1) % this.capacityPackets;
      this.count--;
      this.bytesQueued -= length;
      sent++;
    }
    if (this.count === 0) {
      this.writePos = 0;
      this.uncount();
    }
    if (sent > 0) this.sink.flush();
    this.arm();
  }
}

/**
 * The slow path of both pipelines, for a packet the bucket cannot pay for now (or that must queue behind
 * others): charge it into debt and queue it until the bucket has recovered, unless that would take longer
 * than the shaping delay (drop `rate_limit`) or the queue is full (drop `queue_full`). While several queues
 * of the same user hold packets, each may hold at most its share of the delay's worth of bytes, so one
 * session (or direction) cannot take the whole budget from the others.
 */
export function shapeOrDrop(
  bucket: TokenBucket,
  shaper: ShapingQueue,
  data: Buffer,
  offset: number,
  length: number,
  now: number,
  maxDelayMs: number,
  drops: DropCounters,
): void {
  if (!shaper.hasRoom(length)) {
    drops.queue_full++;
    return;
  }
  const delay = bucket.delayFor(length, now);
  if (delay > maxDelayMs) {
    drops.rate_limit++;
    return;
  }
  if (shaper.pending > 0 && bucket.activeQueues > 1) {
    const share = (bucket.rate * maxDelayMs) / 1000 / bucket.activeQueues;
    if (shaper.queuedBytes + length > share) {
      drops.rate_limit++;
      return;
    }
  }
  bucket.consume(length, now);
  shaper.enqueue(data, offset, length, now + delay, bucket);
}
