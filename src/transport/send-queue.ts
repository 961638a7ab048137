/**
 * The bounded, drain-aware send side of one tunnel connection (shared by the WebTransport connection and the
 * in-memory pair).
 *
 * Flow: sendPacket() -> limit check (drop + count when `limitPackets` packets wait) -> encoder coalesces into
 * the open datagram -> full or flushed datagrams go into a ring -> pump() writes while the wire is writable,
 * else asks the wire to call back once it drained. Nothing here allocates per packet or returns promises.
 */
import { DatagramEncoder } from './framing.js';
import type { TunnelStats } from './types.js';

/** Where sealed datagrams go: a transport that may push back. */
export interface DatagramWire {
  /** Whether a write now would be taken without piling up in an unbounded buffer. */
  canWrite(): boolean;
  write(datagram: Buffer): void;
  /** Call `onWritable` once when canWrite() may have become true again. */
  waitWritable(onWritable: () => void): void;
  /** Optional: called around a run of write() calls so the wire can hand them down in one go. */
  cork?(): void;
  uncork?(): void;
}

/** Ring slots made with the first sealed datagram. */
const INITIAL_RING = 16;

export interface SendQueueOptions {
  readonly limitPackets: number;
  readonly maxDatagramBytes: number;
  readonly stats: TunnelStats;
  readonly wire: DatagramWire;
  /** Bytes the wire wants free before each datagram (DatagramEncoder headroom); default 0. */
  readonly headroom?: number;
}

export class SendQueue {
  private readonly encoder: DatagramEncoder;
  private readonly limit: number;
  private readonly stats: TunnelStats;
  private readonly wire: DatagramWire;
  /** Sealed datagrams waiting for the wire; empty until the first one (an idle session holds no ring). */
  private ring: (Buffer | undefined)[] = [];
  private ringPackets: number[] = [];
  private head = 0;
  private size = 0;
  private sealedPackets = 0;
  private waiting = false;
  private closed = false;
  /** Datagrams sealed before flush() (full ones, mid-batch) are written corked; flush() uncorks. */
  private corked = false;
  private readonly onWritable = (): void => {
    this.waiting = false;
    this.pump();
    if (this.corked) {
      this.corked = false;
      this.wire.uncork?.();
    }
  };

  constructor(options: SendQueueOptions) {
    if (!Number.isInteger(options.limitPackets) || options.limitPackets < 1) {
      throw new RangeError(`sendQueuePackets must be a positive integer, got ${options.limitPackets}`);
    }
    this.limit = options.limitPackets;
    this.stats = options.stats;
    this.wire = options.wire;
    this.encoder = new DatagramEncoder(options.maxDatagramBytes, (datagram, packets) => this.enqueue(datagram, packets), undefined, options.headroom ?? 0);
  }

  /** Packets accepted but not yet handed to the wire. */
  get queuedPackets(): number {
    return this.sealedPackets + this.encoder.openPackets;
  }

  get maxDatagramBytes(): number {
    return this.encoder.maxDatagramBytes;
  }

  setMaxDatagramBytes(bytes: number): void {
    this.encoder.setMaxDatagramBytes(bytes);
  }

  sendPacket(data: Uint8Array, offset: number, length: number): boolean {
    if (this.closed) return false;
    if (this.sealedPackets + this.encoder.openPackets >= this.limit) {
      this.stats.queueDrops++;
      return false;
    }
    if (!this.encoder.add(data, offset, length)) {
      this.stats.queueDrops++;
      return false;
    }
    return true;
  }

  /** One super-packet as a unit (its own datagram; see framing.ts); counts as one packet against the limit. */
  sendSuperPacket(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): boolean {
    if (this.closed) return false;
    if (this.sealedPackets + this.encoder.openPackets >= this.limit || !this.encoder.addSuper(data, offset, length, kind, gsoSize)) {
      this.stats.queueDrops++;
      return false;
    }
    return true;
  }

  flush(): void {
    if (this.closed) return;
    this.encoder.seal();
    if (this.corked) {
      this.corked = false;
      this.wire.uncork?.();
    }
  }

  /** Forget everything queued; later calls are no-ops. */
  close(): void {
    this.closed = true;
    this.encoder.release();
    this.ring = [];
    this.ringPackets = [];
    this.size = 0;
    this.sealedPackets = 0;
  }

  private enqueue(datagram: Buffer, packets: number): void {
    if (this.size === this.ring.length) this.grow();
    const tail = (this.head + this.size) % this.ring.length;
    this.ring[tail] = datagram;
    this.ringPackets[tail] = packets;
    this.size++;
    this.sealedPackets += packets;
    this.pump();
  }

  private pump(): void {
    while (this.size > 0 && !this.closed) {
      if (!this.wire.canWrite()) {
        if (this.corked) {
          // What waits corked must go down before waiting: the wire drains only what it was handed.
          this.corked = false;
          this.wire.uncork?.();
          if (this.wire.canWrite()) continue;
        }
        if (!this.waiting) {
          this.waiting = true;
          this.wire.waitWritable(this.onWritable);
        }
        return;
      }
      const datagram = this.ring[this.head]!;
      this.sealedPackets -= this.ringPackets[this.head]!;
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.ring.length;
      this.size--;
      this.stats.datagramsSent++;
      if (!this.corked && this.wire.cork !== undefined) {
        this.corked = true;
        this.wire.cork();
      }
      this.wire.write(datagram);
    }
  }

  /** The ring starts small and doubles when full (bounded by the packet limit; fragments can need more). */
  private grow(): void {
    const capacity = Math.max(INITIAL_RING, this.ring.length * 2);
    const ring = new Array<Buffer | undefined>(capacity);
    const counts = new Array<number>(capacity).fill(0);
    for (let i = 0; i < this.size; i++) {
      const from = (this.head + i) % this.ring.length;
      ring[i] = this.ring[from];
      counts[i] = this.ringPackets[from]!;
    }
    this.ring = ring;
    this.ringPackets = counts;
    this.head = 0;
  }
}
