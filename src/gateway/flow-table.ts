/**
 * The flow table of one user's shaping scheduler: a fixed number of flow queues, found by the packet's flow
 * hash in a set-associative table (CAKE's way of handling collisions): the hash picks a set of WAYS queues; a
 * queue whose tag is that hash is the flow's, else a queue of the set that is free takes the tag; only when
 * all WAYS queues of the set hold other busy flows do two flows share one (counted in `collisions`).
 *
 * All state lives in typed arrays indexed by flow number, made once with the table: nothing is allocated per
 * packet, and a double stored in a Float64Array is never boxed. Its users (the gateway's per-user scheduler,
 * user-scheduler.ts, and the client's send queue, src/client/fair-send-queue.ts) own the meaning of the
 * fields; this file finds a flow for a hash and keeps the two lists of deficit round robin (fq_codel's new
 * and old flows, RFC 8290) with the order in which flows are served.
 *
 * Written by hand: a fixed, allocation-free hash table over typed arrays (no library offers one).
 */

/**
 * Bytes a flow may send per turn, and the priority a new flow gets: 1500, one full-size packet at the usual
 * MTU (the tunnel MTU defaults to 1400), as fq_codel's default quantum. A sparse flow's packet (ping, ACK,
 * DNS) fits in it, while a flow that turns out to be bulk gets at most one full-size packet ahead per arrival.
 */
export const QUANTUM = 1500;

/** Queues per set: 8, as CAKE. A user would need 9 busy flows hashing into one set to share a queue. */
export const WAYS = 8;
/** Which list a flow is on. */
export const NO_LIST = 0;
export const NEW_LIST = 1;
export const OLD_LIST = 2;

export class FlowTable {
  readonly flows: number;
  private readonly setMask: number;
  /** Per flow: hash of the flow that holds it. */
  readonly tags: Int32Array;
  /** Per flow: oldest and newest packet slot (packet-store.ts), -1 when empty. */
  readonly heads: Int32Array;
  readonly tails: Int32Array;
  /** Per flow: packets and bytes queued. */
  readonly packets: Int32Array;
  readonly bytes: Int32Array;
  /** Per flow: bytes it may still send in this turn of the round robin (negative after a large packet). */
  readonly deficits: Int32Array;
  /** Per flow: NO_LIST, NEW_LIST or OLD_LIST, and the next flow on that list (-1 at the end). */
  readonly lists: Uint8Array;
  readonly nexts: Int32Array;
  /** Per flow, CoDel (RFC 8289): when sojourn first stayed above target (0: it did not), next drop, drops. */
  readonly firstAbove: Float64Array;
  readonly dropNext: Float64Array;
  readonly dropCount: Int32Array;
  readonly lastCount: Int32Array;
  readonly dropping: Uint8Array;
  /** Per flow: its head slot when that is a packet larger than the whole budget (admitted alone), else -1. */
  readonly oversizeSlot: Int32Array;
  /** Packets that had to share a queue with another flow (all ways of their set busy). */
  collisions = 0;
  /** The new-flow and old-flow lists (first and last flow, -1 when empty), linked through `nexts`. */
  newHead = -1;
  newTail = -1;
  oldHead = -1;
  oldTail = -1;

  /** `sets` must be a power of two. */
  constructor(sets: number) {
    this.flows = sets * WAYS;
    this.setMask = sets - 1;
    const n = this.flows;
    this.tags = new Int32Array(n);
    this.heads = new Int32Array(n).fill(-1);
    this.tails = new Int32Array(n).fill(-1);
    this.packets = new Int32Array(n);
    this.bytes = new Int32Array(n);
    this.deficits = new Int32Array(n);
    this.lists = new Uint8Array(n);
    this.nexts = new Int32Array(n).fill(-1);
    this.firstAbove = new Float64Array(n);
    this.dropNext = new Float64Array(n);
    this.dropCount = new Int32Array(n);
    this.lastCount = new Int32Array(n);
    this.dropping = new Uint8Array(n);
    this.oversizeSlot = new Int32Array(n).fill(-1);
  }

  /** The flow queue for `hash`. A queue taken anew starts with fresh round-robin and CoDel state. */
  lookup(hash: number): number {
    const base = (hash & this.setMask) * WAYS;
    let free = -1;
    for (let f = base; f < base + WAYS; f++) {
      const busy = this.lists[f] !== NO_LIST || this.packets[f] !== 0;
      if (!busy) {
        if (free < 0) free = f;
      } else if (this.tags[f] === hash) return f;
    }
    if (free < 0) {
      this.collisions++;
      return base + ((hash >>> 29) & (WAYS - 1));
    }
    this.tags[free] = hash;
    this.deficits[free] = 0;
    this.firstAbove[free] = 0;
    this.dropNext[free] = 0;
    this.dropCount[free] = 0;
    this.lastCount[free] = 0;
    this.dropping[free] = 0;
    return free;
  }

  /** Whether any flow is on a list. */
  get linked(): boolean {
    return this.newHead >= 0 || this.oldHead >= 0;
  }

  /** A flow that was on no list joins the new-flow list with one quantum (sparse flows first). */
  addNew(f: number): void {
    this.deficits[f] = QUANTUM;
    this.append(f, NEW_LIST);
  }

  /**
   * The next flow to send from (fq_codel's dequeue order): the new list's head, else the old list's; a flow
   * whose deficit is spent gets another quantum at the back of the old list; an empty flow from the new list
   * is parked at the back of the old one (while that holds flows, so a flow that empties after every packet
   * cannot go first every time), an empty one from the old list leaves (its CoDel state with it). -1: none.
   */
  select(): number {
    for (;;) {
      let f = this.newHead;
      const fromNew = f >= 0;
      if (!fromNew) {
        f = this.oldHead;
        if (f < 0) return -1;
      }
      if (this.deficits[f]! <= 0) {
        this.deficits[f] = this.deficits[f]! + QUANTUM;
        this.popList(fromNew);
        this.append(f, OLD_LIST);
        continue;
      }
      if (this.packets[f] === 0) {
        this.popList(fromNew);
        if (fromNew && this.oldHead >= 0) this.append(f, OLD_LIST);
        else {
          this.lists[f] = NO_LIST;
          this.dropping[f] = 0;
        }
        continue;
      }
      return f;
    }
  }

  /** Every flow leaves its list (nothing waits any more). */
  unlinkAll(): void {
    for (let f = this.newHead; f >= 0; f = this.nexts[f]!) this.lists[f] = NO_LIST;
    for (let f = this.oldHead; f >= 0; f = this.nexts[f]!) this.lists[f] = NO_LIST;
    this.newHead = this.newTail = this.oldHead = this.oldTail = -1;
  }

  /**
   * The flow holding the most bytes, more than `atLeast`, other than `except`, whose head slot is not
   * `pinned` nor its oversizeSlot (fq_codel's overflow victim). -1: none.
   */
  fattestBut(except: number, atLeast: number, pinned: number): number {
    let best = -1;
    let most = atLeast;
    for (let pass = 0; pass < 2; pass++) {
      for (let f = pass === 0 ? this.newHead : this.oldHead; f >= 0; f = this.nexts[f]!) {
        const head = this.heads[f]!;
        const bytes = this.bytes[f]!;
        if (f !== except && bytes > most && head !== pinned && head !== this.oversizeSlot[f]) {
          best = f;
          most = bytes;
        }
      }
    }
    return best;
  }

  // Remove the head of the new list (fromNew) or the old list.
  private popList(fromNew: boolean): void {
    if (fromNew) {
      const f = this.newHead;
      this.newHead = this.nexts[f]!;
      if (this.newHead < 0) this.newTail = -1;
      this.nexts[f] = -1;
    } else {
      const f = this.oldHead;
      this.oldHead = this.nexts[f]!;
      if (this.oldHead < 0) this.oldTail = -1;
      this.nexts[f] = -1;
    }
  }

  private append(f: number, list: number): void {
    this.lists[f] = list;
    this.nexts[f] = -1;
    if (list === NEW_LIST) {
      if (this.newTail < 0) this.newHead = f;
      else this.nexts[this.newTail] = f;
      this.newTail = f;
    } else {
      if (this.oldTail < 0) this.oldHead = f;
      else this.nexts[this.oldTail] = f;
      this.oldTail = f;
    }
  }
}
