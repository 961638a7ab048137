/**
 * A TunnelConnection over one connection of quicgate's own QUIC transport (quic-endpoint.ts), server or client.
 *
 * Flow out: sendPacket/flush -> SendQueue -> QuicWire: each sealed datagram is copied into the endpoint's send
 *   area; the SendQueue's uncork (end of every batch) hands the area to the addon in one call. Back pressure:
 *   the addon's blocked[slot] byte, and onWritable once the native queue drained.
 * Flow in: the endpoint's batch callback -> receiveDatagram (decode -> receiver.onPacket* -> onBatchEnd).
 * Control: the first bidirectional stream, newline-delimited JSON (ConnectionBase).
 * Close: `close` control line, then CONNECTION_CLOSE with application code 0 and the same message as its
 *   reason (whichever arrives first tells the peer why); a refusal is code REFUSAL_CLOSE_CODE (wt-auth.ts).
 */
import type { Logger } from 'pino';
import { encodeControl, parseControlLine, type CloseControl } from './control.js';
import { ConnectionBase, closeInfoFrom } from './connection-base.js';
import { MIN_DATAGRAM_BYTES } from './framing.js';
import type { QuicEndpointHost, QuicSlotHandler } from './quic-endpoint.js';
import { QuicCloseKind } from './quic-native.js';
import type { DatagramWire } from './send-queue.js';
import { decodeRefusal, refusalRetries } from './wt-auth.js';

const textEncoder = new TextEncoder();
/** Used when the addon cannot tell the datagram size (never below what a 1,280-byte IPv6 path carries). */
const FALLBACK_DATAGRAM_BYTES = 1200;

class QuicWire implements DatagramWire {
  private onWritable: (() => void) | null = null;

  constructor(
    private readonly host: QuicEndpointHost,
    private readonly slot: number,
  ) {}

  canWrite(): boolean {
    return !this.host.isBlocked(this.slot);
  }

  write(datagram: Buffer): void {
    this.host.queueDatagram(this.slot, datagram);
  }

  waitWritable(onWritable: () => void): void {
    this.onWritable = onWritable;
  }

  cork(): void {}

  uncork(): void {
    this.host.flush();
  }

  writable(): void {
    const callback = this.onWritable;
    this.onWritable = null;
    callback?.();
  }
}

export interface QuicConnectionOptions {
  readonly host: QuicEndpointHost;
  readonly slot: number;
  readonly role: 'client' | 'server';
  readonly peer: string;
  readonly sendQueuePackets: number;
  readonly logger: Logger;
  /** Called once when the connection is gone (the client closes its own endpoint there). */
  readonly onDisposed?: () => void;
}

export class QuicConnection extends ConnectionBase implements QuicSlotHandler {
  private readonly host: QuicEndpointHost;
  private readonly slot: number;
  private readonly wire: QuicWire;
  private readonly logger: Logger;
  private readonly onDisposed: (() => void) | undefined;

  constructor(options: QuicConnectionOptions) {
    const wire = new QuicWire(options.host, options.slot);
    const reported = options.host.native.maxDatagramBytes(options.slot);
    const maxDatagramBytes = reported >= MIN_DATAGRAM_BYTES ? reported : FALLBACK_DATAGRAM_BYTES;
    super({ kind: 'quic', peer: options.peer, sendQueuePackets: options.sendQueuePackets, maxDatagramBytes }, wire);
    this.host = options.host;
    this.slot = options.slot;
    this.wire = wire;
    this.logger = options.logger;
    this.onDisposed = options.onDisposed;
    this.host.attach(this.slot, this);
  }

  protected writeControlLine(line: string): void {
    this.host.native.writeStream(this.slot, textEncoder.encode(line));
  }

  protected shutdown(message: CloseControl): void {
    this.host.flush();
    this.host.detach(this.slot, this);
    this.host.native.closeConnection(this.slot, 0, encodeControl(message).trimEnd());
  }

  protected dispose(): void {
    this.host.detach(this.slot, this);
    this.onDisposed?.();
  }

  onStream(data: Buffer): void {
    this.receiveControlBytes(data);
  }

  onDatagram(data: Buffer, offset: number, length: number): void {
    this.receiveDatagram(data, offset, length);
  }

  onWritable(): void {
    this.wire.writable();
  }

  onPath(remote: string): void {
    this.logger.info({ peer: this.peer, remote }, 'QUIC connection migrated to a new path');
  }

  onClose(kind: number, code: number, reason: string): void {
    if (kind === QuicCloseKind.peerApplication) {
      const parsed = reason.startsWith('{') ? parseControlLine(reason) : undefined;
      if (parsed?.ok && parsed.message.type === 'close') this.notePeerClose(closeInfoFrom(parsed.message));
      const refused = decodeRefusal(code, reason);
      if (refused) this.notePeerClose({ reason: refused.code, message: refused.message, retry: refusalRetries(refused.status), refused });
    }
    const detail = kind === QuicCloseKind.idle ? 'QUIC idle timeout' : reason === '' ? `QUIC connection closed (kind ${kind}, code ${code})` : reason.slice(0, 200);
    this.transportEnded({ reason: 'connection_lost', message: detail });
  }
}
