/**
 * The flow table of one user's shaping scheduler: a fixed number of flow queues, found by the packet's flow
 * hash in a set-associative table (CAKE's way of handling collisions): the hash picks a set of WAYS queues; a
 * queue whose tag is that hash is the flow's, else a queue of the set that is free takes the tag; only when
 * all WAYS queues of the set hold other busy flows do two flows share one (counted in `collisions`).
 *
 * All state lives in typed arrays indexed by flow number, made once with the table: nothing is allocated per
 * packet, and a double stored in a Float64Array is never boxed. The scheduler (user-scheduler.ts) owns the
 * meaning of every field; this file only finds a flow for a hash.
 *
 * Written by hand: a fixed, allocation-free hash table over typed arrays (no library offers one).
 */

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
}
