/**
 * Shaping queue of one session and one direction: where the user's scheduler (user-scheduler.ts) sends the
 * packets of this session and direction, and how many of them wait. The packets themselves wait in the
 * scheduler's storage (packet-store.ts), uncharged, in the flow queue of their 5-tuple, until it releases or
 * drops them.
 *
 * Flow: shapeOrDrop(packet) ──► over this queue's own bound: drop queue_full ──► the user's scheduler admits
 *       (or drops) it ──► scheduler: send() when the bucket pays for it ──► flush() once per release pass
 *
 * The bound follows the user's bucket: it is sized again whenever the bucket's rate or burst differs from what
 * it was sized for (a reload that raises the limit of a live session). A bound sized once at the first wait
 * stayed at the old rate's size after a raise and, blind to flows, dropped every flow of the session while an
 * unresponsive one filled it: a TCP upload beside a UDP stream in one session got 0.135 of 230 Mbit/s, raised
 * from 37 (bench/results/2026-12-08-fairness-quic.txt).
 *
 * The pipelines send a packet straight on (no queue) while pending is 0 and the bucket pays; the bucket
 * refuses while its fair scheduler holds packets of the user (bucket.ts), so no packet passes a waiting one.
 */
import type { Clock } from '../clock.js';
import type { TokenBucket } from './bucket.js';
import type { DropCounters } from './drops.js';
import { UserScheduler } from './user-scheduler.js';

export interface ShaperSink {
  send(data: Buffer, offset: number, length: number): void;
  flush(): void;
}

/** Salts of successive queues: a multiplicative step, so neighbouring queues land in unrelated flows. */
let nextSalt = 0;

const MIN_BOUND_BYTES = 256 * 1024;
const MAX_BOUND_BYTES = 16 * 1024 * 1024;

/**
 * One session and direction's bound in bytes for a bucket of `rate` bytes/s and `burst` bytes: twice the most
 * the user's scheduler lets wait over all flows (rate × delay + a full burst), so it stops only what the
 * scheduler would not (super-packets admitted outside its budget); within 256 KiB .. 16 MiB. Packets: one per
 * 64 bytes of it.
 */
export function queueBoundBytes(rate: number, burst: number, delayMs: number): number {
  return Math.min(MAX_BOUND_BYTES, Math.max(MIN_BOUND_BYTES, Math.ceil(2 * ((rate * delayMs) / 1000 + burst))));
}

export class ShapingQueue {
  /** Mixed into the flow hash: the same 5-tuple in another session or direction is another flow. */
  readonly salt: number;
  private isClosed = false;

  // ── owned by UserScheduler (user-scheduler.ts); numbers start as numbers, references as null ─────────────
  /** Packets and bytes of this queue waiting in schedulers. */
  count = 0;
  bytesQueued = 0;
  /** The scheduler this queue's packets last went to. */
  scheduler: UserScheduler | null = null;
  /** Release pass in which this queue last sent, and the next queue to flush after that pass. */
  passMark = 0;
  nextTouched: ShapingQueue | null = null;

  /** Most bytes and packets this queue may have waiting (queueBoundBytes), and the bucket figures they were sized for. */
  private capacityBytes = 0;
  private capacityPackets = 0;
  private sizedRate = -1;
  private sizedBurst = -1;

  constructor(
    readonly clock: Clock,
    private readonly sink: ShaperSink,
    /** The shaping delay (the forwarder's): the bound is sized for what the bucket pays within it. */
    private readonly delayMs: number,
  ) {
    nextSalt = (nextSalt + 0x9e3779b9) | 0;
    this.salt = nextSalt;
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

  /** The bound in bytes as last sized (0 before the first hasRoom). */
  get boundBytes(): number {
    return this.capacityBytes;
  }

  /** Whether this queue may take another packet of `length` bytes that `bucket` is to pay for. */
  hasRoom(length: number, bucket: TokenBucket): boolean {
    // Two number compares per packet; sized again only when a reload changed the bucket (or swapped it).
    if (bucket.rate !== this.sizedRate || bucket.burst !== this.sizedBurst) this.resize(bucket.rate, bucket.burst);
    return !this.isClosed && this.count < this.capacityPackets && this.bytesQueued + length <= this.capacityBytes;
  }

  private resize(rate: number, burst: number): void {
    this.capacityBytes = queueBoundBytes(rate, burst, this.delayMs);
    this.capacityPackets = Math.max(64, Math.ceil(this.capacityBytes / 64));
    this.sizedRate = rate;
    this.sizedBurst = burst;
  }

  /** Hand a released packet to the pipeline's sink. */
  send(data: Buffer, offset: number, length: number): void {
    this.sink.send(data, offset, length);
  }

  flush(): void {
    this.sink.flush();
  }

  /** Drop everything queued (session ended): the scheduler forgets this queue's packets at once. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.scheduler?.purge(this);
    this.scheduler = null;
    this.count = 0;
    this.bytesQueued = 0;
  }
}

/**
 * The slow path of both pipelines, for a packet the bucket cannot pay for now (or that must wait behind
 * waiting packets): drop it queue_full when its queue is at its own bound, else hand it to the user's scheduler
 * (made on first use and kept on the bucket), which queues it uncharged or drops it. The scheduler takes
 * `maxDelayMs` and `drops` from the first call; both are the forwarder's, the same for every pipeline.
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
  // Offered load, for the fleet's shares (bucket.ts): counted here whether the packet waits or is dropped.
  bucket.offered += length;
  if (!shaper.hasRoom(length, bucket)) {
    drops.queue_full++;
    return;
  }
  const scheduler = bucket.scheduler ?? (bucket.scheduler = new UserScheduler(bucket, shaper.clock, maxDelayMs, drops));
  scheduler.admit(shaper, data, offset, length, now);
}
