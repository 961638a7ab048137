/**
 * Packet storage of one user's shaping scheduler: one byte ring and one ring of packet slots, allocated when
 * the user's first packet must wait and dropped by the scheduler after a while of idleness.
 *
 *   put(packet) ──► bytes copied to the ring's write position (wrapping to 0 when the end is too short),
 *                   slot = the next one in ring order ──► the scheduler links the slot into its flow
 *   free(slot)  ──► marked free; the oldest slots that are free are given back, with their bytes
 *
 * Packets leave out of arrival order (the scheduler serves flows in turn), so a freed packet in the middle of
 * the ring keeps its bytes until every older packet is freed too. That is bounded: the scheduler holds at most
 * what the user's limit sends within the shaping delay and drops what waited longer, and the ring holds
 * several times that (see storeSize in user-scheduler.ts); a ring that is full anyway drops store_full.
 *
 * Written by hand: a byte ring that must not allocate per packet and frees packets out of order.
 */
/**
 * `Owner`: what a packet is to be handed to (the gateway's scheduler: the session and direction's ShapingQueue;
 * the client's send queue: nothing, one connection).
 */
export class PacketStore<Owner extends object | null> {
  readonly ring: Buffer;
  /** Per slot: where its bytes start, how many, when it arrived (clock ms), the next slot of its flow. */
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly arrivedAt: Float64Array;
  readonly next: Int32Array;
  /** Per slot: who it goes to (null once freed). */
  readonly owners: (Owner | null)[];
  private readonly held: Uint8Array;
  /** Oldest slot not given back yet (always held while count > 0), and slots from there on, freed or not. */
  private head = 0;
  private count = 0;
  /** Byte position just after the newest packet. */
  private writePos = 0;
  /** The newest packets lie at the start of the ring, before the oldest (the ring has wrapped). */
  private wrapped = false;
  /** Subtracted from the arrival time put() is given (the scheduler's excess clock; see user-scheduler.ts). */
  arrivalOffset = 0;

  constructor(
    readonly capacityBytes: number,
    readonly capacitySlots: number,
  ) {
    this.ring = Buffer.allocUnsafe(capacityBytes);
    this.offsets = new Uint32Array(capacitySlots);
    this.lengths = new Uint32Array(capacitySlots);
    this.arrivedAt = new Float64Array(capacitySlots);
    this.next = new Int32Array(capacitySlots);
    this.owners = new Array<Owner | null>(capacitySlots).fill(null);
    this.held = new Uint8Array(capacitySlots);
  }

  /** Copy a packet in (arrived at `now` less arrivalOffset); its slot, or -1 when the ring has no room for it. */
  put(data: Buffer, offset: number, length: number, now: number, owner: Owner): number {
    if (this.count >= this.capacitySlots) return -1;
    const at = this.placeFor(length);
    if (at < 0) return -1;
    data.copy(this.ring, at, offset, offset + length);
    if (at === 0 && this.count > 0) this.wrapped = true;
    const slot = (this.head + this.count) % this.capacitySlots;
    this.offsets[slot] = at;
    this.lengths[slot] = length;
    this.arrivedAt[slot] = now - this.arrivalOffset;
    this.next[slot] = -1;
    this.owners[slot] = owner;
    this.held[slot] = 1;
    this.writePos = at + length;
    this.count++;
    return slot;
  }

  /** Give a slot back (its bytes come back once every older slot is given back too). */
  free(slot: number): void {
    this.held[slot] = 0;
    this.owners[slot] = null;
    while (this.count > 0 && this.held[this.head] === 0) {
      const start = this.offsets[this.head]!;
      this.head = (this.head + 1) % this.capacitySlots;
      this.count--;
      if (this.count === 0) {
        this.writePos = 0;
        this.wrapped = false;
      } else if (this.offsets[this.head]! < start) this.wrapped = false; // the oldest is now at the start too
    }
  }

  /** Slots from the oldest held one to the newest, freed ones in between included (for tests). */
  get span(): number {
    return this.count;
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
