/**
 * One user's shaping scheduler: serves every waiting packet of the user (all sessions, both directions) from
 * the user's one token bucket, with one timer, fairly per flow inside the limit (fq_codel, RFC 8290, inside a
 * shaper, as CAKE). Packets wait uncharged; the bucket is charged when a packet goes, so the long-run rate is
 * the bucket's own arithmetic (delayFor / consume).
 *
 *   admit(queue, packet) ──► flow = hash(5-tuple, session and direction) in the flow table (flow-table.ts)
 *        ├─ the bucket cannot pay all waiting bytes + this one within the delay?
 *        │     flow below its fair share (budget / flows holding packets, itself counted): drop from the head
 *        │     of the fattest flow (rate_limit) until it fits; else drop this packet (rate_limit)
 *        ├─ copied into the user's packet store (packet-store.ts; full: store_full), linked to its flow's tail
 *        ├─ flow was on no list: it joins the new-flow list with one quantum (sparse flows first)
 *        └─ timer armed for when the bucket can pay the next packet to go (brought forward for a new flow)
 *
 *   timer ──► pick a flow: new-flow list head first, else the old-flow list (deficit round robin by bytes)
 *        ──► its head waited longer than the delay? drop rate_limit ──► bucket cannot pay it yet? stop
 *        ──► CoDel says drop (sojourn above target for an interval)? drop aqm ──► else charge, send
 *        ──► flush each session and direction that sent, once ──► re-arm (no timer when nothing waits)
 *
 * Flows: a TCP connection's two directions are two flows (the ACKs of a download are a sparse flow of their
 * own and go first, instead of waiting behind the upload's data, or the download's). Every flow of the user
 * shares the limit equally by bytes, whatever session or direction it is in: with TCP up, TCP down and a UDP
 * stream, each gets a third, so neither direction takes more than its flows' shares while the other has demand.
 *
 * Order and drops (fq_codel): a flow that was on no list when a packet arrived is new and goes first for up to
 * QUANTUM bytes, so a ping, an ACK or a DNS query does not wait behind backlogs; it then joins the old-flow
 * list, where flows take turns by bytes (a packet goes while its flow's deficit is positive, so a packet of up
 * to 65535 bytes goes in one turn and the flow then sits out turns until its deficit is paid back). A new flow
 * that runs empty is parked on the old list until its turn comes, so a flow that empties after every packet
 * cannot go first every time. CoDel per flow keeps a responsive flow's queue near the target; an unresponsive
 * flow over its share fills its own queue and is dropped from (by CoDel, by the delay, and at admission as the
 * fattest flow), never the others.
 *
 * Bounds: all of the user's flows hold at most what the bucket pays within the shaping delay (rate × delay +
 * its balance; after a raise of the rate while packets wait, what the storage was made for until it idles:
 * the flows then share the smaller room instead of the ring refusing any packet, store_full); a packet that still
 * waits longer is dropped when its turn comes. Packets up to 65535 bytes: a
 * packet larger than that budget (a TSO super-packet at a low rate) is admitted into an empty flow, outside the
 * budget, and may wait as long as the bucket takes to fill for it; it goes once the bucket is full and leaves
 * debt (bucket.ts), so the long-run rate stays exact. The debt beyond the burst is the super-packet's own time
 * on the link: waits (the delay bound, CoDel's sojourn) are measured on a clock that stands still meanwhile, so
 * the packets behind it are not dropped for it; DRR then has its flow sit out turns until its bytes are even.
 *
 * `shaping: fifo` (bucket.fair false) keeps the scheduler of before: one flow per session and direction, no
 * CoDel, and the pipelines' fast path for a packet whose own queue is empty.
 *
 * Storage (packet store and flow table) is made on the first packet that must wait and dropped after
 * IDLE_TRIM_MS without a waiting packet, so an idle limited user holds none. Nothing is allocated per packet:
 * a timer is made per release pass, and for a new flow's arrival only when that brings the release a
 * millisecond or more forward.
 *
 * Written by hand: fq_codel inside a token-bucket shaper, without allocation per packet and on the injectable
 * Clock; no scheduling library offers that.
 */
import type { Clock, TimerHandle } from '../clock.js';
import { flowHash } from '../packet/flow-hash.js';
import type { TokenBucket } from './bucket.js';
import type { DropCounters } from './drops.js';
import { FlowTable, NO_LIST, QUANTUM, WAYS } from './flow-table.js';
import { PacketStore } from './packet-store.js';
import type { ShapingQueue } from './shaper.js';

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
/** A new flow's arrival re-arms the timer only when that brings the next release at least this much forward. */
export const REARM_MS = 1;
/** CoDel's target sojourn and interval (RFC 8289's defaults, as fq_codel and CAKE). */
export const CODEL_TARGET_MS = 5;
export const CODEL_INTERVAL_MS = 100;
/**
 * A flow holding at most this many bytes (or its share of what the limit sends within the target) is never
 * dropped by CoDel (RFC 8289: a queue of one MTU is not standing). At low rates the target grows to 1.5 such packets' sending time, as CAKE does, so one full-size
 * packet on the wire does not count as a standing queue.
 */
export const CODEL_MTU_BYTES = 1514;
/** Storage not used for this long (no packet waited) is dropped; the next packet to wait makes it anew. */
export const IDLE_TRIM_MS = 5000;

const MIN_STORE_BYTES = 128 * 1024;
const MAX_STORE_BYTES = 16 * 1024 * 1024;
const MIN_SETS = 16;
const MAX_SETS = 128;

/**
 * Store bytes for a user: three times what may wait (rate × delay + burst), as the ring frees out of order,
 * at least two of the largest packets (128 KiB), at most 16 MiB. Flow table: one set of WAYS queues per 8
 * full-size packets that fit, 16 to 128 sets (128 to 1024 flows; fq_codel has 1024).
 */
export function storageSize(rate: number, burst: number, delayMs: number): { bytes: number; slots: number; sets: number } {
  const bytes = Math.min(MAX_STORE_BYTES, Math.max(MIN_STORE_BYTES, Math.ceil(3 * ((rate * delayMs) / 1000 + burst))));
  let sets = MIN_SETS;
  while (sets < MAX_SETS && sets * WAYS * QUANTUM < bytes) sets *= 2;
  return { bytes, slots: Math.max(1024, Math.ceil(bytes / 64)), sets };
}

export class UserScheduler {
  private store: PacketStore<ShapingQueue> | null = null;
  private table: FlowTable | null = null;
  /**
   * The most bytes that may wait for the store as made (rate × delay + burst then; storageSize is three times
   * that). A raise of the rate while packets wait keeps the store until it idles; until then the budget stays
   * at this, so the flows share the smaller room fairly (makeRoom) instead of the ring refusing any packet.
   */
  private storeBudget = 0;
  /** Flows holding packets. */
  private active = 0;
  /** Packets and bytes waiting over all flows. */
  private packets = 0;
  private bytes = 0;
  /** Bytes of the waiting packets admitted as larger than the whole budget (not counted against it). */
  private oversizeBytes = 0;
  /**
   * Time the bucket has spent, in all, repaying packets larger than its burst beyond the burst (clock ms).
   * Waits are measured on a clock that stands still meanwhile: a super-packet's excess is the time it takes
   * on the link, not a wait of the packets behind it (arrival times are stored on that clock).
   */
  private excessMs = 0;
  private timer: TimerHandle | null = null;
  /** Clock time the timer is armed for. */
  private armedAt = 0;
  /**
   * budget() for the packet being admitted, and the CoDel parameters and time of the release pass, kept in
   * fields: a double handed to a call that is not inlined would be boxed anew per packet.
   */
  private limit = 0;
  private passNow = 0;
  private target = CODEL_TARGET_MS;
  private interval = CODEL_INTERVAL_MS;
  /** What the limit sends within the target: a flow holding its share of it or less is not standing. */
  private targetBytes = 0;
  private inPass = false;
  private passNumber = 0;
  /** The slot inside sink.send() now (a push-out or purge during that call must leave it alone). */
  private sendingSlot = -1;
  private trimTimer: TimerHandle | null = null;
  /** When the last packet left (storage idle since). */
  private idleSince = 0;
  private readonly fire = (): void => this.release();
  private readonly trimFire = (): void => this.trimIfIdle();

  constructor(
    private readonly bucket: TokenBucket,
    private readonly clock: Clock,
    /** The shaping delay: how long the bucket may take to pay for a packet before it is dropped. */
    private readonly delayMs: number,
    private readonly drops: DropCounters,
  ) {}

  /** Flows of the user holding packets now. */
  get activeQueues(): number {
    return this.active;
  }

  /** Bytes waiting over all of the user's flows. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /** Packets waiting over all of the user's flows. */
  get queuedPackets(): number {
    return this.packets;
  }

  /** Whether a release timer is pending. */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** Whether any flow is on a list (holding packets, or parked after it ran empty). */
  get linked(): boolean {
    return this.table !== null && this.table.linked;
  }

  /** Bytes held for packet storage now (0 once trimmed). */
  get storageBytes(): number {
    return this.store === null ? 0 : this.store.capacityBytes;
  }

  /** Flow queues in the table (0 once trimmed), and packets that had to share one with another flow. */
  get flowCount(): number {
    return this.table === null ? 0 : this.table.flows;
  }

  get collisions(): number {
    return this.table === null ? 0 : this.table.collisions;
  }

  /**
   * Bytes that may wait in all of the user's flows for a packet arriving `now`: what the bucket pays within
   * the shaping delay, plus any tokens it already holds (debt is not held against it; see admit(), which
   * computes it in place), at most what the store was made for (storeBudget). Packets admitted as larger than
   * the budget are not counted against it.
   */
  budget(now: number): number {
    const available = this.bucket.available(now);
    const limit = (this.bucket.rate * this.delayMs) / 1000 + (available > 0 ? available : 0);
    return this.store === null || limit < this.storeBudget ? limit : this.storeBudget;
  }

  /** Queue a packet of `queue` (the caller checked queue.hasRoom), or drop it. */
  admit(queue: ShapingQueue, data: Buffer, offset: number, length: number, now: number): void {
    // A reload swapped the session's bucket: packets already waiting in the old one's scheduler go from there
    // (charged to the old bucket); new ones wait here.
    queue.scheduler = this;
    const bucket = this.bucket;
    const table = this.table ?? this.allocate();
    const store = this.store!;
    const f = table.lookup(bucket.fair ? flowHash(data, offset, length, queue.salt) : queue.salt);
    // Debt is not held against the budget: what a super-packet left is excess (excessMs), and what a timer's
    // early release left is less than a millisecond's worth.
    const available = bucket.available(now);
    const limit = (bucket.rate * this.delayMs) / 1000 + (available > 0 ? available : 0);
    this.limit = limit < this.storeBudget ? limit : this.storeBudget;
    const oversize = length > this.limit;
    if (oversize) {
      // Larger than all that may wait (a super-packet at a low rate): admitted only into an empty flow, alone.
      if (table.packets[f] !== 0) {
        this.drops.rate_limit++;
        return;
      }
    } else if (this.bytes - this.oversizeBytes + length > this.limit && !this.makeRoom(f, length)) {
      this.drops.rate_limit++;
      return;
    }
    const slot = store.put(data, offset, length, now, queue);
    if (slot < 0) {
      this.drops.store_full++; // the store is full of packets freed out of order (or a reload raised the rate)
      return;
    }
    if (oversize) {
      table.oversizeSlot[f] = slot;
      this.oversizeBytes += length;
    }
    if (table.heads[f]! < 0) table.heads[f] = slot;
    else store.next[table.tails[f]!] = slot;
    table.tails[f] = slot;
    if (table.packets[f] === 0) this.active++;
    table.packets[f] = table.packets[f]! + 1;
    table.bytes[f] = table.bytes[f]! + length;
    queue.count++;
    queue.bytesQueued += length;
    this.packets++;
    this.bytes += length;
    if (bucket.fair) bucket.holding = 1;
    const fresh = table.lists[f] === NO_LIST;
    if (fresh) table.addNew(f);
    if (this.inPass) return; // the pass re-arms when it ends
    if (this.timer === null) {
      this.arm(now);
      return;
    }
    // A new flow's packet may now be the next to go, and due sooner than what the timer waits for.
    if (fresh && this.armedAt - now > REARM_MS && this.select() === f && now + bucket.delayFor(length, now) + REARM_MS <= this.armedAt) {
      this.arm(now);
    }
  }

  /** Forget every waiting packet of `queue` (its session ended); the timer stops with the last packet. */
  purge(queue: ShapingQueue): void {
    const table = this.table;
    const store = this.store;
    if (table === null || store === null) return;
    for (let f = 0; f < table.flows; f++) {
      if (table.packets[f] === 0) continue;
      let kept = -1;
      let prev = -1;
      for (let s = table.heads[f]!; s >= 0; ) {
        const next = store.next[s]!;
        if (store.owners[s] === queue && s !== this.sendingSlot) {
          const length = store.lengths[s]!;
          if (s === table.oversizeSlot[f]) {
            table.oversizeSlot[f] = -1;
            this.oversizeBytes -= length;
          }
          table.bytes[f] = table.bytes[f]! - length;
          table.packets[f] = table.packets[f]! - 1;
          this.bytes -= length;
          this.packets--;
          store.free(s);
        } else {
          if (prev < 0) kept = s;
          else store.next[prev] = s;
          prev = s;
        }
        s = next;
      }
      if (prev >= 0) store.next[prev] = -1;
      table.heads[f] = kept;
      table.tails[f] = prev;
      if (table.packets[f] === 0) this.active--;
    }
    if (this.packets === 0) this.idle();
  }

  /** The bucket's rate changed: the next packet's release time moved with it. */
  rateChanged(): void {
    if (this.timer !== null && !this.inPass) this.arm(this.clock.now());
  }

  /** Drop the storage if no packet waited for IDLE_TRIM_MS (the trim timer calls it; exported for tests). */
  trimIfIdle(): void {
    this.trimTimer = null;
    if (this.store === null || this.packets !== 0) return;
    const idleFor = this.clock.now() - this.idleSince;
    if (idleFor >= IDLE_TRIM_MS) {
      this.store = null;
      this.table = null;
    } else this.trimTimer = this.clock.setTimeout(this.trimFire, IDLE_TRIM_MS - idleFor);
  }

  private allocate(): FlowTable {
    const { bytes, slots, sets } = storageSize(this.bucket.rate, this.bucket.burst, this.delayMs);
    this.store = new PacketStore(bytes, slots);
    this.store.arrivalOffset = this.excessMs;
    this.storeBudget = (this.bucket.rate * this.delayMs) / 1000 + this.bucket.burst;
    this.table = new FlowTable(sets);
    return this.table;
  }

  // A packet of flow `f` that would overflow the budget (this.limit) gets in only if its flow holds less than
  // its fair share; room is made by dropping from the head of the fattest other flow (fq_codel), never a
  // waiting super-packet. False: drop the packet instead.
  private makeRoom(f: number, length: number): boolean {
    const budget = this.limit;
    const table = this.table!;
    const mine = table.bytes[f]!;
    const sharing = this.active + (mine === 0 ? 1 : 0);
    if (mine >= budget / sharing) return false;
    while (this.bytes - this.oversizeBytes + length > budget) {
      const victim = table.fattestBut(f, mine + length, this.sendingSlot);
      if (victim < 0) return false;
      this.drops.rate_limit++;
      this.dropHead(victim);
    }
    return true;
  }

  // The next flow to send from (FlowTable.select), -1: nothing waits.
  private select(): number {
    return this.table === null ? -1 : this.table.select();
  }

  private release(): void {
    this.timer = null;
    const now = this.clock.now();
    const bucket = this.bucket;
    const perMs = bucket.rate / 1000;
    const fair = bucket.fair;
    // Packets up to what the bucket pays within the delay may wait the delay; a larger one (it can only have
    // come in alone) as long as the bucket takes to save up for it, which is at most its burst.
    const delayBytes = perMs * this.delayMs;
    const maxWait = this.delayMs + LATE_MS;
    const mtuMs = CODEL_MTU_BYTES / perMs;
    this.passNow = now;
    this.target = Math.min(Math.max(CODEL_TARGET_MS, 1.5 * mtuMs), this.delayMs);
    this.interval = Math.max(CODEL_INTERVAL_MS + this.target - CODEL_TARGET_MS, 2 * this.target);
    this.targetBytes = perMs * this.target;
    const mark = ++this.passNumber;
    let touched: ShapingQueue | null = null;
    this.inPass = true;
    try {
      for (;;) {
        const f = this.select();
        if (f < 0) break;
        const table = this.table!;
        const store = this.store!;
        const slot = table.heads[f]!;
        const length = store.lengths[slot]!;
        const owner = store.owners[slot]!;
        if (owner.closed) {
          this.dropHead(f); // left in this scheduler when a reload swapped the bucket, and the session ended since
          continue;
        }
        const waited = now - this.excessMs - store.arrivedAt[slot]!;
        const saved = length < bucket.burst ? length : bucket.burst;
        if (waited > (saved > delayBytes ? maxWait + (saved - delayBytes) / perMs : maxWait)) {
          // Waited too long (a rate cut, other flows served first, a late timer): dropped, never charged.
          this.drops.rate_limit++;
          this.dropHead(f);
          continue;
        }
        if (bucket.delayFor(length, now) > EARLY_MS) break;
        if (fair && this.codelDrops(f, slot)) {
          this.drops.aqm++;
          this.dropHead(f);
          continue;
        }
        bucket.consume(length, now);
        if (length > bucket.burst) {
          this.excessMs += (length - bucket.burst) / perMs;
          store.arrivalOffset = this.excessMs;
        }
        this.sendingSlot = slot;
        owner.send(store.ring, store.offsets[slot]!, length);
        this.sendingSlot = -1;
        table.deficits[f] = table.deficits[f]! - length;
        this.dropHead(f);
        if (owner.passMark !== mark && !owner.closed) {
          owner.passMark = mark;
          owner.nextTouched = touched;
          touched = owner;
        }
      }
    } finally {
      // A sink that throws must not leave the scheduler thinking a pass still runs (it would never re-arm).
      this.inPass = false;
      this.sendingSlot = -1;
    }
    while (touched !== null) {
      const q: ShapingQueue = touched;
      touched = q.nextTouched;
      q.nextTouched = null;
      if (!q.closed) q.flush();
    }
    if (this.timer === null) this.arm(now);
  }

  // CoDel (RFC 8289) for flow `f` whose head `slot` is about to go: drop it? Uses passNow, target, interval.
  private codelDrops(f: number, slot: number): boolean {
    const table = this.table!;
    const now = this.passNow;
    const interval = this.interval;
    const sojourn = now - this.excessMs - this.store!.arrivedAt[slot]!;
    // Standing also in bytes: under CPU load the release timer fires late and every packet's sojourn grows
    // with the event loop's lag, not with a queue; a flow is over only if it also holds more than its share of
    // what the limit sends within the target (and more than one full-size packet).
    const bytes = table.bytes[f]!;
    let above = false;
    if (sojourn < this.target || bytes <= CODEL_MTU_BYTES || bytes <= this.targetBytes / this.active) table.firstAbove[f] = 0;
    else if (table.firstAbove[f] === 0) table.firstAbove[f] = now + interval;
    else above = now >= table.firstAbove[f]!;
    if (table.dropping[f] !== 0) {
      if (!above) {
        table.dropping[f] = 0;
        return false;
      }
      if (now < table.dropNext[f]!) return false;
      table.dropCount[f] = table.dropCount[f]! + 1;
      table.dropNext[f] = table.dropNext[f]! + interval / Math.sqrt(table.dropCount[f]!);
      return true;
    }
    if (!above) return false;
    table.dropping[f] = 1;
    // Back to dropping soon after the last time: start near the drop rate that was reached (RFC 8289).
    const delta = table.dropCount[f]! - table.lastCount[f]!;
    table.dropCount[f] = delta > 1 && now - table.dropNext[f]! < 16 * interval ? delta : 1;
    table.lastCount[f] = table.dropCount[f]!;
    table.dropNext[f] = now + interval / Math.sqrt(table.dropCount[f]!);
    return true;
  }

  // Take the head packet off flow `f` (sent or dropped) and give its slot back.
  private dropHead(f: number): void {
    const table = this.table!;
    const store = this.store!;
    const slot = table.heads[f]!;
    const length = store.lengths[slot]!;
    const owner = store.owners[slot];
    const next = store.next[slot]!;
    if (slot === table.oversizeSlot[f]) {
      table.oversizeSlot[f] = -1;
      this.oversizeBytes -= length;
    }
    table.heads[f] = next;
    if (next < 0) table.tails[f] = -1;
    table.bytes[f] = table.bytes[f]! - length;
    table.packets[f] = table.packets[f]! - 1;
    if (table.packets[f] === 0) this.active--;
    if (owner !== null && owner !== undefined && !owner.closed) {
      owner.count--;
      owner.bytesQueued -= length;
    }
    store.free(slot);
    this.bytes -= length;
    if (--this.packets === 0) this.idle();
  }

  // (Re)arm the one timer for when the bucket can pay the next packet to go; none while nothing waits.
  private arm(now: number): void {
    if (this.timer !== null) {
      this.timer.cancel();
      this.timer = null;
    }
    const f = this.select();
    if (f < 0) return;
    const wait = this.bucket.delayFor(this.store!.lengths[this.table!.heads[f]!]!, now);
    this.armedAt = now + wait;
    this.timer = this.clock.setTimeout(this.fire, wait);
  }

  // Nothing waits: every flow leaves its list (parked ones too), the timer stops, the fast path opens, and
  // the storage is dropped after IDLE_TRIM_MS unless a packet waits again (at once if a raised rate outgrew it).
  private idle(): void {
    this.table!.unlinkAll();
    this.active = 0;
    this.bytes = 0;
    this.oversizeBytes = 0;
    this.bucket.holding = 0;
    if (this.timer !== null) {
      this.timer.cancel();
      this.timer = null;
    }
    if (this.store!.capacityBytes < storageSize(this.bucket.rate, this.bucket.burst, this.delayMs).bytes) {
      this.store = null;
      this.table = null;
      return;
    }
    // Kept: as large as the current rate needs (or at the 16 MiB cap), so the budget is the rate's own again.
    this.storeBudget = (this.bucket.rate * this.delayMs) / 1000 + this.bucket.burst;
    this.idleSince = this.clock.now();
    if (this.trimTimer === null) this.trimTimer = this.clock.setTimeout(this.trimFire, IDLE_TRIM_MS);
  }
}
