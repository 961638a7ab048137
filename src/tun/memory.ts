/**
 * In-memory TunDevice for unit tests. inject() plays the kernel: it fills the same reused batch layout as
 * LinuxTun (one Buffer at fixed stride + lengths, at most batchSize packets per handler call) and calls the
 * handler synchronously, so a throwing handler throws out of inject(). Packets injected before onBatch() wait
 * and are delivered on a microtask after it, like packets queued in the kernel. After each call the used slots
 * are overwritten with POISON_BYTE, so a handler that keeps a view past its call sees garbage, as it would
 * with the real device. With `superPackets`, injectSuper() delivers super-packets the way a TSO device does
 * and writeGso() records them whole (writtenSuper).
 */
import { QuicgateError } from '../errors.js';
import { constants as osConstants } from 'node:os';
import { createTunBatch, DEFAULT_TUN_BATCH_SIZE, GSO_ECN, GSO_META, GsoKind } from './device.js';
import type { TunBatch, TunBatchHandler, TunDevice } from './device.js';

export const POISON_BYTE = 0xee;
const EAGAIN = osConstants.errno.EAGAIN;

export interface MemoryTunOptions {
  readonly name?: string;
  readonly mtu?: number;
  readonly batchSize?: number;
  /** Slots of 64 KB and injectSuper(): a device with TSO reads. */
  readonly superPackets?: boolean;
}

/** A super-packet handed to writeGso. */
export interface WrittenSuperPacket {
  readonly packet: Uint8Array;
  readonly kind: number;
  readonly gsoSize: number;
}

/** Return true to make write() of this packet fail (a drop), as if the kernel refused it. */
export type WriteRefusal = (packet: Uint8Array) => boolean;

export class MemoryTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly superPackets: boolean;
  /** Super-packets written with writeGso (copies), in order; they are not in `written`. */
  readonly writtenSuper: WrittenSuperPacket[] = [];
  /** Copies of every packet written and accepted, in order. */
  readonly written: Uint8Array[] = [];
  /** Packets refused because of refuseWrite. */
  writeDrops = 0;
  /** writeBatch() calls so far. */
  writeBatches = 0;
  /** Failure injection: when set and it returns true, write() returns false and nothing is recorded. */
  refuseWrite: WriteRefusal | undefined;
  private readonly batch: TunBatch;
  private readonly waiting: Uint8Array[] = [];
  private handler: TunBatchHandler | undefined;
  private closed = false;

  constructor(options: MemoryTunOptions = {}) {
    this.name = options.name ?? 'memtun0';
    this.mtu = options.mtu ?? 1400;
    this.superPackets = options.superPackets ?? false;
    this.batch = createTunBatch(this.mtu, options.batchSize ?? DEFAULT_TUN_BATCH_SIZE, this.superPackets);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  onBatch(handler: TunBatchHandler): void {
    if (this.closed) throw new QuicgateError('QG_ERR_CLOSED', `TUN ${this.name} is closed`);
    const first = this.handler === undefined;
    this.handler = handler;
    if (first && this.waiting.length > 0) queueMicrotask(() => this.flushWaiting());
  }

  /**
   * Delivers packets as the kernel would: in batches of at most batchSize, each in the reused buffer.
   * Returns the number of handler calls made (0 if no handler yet: the packets wait for onBatch).
   */
  inject(packets: readonly Uint8Array[]): number {
    if (this.closed) throw new QuicgateError('QG_ERR_CLOSED', `TUN ${this.name} is closed`);
    for (const packet of packets) {
      if (packet.length === 0 || packet.length > this.mtu) {
        throw new RangeError(`packet of ${packet.length} bytes does not fit MTU ${this.mtu}`);
      }
    }
    if (this.handler === undefined) {
      this.waiting.push(...packets.map((p) => Uint8Array.from(p)));
      return 0;
    }
    return this.deliver(packets);
  }

  /** Delivers one super-packet (batch of one, meta filled as the native reader does); needs superPackets. */
  injectSuper(packet: Uint8Array, kind: number, gsoSize: number, headerLength: number): void {
    // headerLength: IP + TCP/UDP header, as the kernel's hdr_len
    if (this.closed) throw new QuicgateError('QG_ERR_CLOSED', `TUN ${this.name} is closed`);
    const handler = this.handler;
    if (!this.superPackets || handler === undefined) throw new Error('injectSuper needs superPackets and a handler');
    const batch = this.batch;
    if (packet.length > batch.stride) throw new RangeError(`super-packet of ${packet.length} bytes does not fit a slot`);
    batch.data.set(packet, 0);
    batch.lengths[0] = packet.length;
    const k = kind & ~GSO_ECN;
    const v4 = k === GsoKind.tcp4 || k === GsoKind.udp4;
    const tcp = k === GsoKind.tcp4 || k === GsoKind.tcp6;
    const csumStart = v4 ? (packet[0]! & 0x0f) * 4 : 40;
    batch.meta.set([kind, gsoSize, headerLength, csumStart, tcp ? 16 : 6], 0);
    batch.count = 1;
    try {
      handler(batch);
    } finally {
      batch.data.fill(POISON_BYTE, 0, batch.stride);
      batch.meta.fill(0, 0, GSO_META);
    }
  }

  writeGso(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): number {
    if (offset < 0 || length <= 0 || offset + length > data.length) throw new RangeError('writeGso: offset/length outside data');
    const packet = data.subarray(offset, offset + length);
    if (this.closed || this.refuseWrite?.(packet) === true) {
      this.writeDrops++;
      return EAGAIN;
    }
    this.writtenSuper.push({ packet: Uint8Array.from(packet), kind, gsoSize });
    return 0;
  }

  write(data: Uint8Array, offset: number, length: number): boolean {
    if (offset < 0 || length <= 0 || offset + length > data.length) {
      throw new RangeError('write: offset/length outside data');
    }
    const packet = data.subarray(offset, offset + length);
    if (this.closed || this.refuseWrite?.(packet) === true) {
      this.writeDrops++;
      return false;
    }
    this.written.push(Uint8Array.from(packet));
    return true;
  }

  /** Same contract as LinuxTun.writeBatch (without coalescing): returns how many packets were accepted. */
  writeBatch(batch: TunBatch, status?: Uint8Array): number {
    let accepted = 0;
    for (let i = 0; i < batch.count; i++) {
      const ok = this.write(batch.data, i * batch.stride, batch.lengths[i] ?? 0);
      if (ok) accepted++;
      if (status !== undefined) status[i] = ok ? 1 : 0;
    }
    this.writeBatches++;
    return accepted;
  }

  close(): Promise<void> {
    this.closed = true;
    this.handler = undefined;
    this.waiting.length = 0;
    return Promise.resolve();
  }

  private flushWaiting(): void {
    if (this.closed || this.handler === undefined) return;
    this.deliver(this.waiting.splice(0));
  }

  private deliver(packets: readonly Uint8Array[]): number {
    const batch = this.batch;
    const capacity = batch.lengths.length;
    let calls = 0;
    for (let first = 0; first < packets.length; first += capacity) {
      const handler = this.handler;
      if (this.closed || handler === undefined) break; // the handler closed the device
      const count = Math.min(capacity, packets.length - first);
      for (let i = 0; i < count; i++) {
        const packet = packets[first + i]!;
        batch.data.set(packet, i * batch.stride);
        batch.lengths[i] = packet.length;
      }
      batch.count = count;
      calls++;
      try {
        handler(batch);
      } finally {
        batch.data.fill(POISON_BYTE, 0, count * batch.stride);
      }
    }
    return calls;
  }
}
