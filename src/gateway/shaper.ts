/**
 * Shaping queue of one session and one direction: where the user's scheduler (user-scheduler.ts) sends the
 * packets of this session and direction, and how many of them wait. The packets themselves wait in the
 * scheduler's storage (packet-store.ts), uncharged, in the flow queue of their 5-tuple, until it releases or
 * drops them.
 *
 * Flow: shapeOrDrop(packet) ──► over this queue's own bound: drop queue_full ──► the user's scheduler admits
 *       (or drops) it ──► scheduler: send() when the bucket pays for it ──► flush() once per release pass
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

  constructor(
    readonly clock: Clock,
    private readonly sink: ShaperSink,
    /** Most bytes and packets this queue may have waiting (the user's scheduler bounds all queues together). */
    private readonly capacityBytes: number,
    private readonly capacityPackets: number,
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

  /** Whether this queue may take another packet of `length` bytes. */
  hasRoom(length: number): boolean {
    return !this.isClosed && this.count < this.capacityPackets && this.bytesQueued + length <= this.capacityBytes;
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
  if (!shaper.hasRoom(length)) {
    drops.queue_full++;
    return;
  }
  const scheduler = bucket.scheduler ?? (bucket.scheduler = new UserScheduler(bucket, shaper.clock, maxDelayMs, drops));
  scheduler.admit(shaper, data, offset, length, now);
}
