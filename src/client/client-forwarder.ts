/**
 * The client's data path: TUN batches into the tunnel (flush once per batch), tunnel packets into the TUN
 * (staged, one writeBatch per task so the device can coalesce them: src/tun/writer.ts). Super-packets (TSO
 * reads) cross as one unit where the connection carries them (HTTP/2), else segmented natively (HTTP/3);
 * received ones are written to the TUN as one unit.
 * While no connection is up, TUN packets are dropped (and counted) rather than queued: stale packets are
 * worse than lost ones for TCP. When the connection's own send queue is full, packets wait in a queue per
 * flow (fair-send-queue.ts) instead of being dropped in arrival order; super-packets are then segmented and
 * wait as real packets.
 */
import { GSO_META, superPacketHeaderLength, superPacketSegments, superPacketWireBytes } from '../tun/device.js';
import type { TunBatch, TunDevice } from '../tun/device.js';
import { GsoSplitter } from '../tun/gso.js';
import { MAX_WIRE_SUPER_PACKET_BYTES } from '../transport/framing.js';
import { TunWriter, type TunWriteAccount } from '../tun/writer.js';
import type { PacketReceiver, TunnelConnection } from '../transport/types.js';
import { systemClock, type Clock } from '../clock.js';
import { CAPACITY_BYTES, FairSendQueue } from './fair-send-queue.js';

export interface ClientCounters {
  bytesSent: number;
  packetsSent: number;
  bytesReceived: number;
  packetsReceived: number;
  dropsDisconnected: number;
  dropsQueueFull: number;
  dropsTunFull: number;
  /** Super-packets that did not parse (from the TUN or the tunnel). */
  dropsMalformed: number;
}

export class ClientForwarder implements PacketReceiver {
  readonly counters: ClientCounters = {
    bytesSent: 0,
    packetsSent: 0,
    bytesReceived: 0,
    packetsReceived: 0,
    dropsDisconnected: 0,
    dropsQueueFull: 0,
    dropsTunFull: 0,
    dropsMalformed: 0,
  };
  private splitter: GsoSplitter | null = null;
  private connection: TunnelConnection | null = null;
  private readonly sendQueue: FairSendQueue;
  private writer: TunWriter | null = null;
  // Staged writes are counted once the kernel took them (see TunWriter).
  private readonly tunAccount: TunWriteAccount = {
    written: (length, packets) => {
      this.counters.bytesReceived += length;
      this.counters.packetsReceived += packets;
    },
    refused: () => {
      this.counters.dropsTunFull++;
    },
    malformed: () => {
      this.counters.dropsMalformed++;
    },
  };
  /** Set per received batch: where the keepalive monitor reads liveness from. */
  onHeard: () => void = () => {};

  constructor(private readonly clock: Clock = systemClock) {
    // QUICGATE_CLIENT_SEND_FIFO=1: nothing waits here, a refused packet is dropped (the FIFO of before), for A/B runs.
    this.sendQueue = new FairSendQueue(clock, this.counters, process.env.QUICGATE_CLIENT_SEND_FIFO === '1' ? 0 : CAPACITY_BYTES);
  }

  /** Packets waiting for room in the connection's send queue (fair-send-queue.ts). */
  get waitingPackets(): number {
    return this.sendQueue.queuedPackets;
  }

  setTun(tun: TunDevice | null): void {
    this.writer?.flush();
    this.writer = tun === null ? null : new TunWriter(tun);
    this.splitter = tun === null ? null : new GsoSplitter(tun.mtu);
    tun?.onBatch(this.handleBatch);
  }

  setConnection(connection: TunnelConnection | null): void {
    this.connection = connection;
    this.sendQueue.setConnection(connection);
    connection?.setReceiver(this);
  }

  readonly handleBatch = (batch: TunBatch): void => {
    const connection = this.connection;
    const c = this.counters;
    if (connection === null) {
      c.dropsDisconnected += batch.count;
      return;
    }
    const { data, lengths, stride, count, meta } = batch;
    const now = this.clock.now();
    const queue = this.sendQueue;
    // What waits goes first, in its fair order: then this batch's packets join behind it only if needed.
    queue.pump(now);
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      const kind = meta[i * GSO_META]!;
      if (kind === 0) queue.offer(data, i * stride, length, now);
      else this.sendSuper(connection, data, i * stride, length, kind, meta[i * GSO_META + 1]!, meta[i * GSO_META + 2]!, now);
    }
    connection.flush();
  };

  private sendSuper(
    connection: TunnelConnection,
    data: Buffer,
    offset: number,
    length: number,
    kind: number,
    gsoSize: number,
    headerLength: number,
    now: number,
  ): void {
    const c = this.counters;
    // As a unit while nothing waits and the connection takes it; else its segments take the fair queue.
    if (connection.carriesSuperPackets && length <= MAX_WIRE_SUPER_PACKET_BYTES && this.sendQueue.queuedPackets === 0) {
      if (connection.sendSuperPacket(data, offset, length, kind, gsoSize)) {
        c.bytesSent += superPacketWireBytes(length, headerLength, gsoSize);
        c.packetsSent += superPacketSegments(length, headerLength, gsoSize);
        return;
      }
    }
    const splitter = this.splitter;
    const segments = splitter === null ? -1 : splitter.split(data, offset, length, kind, gsoSize);
    if (splitter === null || segments <= 0) {
      c.dropsMalformed++;
      return;
    }
    const { data: out, lengths, stride } = splitter.batch;
    for (let s = 0; s < segments; s++) this.sendQueue.offer(out, s * stride, lengths[s]!, now);
  }

  onPacket(data: Buffer, offset: number, length: number): void {
    const writer = this.writer;
    if (writer !== null) writer.stage(data, offset, length, this.tunAccount);
    else this.counters.dropsTunFull++;
  }

  onSuperPacket(data: Buffer, offset: number, length: number, kind: number, gsoSize: number): void {
    const writer = this.writer;
    const headerLength = superPacketHeaderLength(data, offset, length, kind);
    if (writer === null) this.counters.dropsTunFull++;
    else if (headerLength === 0) this.counters.dropsMalformed++;
    else writer.writeSuper(data, offset, length, kind, gsoSize, headerLength, this.tunAccount);
  }

  onBatchEnd(): void {
    this.onHeard();
  }
}
