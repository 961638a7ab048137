/**
 * The client's data path: TUN batches into the tunnel (flush once per batch), tunnel packets into the TUN
 * (staged, one writeBatch per task so the device can coalesce them: src/tun/writer.ts).
 * While no connection is up, TUN packets are dropped (and counted) rather than queued: stale packets are
 * worse than lost ones for TCP.
 */
import type { TunBatch, TunDevice } from '../tun/device.js';
import { TunWriter, type TunWriteAccount } from '../tun/writer.js';
import type { PacketReceiver, TunnelConnection } from '../transport/types.js';

export interface ClientCounters {
  bytesSent: number;
  packetsSent: number;
  bytesReceived: number;
  packetsReceived: number;
  dropsDisconnected: number;
  dropsQueueFull: number;
  dropsTunFull: number;
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
  };
  private connection: TunnelConnection | null = null;
  private writer: TunWriter | null = null;
  // Staged writes are counted once the kernel took them (see TunWriter).
  private readonly tunAccount: TunWriteAccount = {
    written: (length) => {
      this.counters.bytesReceived += length;
      this.counters.packetsReceived++;
    },
    refused: () => {
      this.counters.dropsTunFull++;
    },
  };
  /** Set per received batch: where the keepalive monitor reads liveness from. */
  onHeard: () => void = () => {};

  setTun(tun: TunDevice | null): void {
    this.writer?.flush();
    this.writer = tun === null ? null : new TunWriter(tun);
    tun?.onBatch(this.handleBatch);
  }

  setConnection(connection: TunnelConnection | null): void {
    this.connection = connection;
    connection?.setReceiver(this);
  }

  readonly handleBatch = (batch: TunBatch): void => {
    const connection = this.connection;
    const c = this.counters;
    if (connection === null) {
      c.dropsDisconnected += batch.count;
      return;
    }
    const { data, lengths, stride, count } = batch;
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      if (connection.sendPacket(data, i * stride, length)) {
        c.bytesSent += length;
        c.packetsSent++;
      } else c.dropsQueueFull++;
    }
    connection.flush();
  };

  onPacket(data: Buffer, offset: number, length: number): void {
    const writer = this.writer;
    if (writer !== null) writer.stage(data, offset, length, this.tunAccount);
    else this.counters.dropsTunFull++;
  }

  onBatchEnd(): void {
    this.onHeard();
  }
}
