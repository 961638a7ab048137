/**
 * One user's shaping scheduler: serves every shaping queue of the user (all sessions, both directions) from
 * the user's one token bucket, with one timer. Packets wait uncharged; the bucket is charged when a packet
 * goes, so the long-run rate is the bucket's own arithmetic (tryConsume / delayFor).
 *
 *   admit(queue, packet) ──► bucket cannot pay all queued bytes + this one within the delay?
 *        │                     │ queue below its fair share (budget / queues holding packets, itself counted):
 *        │                     │   push out the tail of the fattest queue (rate_limit) until it fits
 *        │                     └ else: drop rate_limit
 *        ├─ queue was empty (and not parked, see below): it joins the sparse list with one quantum of priority
 *        └─ timer armed for when the bucket can pay the next packet to go (brought forward for a sparse one)
 *
 *   timer ──► pick: sparse list head first, else round robin by bytes (deficit round robin) over the others
 *        ──► waited longer than the delay (+ 1 ms)? drop rate_limit, uncharged ──► bucket pays? send, else stop
 *        ──► flush each queue that sent, once ──► re-arm for the next packet (no timer when nothing waits)
 *
 * Order (fq_codel's idea, RFC 8290, for the handful of queues of one user): a queue that was empty when a
 * packet arrived is "sparse" and goes first for up to QUANTUM bytes, so a ping or an ACK in the quiet direction
 * does not wait behind the other direction's backlog; it then joins the round robin, where the queues share
 * the rate equally by bytes. A sparse queue that runs empty is parked at the back of the round robin until its
 * turn comes, so a queue that empties after every packet cannot go first every time.
 *
 * Queues are linked through their own fields (shaper.ts), so nothing is allocated per packet. A timer is made
 * per release pass, and for a sparse arrival only when that brings the release a millisecond or more forward.
 * All of the user's queues hold at most what the bucket pays within the delay (rate × delay + its balance);
 * a packet that still waits longer (served after later, quieter arrivals, or after a rate cut) is dropped when
 * its turn comes, so "at most the shaping delay" holds for every packet sent.
 *
 * Written by hand: intrusive lists and a deficit round robin over a handful of queues, without allocation per
 * packet and on the injectable Clock; no scheduling library offers that.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { TokenBucket } from './bucket.js';
import type { DropCounters } from './drops.js';
import type { ShapingQueue } from './shaper.js';

/**
 * Bytes a queue may send per turn, and the priority a newly busy queue gets: 1500, one full-size packet at
 * the usual MTU (the tunnel MTU defaults to 1400). A sparse queue's first packet (ping, ACK, DNS, any packet up
 * to 1500 bytes) fits in it, while a queue that turns out to be bulk gets at most one full-size packet ahead of
 * the others per arrival in an empty queue. Smaller would only add turns (a packet goes once its queue has
 * saved up its length) without sharing any fairer at MTU-sized packets; larger would let a "sparse" queue push
 * more bytes ahead of the waiting ones. Jumbo packets (MTU up to 9000) take a few turns to save up for.
 */
export const QUANTUM = 1500;
/**
 * A packet may wait this much longer than the shaping delay before it is dropped instead of sent: one timer
 * tick (timers fire up to about a millisecond late).
 */
export const LATE_MS = 1;
/**
 * Timers fire up to a millisecond early by performance.now() (libuv's loop clock is whole, cached
 * milliseconds). A packet the bucket can pay within this goes now, into at most that much debt, which the
 * refill repays before the next packet: the long-run rate is unchanged and no extra timer is needed.
 */
export const EARLY_MS = 1;
/** A sparse arrival re-arms the timer only when that brings the next release at least this much forward. */
export const REARM_MS = 1;

const NONE = 0;
const SPARSE = 1;
const ROUND = 2;

export class UserScheduler {
  private sparseHead: ShapingQueue | null = null;
  private sparseTail: ShapingQueue | null = null;
  private roundHead: ShapingQueue | null = null;
  private roundTail: ShapingQueue | null = null;
  /** Linked queues holding packets (a sparse queue that ran empty may stay linked, parked, without any). */
  private active = 0;
  /** Bytes waiting over all of them. */
  private bytes = 0;
  private timer: TimerHandle | null = null;
  /** Clock time the timer is armed for. */
  private armedAt = 0;
  /**
   * budget() for the packet being admitted, kept in a field: a double handed to a call that is not inlined
   * would be boxed anew per packet.
   */
  private limit = 0;
  private inPass = false;
  private passNumber = 0;
  /** The queue whose head is inside sink.send() now (a push-out during that call must leave it alone). */
  private sending: ShapingQueue | null = null;
  private readonly fire = (): void => this.release();

  constructor(
    private readonly bucket: TokenBucket,
    private readonly clock: Clock,
    /** The shaping delay: how long the bucket may take to pay for a packet before it is dropped. */
    private readonly delayMs: number,
    private readonly drops: DropCounters,
  ) {}

  /** Queues of the user holding packets now. */
  get activeQueues(): number {
    return this.active;
  }

  /** Bytes waiting over all of the user's queues. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /** Whether a release timer is pending. */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** Whether any queue is linked (holding packets, or parked after it ran empty). */
  get linked(): boolean {
    return this.sparseHead !== null || this.roundHead !== null;
  }

  /**
   * Bytes that may wait in all of the user's queues for a packet arriving `now`: what the bucket pays within
   * the shaping delay, less any debt (plus any tokens it already holds). (admit() computes it in place.)
   */
  budget(now: number): number {
    return (this.bucket.rate * this.delayMs) / 1000 + this.bucket.available(now);
  }

  /** Queue a packet of `queue` (the caller checked queue.hasRoom), or drop it rate_limit. */
  admit(queue: ShapingQueue, data: Buffer, offset: number, length: number, now: number): void {
    // A reload swapped the session's bucket: the queue brings its (uncharged) packets over to this user's
    // scheduler, where they are charged to the new bucket as they go.
    if (queue.scheduler !== this && queue.scheduler !== null) {
      queue.scheduler.remove(queue);
      if (queue.pending > 0) {
        this.active++;
        this.bytes += queue.queuedBytes;
        this.enlist(queue);
      }
    }
    const bucket = this.bucket;
    this.limit = (bucket.rate * this.delayMs) / 1000 + bucket.available(now);
    if (this.bytes + length > this.limit && !this.pushOut(queue, length)) {
      this.drops.rate_limit++;
      return;
    }
    const wasEmpty = queue.pending === 0;
    if (!queue.push(data, offset, length, now)) {
      this.drops.queue_full++; // shapeOrDrop checked hasRoom(): only a caller that did not gets here
      return;
    }
    this.bytes += length;
    if (wasEmpty) this.active++;
    // A queue that was empty and is not parked in the round robin is sparse: it goes first.
    const sparse = wasEmpty && queue.scheduler !== this;
    if (sparse) this.enlist(queue);
    if (this.inPass) return; // the pass re-arms when it ends
    if (this.timer === null) {
      this.arm(now);
      return;
    }
    // A sparse packet may now be the next to go, and due sooner than what the timer waits for.
    if (sparse && this.armedAt - now > REARM_MS && this.select() === queue && now + bucket.delayFor(length, now) + REARM_MS <= this.armedAt) {
      this.arm(now);
    }
  }

  /** Unlink a queue with its packets (closed, or moving to another bucket's scheduler). */
  remove(queue: ShapingQueue): void {
    if (queue.scheduler !== this) return;
    if (queue.pending > 0) {
      this.bytes -= queue.queuedBytes;
      this.active--;
    }
    this.detach(queue);
    if (this.active === 0) this.idle();
  }

  /** The bucket's rate changed: the next packet's release time moved with it. */
  rateChanged(): void {
    if (this.timer !== null && !this.inPass) this.arm(this.clock.now());
  }

  // A packet that would overflow the budget (this.limit) gets in only if its queue holds less than its fair
  // share; room is made by dropping from the tail of the fattest other queue. False: drop the packet instead.
  private pushOut(queue: ShapingQueue, length: number): boolean {
    const budget = this.limit;
    if (length > budget) return false;
    const mine = queue.queuedBytes;
    const sharing = this.active + (mine === 0 ? 1 : 0);
    if (mine >= budget / sharing) return false;
    while (this.bytes + length > budget) {
      const victim = this.fattestBut(queue, mine + length);
      if (victim === null) return false;
      this.bytes -= victim.popTail();
      this.drops.rate_limit++;
      if (victim.pending === 0) this.emptied(victim);
    }
    return true;
  }

  // The queue holding the most bytes, more than `atLeast`, other than `except`, with a packet it may give up.
  private fattestBut(except: ShapingQueue, atLeast: number): ShapingQueue | null {
    let best: ShapingQueue | null = null;
    let most = atLeast;
    for (let pass = 0; pass < 2; pass++) {
      for (let q = pass === 0 ? this.sparseHead : this.roundHead; q !== null; q = q.next) {
        const bytes = q.queuedBytes;
        if (q !== except && bytes > most && q.pending > (q === this.sending ? 1 : 0)) {
          best = q;
          most = bytes;
        }
      }
    }
    return best;
  }

  // The next queue to send from (deficit round robin): the sparse list's head while its head packet fits in
  // the quantum it got, else the round robin's head while its head packet fits in its deficit; a queue whose
  // packet does not fit gets another quantum at the back of the round robin, a parked queue still empty when
  // its turn comes leaves. Null: nothing waits.
  private select(): ShapingQueue | null {
    for (;;) {
      let q = this.sparseHead;
      if (q !== null) {
        if (q.headLength <= q.deficit) return q;
        this.unlistFrom(q);
        q.deficit += QUANTUM;
        this.append(q, ROUND);
        continue;
      }
      q = this.roundHead;
      if (q === null) return null;
      if (q.pending === 0) {
        this.detach(q);
        continue;
      }
      if (q.headLength <= q.deficit) return q;
      q.deficit += QUANTUM;
      if (q !== this.roundTail) {
        this.unlistFrom(q);
        this.append(q, ROUND);
      }
    }
  }

  private release(): void {
    this.timer = null;
    const now = this.clock.now();
    const maxWait = this.delayMs + LATE_MS;
    const bucket = this.bucket;
    const mark = ++this.passNumber;
    let touched: ShapingQueue | null = null;
    this.inPass = true;
    try {
      for (;;) {
        const q = this.select();
        if (q === null) break;
        const length = q.headLength;
        if (now - q.headArrivedAt > maxWait) {
          // Waited too long (a rate cut, quieter queues served first, a late timer): dropped, never charged.
          q.popHead();
          this.bytes -= length;
          this.drops.rate_limit++;
          if (q.pending === 0) this.emptied(q);
          continue;
        }
        if (!bucket.tryConsume(length, now)) {
          if (bucket.delayFor(length, now) > EARLY_MS) break;
          bucket.consume(length, now);
        }
        this.sending = q;
        q.sendHead();
        this.sending = null;
        if (q.scheduler !== this) continue; // closed (or moved) from inside the sink
        q.popHead();
        this.bytes -= length;
        q.deficit -= length;
        if (q.passMark !== mark) {
          q.passMark = mark;
          q.nextTouched = touched;
          touched = q;
        }
        if (q.pending === 0) this.emptied(q);
      }
    } finally {
      // A sink that throws must not leave the scheduler thinking a pass still runs (it would never re-arm).
      this.inPass = false;
      this.sending = null;
    }
    while (touched !== null) {
      const q: ShapingQueue = touched;
      touched = q.nextTouched;
      q.nextTouched = null;
      if (!q.closed) q.flush();
    }
    if (this.timer === null) this.arm(now);
  }

  // (Re)arm the one timer for when the bucket can pay the next packet to go; none while nothing waits.
  private arm(now: number): void {
    if (this.timer !== null) {
      this.timer.cancel();
      this.timer = null;
    }
    const q = this.select();
    if (q === null) return;
    const wait = this.bucket.delayFor(q.headLength, now);
    this.armedAt = now + wait;
    this.timer = this.clock.setTimeout(this.fire, wait);
  }

  // A queue ran empty. From the sparse list it is parked at the back of the round robin while others wait
  // there (fq_codel): a packet arriving before its turn comes round finds it there and gets no priority, so a
  // queue that empties after every packet cannot keep going first. From the round robin it leaves.
  private emptied(queue: ShapingQueue): void {
    this.active--;
    if (this.active === 0) {
      this.idle();
      return;
    }
    if (queue.list === SPARSE && this.roundHead !== null) {
      this.unlistFrom(queue);
      this.append(queue, ROUND);
    } else this.detach(queue);
  }

  // Nothing waits: every queue leaves (parked ones too) and the timer stops.
  private idle(): void {
    while (this.sparseHead !== null) this.detach(this.sparseHead);
    while (this.roundHead !== null) this.detach(this.roundHead);
    this.active = 0;
    this.bytes = 0;
    if (this.timer !== null) {
      this.timer.cancel();
      this.timer = null;
    }
  }

  // Link a queue into the sparse list with one quantum of priority.
  private enlist(queue: ShapingQueue): void {
    queue.scheduler = this;
    queue.deficit = QUANTUM;
    this.append(queue, SPARSE);
  }

  private detach(queue: ShapingQueue): void {
    this.unlistFrom(queue);
    queue.scheduler = null;
    queue.deficit = 0;
  }

  private append(queue: ShapingQueue, list: number): void {
    queue.list = list;
    queue.next = null;
    if (list === SPARSE) {
      queue.prev = this.sparseTail;
      if (this.sparseTail === null) this.sparseHead = queue;
      else this.sparseTail.next = queue;
      this.sparseTail = queue;
    } else {
      queue.prev = this.roundTail;
      if (this.roundTail === null) this.roundHead = queue;
      else this.roundTail.next = queue;
      this.roundTail = queue;
    }
  }

  private unlistFrom(queue: ShapingQueue): void {
    const { prev, next } = queue;
    if (queue.list === SPARSE) {
      if (prev === null) this.sparseHead = next;
      else prev.next = next;
      if (next === null) this.sparseTail = prev;
      else next.prev = prev;
    } else if (queue.list === ROUND) {
      if (prev === null) this.roundHead = next;
      else prev.next = next;
      if (next === null) this.roundTail = prev;
      else next.prev = prev;
    }
    queue.list = NONE;
    queue.prev = null;
    queue.next = null;
  }
}
