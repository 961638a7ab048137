/**
 * Shaping queue of one session and one direction: a ring of bytes holding packets that could not go at once,
 * uncharged, in arrival order, until the user's scheduler (user-scheduler.ts) releases or drops them.
 *
 * Flow: shapeOrDrop(packet) ──► ring full: drop queue_full ──► the user's scheduler admits (or drops) it
 *       ──► push() copies it to the tail ──► scheduler: sendHead() + popHead() when the bucket pays for it,
 *       popTail() when a quieter queue pushes it out, popHead() alone when it waited too long ──► flush() per pass
 *
 * Written by hand: a byte ring that must not allocate per packet and must give up packets at both ends (the
 * head to the sink, the tail to a push-out), which no queue library offers.
 */
import type { Clock } from '../clock.js';
import type { TokenBucket } from './bucket.js';
import type { DropCounters } from './drops.js';
import { UserScheduler } from './user-scheduler.js';

export interface ShaperSink {
  send(data: Buffer, offset: number, length: number): void;
  flush(): void;
}

export class ShapingQueue {
  private ring: Buffer | null = null;
  private readonly offsets: Uint32Array;
  private readonly lengths: Uint32Array;
  /** Arrival time of each packet (clock ms), for the scheduler's longest-wait check. */
  private readonly arrivedAt: Float64Array;
  private head = 0;
  private count = 0;
  /** Byte position just after the newest packet. */
  private writePos = 0;
  /** The newest packets lie at the start of the ring, before the oldest (the ring has wrapped). */
  private wrapped = false;
  private bytesQueued = 0;
  private isClosed = false;

  // ── owned by UserScheduler (user-scheduler.ts); numbers start as numbers, references as null ─────────────
  /** The scheduler this queue is linked into: set while it holds packets, or is parked after running empty. */
  scheduler: UserScheduler | null = null;
  /** Which of the scheduler's lists holds this queue (0 none, 1 sparse, 2 round robin), and the neighbours. */
  list = 0;
  prev: ShapingQueue | null = null;
  next: ShapingQueue | null = null;
  /** Bytes this queue may still send before its turn passes (deficit round robin). */
  deficit = 0;
  /** Release pass in which this queue last sent, and the next queue to flush after that pass. */
  passMark = 0;
  nextTouched: ShapingQueue | null = null;

  constructor(
    readonly clock: Clock,
    private readonly sink: ShaperSink,
    private readonly capacityBytes: number,
    private readonly capacityPackets: number,
  ) {
    this.offsets = new Uint32Array(capacityPackets);
    this.lengths = new Uint32Array(capacityPackets);
    this.arrivedAt = new Float64Array(capacityPackets);
  }

  /** Packets waiting. */
  get pending(): number {
    return this.count;
  }

  get queuedBytes(): number {
    return this.bytesQueued;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Length of the oldest packet (0 when empty). */
  get headLength(): number {
    return this.count === 0 ? 0 : this.lengths[this.head]!;
  }

  /** Arrival time of the oldest packet. */
  get headArrivedAt(): number {
    return this.arrivedAt[this.head]!;
  }

  /** Whether a packet of `length` bytes fits now. */
  hasRoom(length: number): boolean {
    if (this.isClosed || this.count >= this.capacityPackets || length > this.capacityBytes) return false;
    return this.placeFor(length) >= 0;
  }

  /** Copy a packet to the tail; false (nothing done) when it does not fit, which hasRoom() tells beforehand. */
  push(data: Buffer, offset: number, length: number, now: number): boolean {
    if (this.isClosed) return false;
    const at = this.placeFor(length);
    if (at < 0) return false;
    const ring = (this.ring ??= Buffer.allocUnsafe(this.capacityBytes));
    data.copy(ring, at, offset, offset + length);
    if (at === 0 && this.count > 0) this.wrapped = true;
    const slot = (this.head + this.count) % this.capacityPackets;
    this.offsets[slot] = at;
    this.lengths[slot] = length;
    this.arrivedAt[slot] = now;
    this.writePos = at + length;
    this.count++;
    this.bytesQueued += length;
    return true;
  }

  /** Hand the oldest packet to the sink (it stays queued until popHead). */
  sendHead(): void {
    if (this.count === 0 || this.ring === null) return;
    this.sink.send(this.ring, this.offsets[this.head]!, this.lengths[this.head]!);
  }

  /** Forget the oldest packet; returns its length. */
  popHead(): number {
    if (this.count === 0) return 0;
    const length = this.lengths[this.head]!;
    const start = this.offsets[this.head]!;
    this.head = (this.head + 1) % this.capacityPackets;
    this.count--;
    this.bytesQueued -= length;
    if (this.count === 0) {
      this.writePos = 0;
      this.wrapped = false;
    } else if (this.offsets[this.head]! < start) this.wrapped = false; // the oldest is now at the start too
    return length;
  }

  /** Forget the newest packet (pushed out); returns its length. */
  popTail(): number {
    if (this.count === 0) return 0;
    const slot = (this.head + this.count - 1) % this.capacityPackets;
    const length = this.lengths[slot]!;
    this.count--;
    this.bytesQueued -= length;
    if (this.count === 0) {
      this.writePos = 0;
      this.wrapped = false;
      return length;
    }
    // The tail is now the packet before it; one at 0 was the first after a wrap.
    const prev = (slot + this.capacityPackets - 1) % this.capacityPackets;
    this.writePos = this.offsets[prev]! + this.lengths[prev]!;
    if (this.offsets[slot] === 0) this.wrapped = false;
    return length;
  }

  flush(): void {
    this.sink.flush();
  }

  /** Drop everything queued and leave the scheduler (session ended). */
  close(): void {
    this.isClosed = true;
    this.scheduler?.remove(this);
    this.count = 0;
    this.bytesQueued = 0;
    this.writePos = 0;
    this.wrapped = false;
    this.ring = null;
  }

  // Where a packet of `length` bytes would be written: contiguous, wrapping to 0 when the end is too short.
  // (A flag, not writePos < start, tells a wrapped ring: a wrapped tail may end exactly at the head.)
  private placeFor(length: number): number {
    if (this.count === 0) return length <= this.capacityBytes ? 0 : -1;
    const start = this.offsets[this.head]!;
    if (this.wrapped) return this.writePos + length <= start ? this.writePos : -1;
    if (this.writePos + length <= this.capacityBytes) return this.writePos;
    return length <= start ? 0 : -1;
  }
}

/**
 * The slow path of both pipelines, for a packet the bucket cannot pay for now (or that must wait behind its
 * queue's packets): drop it queue_full when its queue's ring has no room, else hand it to the user's scheduler
 * (made on first use and kept on the bucket), which queues it uncharged or drops it rate_limit. The scheduler
 * takes `maxDelayMs` and `drops` from the first call; both are the forwarder's, the same for every pipeline.
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
  const scheduler = bucket.scheduler ?? (bucket.scheduler = new UserScheduler(bucket, shaper.clock, maxDelayMs, drops));
  scheduler.admit(shaper, data, offset, length, now);
}
