/**
 * In-memory TunnelConnection double: records what the gateway sends and closes, and lets a test end the
 * connection from the client side (`clientLeaves`). `closed` settles once, like the real transports.
 */
import type { ControlMessage } from '../../src/transport/control.js';
import type { CloseInfo, PacketReceiver, TransportKind, TunnelConnection, TunnelStats } from '../../src/transport/types.js';

export class FakeConnection implements TunnelConnection {
  readonly kind: TransportKind = 'memory';
  readonly stats: TunnelStats = { datagramsSent: 0, datagramsReceived: 0, queueDrops: 0, malformed: 0 };
  maxDatagramBytes = 16000;
  readonly closed: Promise<CloseInfo>;
  /** Every close() call, in order (close is idempotent for the peer, but calls are all recorded). */
  readonly closeCalls: CloseInfo[] = [];
  readonly controlSent: ControlMessage[] = [];
  readonly packetsSent: Buffer[] = [];
  /** Super-packets sent (only when a test sets carriesSuperPackets). */
  readonly superPacketsSent: { packet: Buffer; kind: number; gsoSize: number }[] = [];
  carriesSuperPackets = false;
  flushes = 0;
  receiver: PacketReceiver | null = null;
  controlHandler: ((message: ControlMessage) => void) | null = null;
  private settle!: (info: CloseInfo) => void;
  private settled: CloseInfo | null = null;

  constructor(readonly peer = '192.0.2.100:50000') {
    this.closed = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /** How the connection ended, or null while it is open. */
  get closeInfo(): CloseInfo | null {
    return this.settled;
  }

  sendPacket(data: Uint8Array, offset: number, length: number): boolean {
    if (this.settled !== null) return false;
    this.packetsSent.push(Buffer.from(data.subarray(offset, offset + length)));
    return true;
  }

  sendSuperPacket(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): boolean {
    if (this.settled !== null || !this.carriesSuperPackets) return false;
    this.superPacketsSent.push({ packet: Buffer.from(data.subarray(offset, offset + length)), kind, gsoSize });
    return true;
  }

  flush(): void {
    this.flushes++;
  }

  setReceiver(receiver: PacketReceiver): void {
    this.receiver = receiver;
  }

  setControlHandler(handler: (message: ControlMessage) => void): void {
    this.controlHandler = handler;
  }

  sendControl(message: ControlMessage): void {
    this.controlSent.push(message);
  }

  close(info: CloseInfo): void {
    this.closeCalls.push(info);
    this.finish(info);
  }

  /** The client goes away (or the path dies): settles `closed` without a close() call from the gateway. */
  clientLeaves(info: CloseInfo = { reason: 'client_closed' }): void {
    this.finish(info);
  }

  private finish(info: CloseInfo): void {
    if (this.settled !== null) return;
    this.settled = info;
    this.settle(info);
  }
}
