/**
 * The JS side of one native QUIC endpoint (quic-native.ts): owns the addon object and the shared areas it
 * reads and writes, and routes its per-batch callbacks to the handler of each connection slot.
 *
 * In: onDatagrams(count) -> for each datagram in the receive area: handlers[slot].onDatagram(view) (the view
 *     is valid during the call only; no allocation per datagram). Out: queueDatagram() copies into the send
 *     area; flush() hands the whole area to the addon in one sendBatch call (also when the area fills).
 * Options are validated by the config schema at the edge; this file trusts them.
 */
import { constants as osConstants } from 'node:os';
import type { NativeQuicAddon, NativeQuicEndpoint, NativeQuicHandlers, NativeQuicStats } from './quic-native.js';

/** ALPN of quicgate's own QUIC transport (docs/quic-route.md "Wire"). */
export const QUIC_ALPN = 'quicgate/1';
/** Largest UDP payload: fits a 1,500-byte path over IPv4 (1,472) and IPv6 (1,452). */
export const QUIC_MAX_UDP_PAYLOAD = 1452;

const RX_BYTES = 1 << 20;
const RX_ENTRIES = 2048;
const TX_BYTES = 256 << 10;
const TX_ENTRIES = 512;
const SERVER_SLOTS = 65536;
const CLIENT_SLOTS = 4;

/** What one connection slot receives from the endpoint. */
export interface QuicSlotHandler {
  onHandshake?(remote: string): void;
  onStream(data: Buffer): void;
  onDatagram(data: Buffer, offset: number, length: number): void;
  onClose(kind: number, code: number, reason: string): void;
  onWritable(): void;
  onPath(remote: string): void;
}

export interface QuicEndpointOptions {
  readonly server: boolean;
  readonly host?: string;
  readonly port?: number;
  readonly certPem?: string;
  readonly keyPem?: string;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Server: a new connection from `source` would take `slot`; false refuses it. */
  readonly onAccept?: (source: string, slot: number) => boolean;
}

export class QuicEndpointHost {
  readonly native: NativeQuicEndpoint;
  private readonly handlers: (QuicSlotHandler | undefined)[];
  private readonly rx: Buffer;
  private readonly rxMeta = new Uint32Array(RX_ENTRIES * 3);
  private readonly tx: Buffer;
  private readonly txMeta = new Uint32Array(TX_ENTRIES * 2);
  private readonly blocked: Uint8Array;
  private txCount = 0;
  private txBytes = 0;
  private closed = false;

  constructor(addon: NativeQuicAddon, options: QuicEndpointOptions) {
    const slots = options.server ? SERVER_SLOTS : CLIENT_SLOTS;
    this.handlers = new Array<QuicSlotHandler | undefined>(slots);
    this.blocked = new Uint8Array(slots);
    const rxArea = new Uint8Array(RX_BYTES);
    const txArea = new Uint8Array(TX_BYTES);
    this.rx = Buffer.from(rxArea.buffer, rxArea.byteOffset, rxArea.byteLength);
    this.tx = Buffer.from(txArea.buffer, txArea.byteOffset, txArea.byteLength);
    const onAccept = options.onAccept ?? (() => false);
    const handlers: NativeQuicHandlers = {
      onAccept: (source, slot) => onAccept(source, slot),
      onHandshake: (slot, remote) => this.handlers[slot]?.onHandshake?.(remote),
      onStream: (slot, data) => this.handlers[slot]?.onStream(data),
      onDatagrams: (count) => this.deliver(count),
      onClose: (slot, kind, code, reason) => {
        const handler = this.handlers[slot];
        this.handlers[slot] = undefined;
        handler?.onClose(kind, code, reason);
      },
      onWritable: (slot) => this.handlers[slot]?.onWritable(),
      onPath: (slot, remote) => this.handlers[slot]?.onPath(remote),
    };
    try {
      this.native = new addon.QuicEndpoint(
        {
          server: options.server,
          ...(options.host === undefined ? {} : { host: options.host }),
          ...(options.port === undefined ? {} : { port: options.port }),
          ...(options.certPem === undefined ? {} : { certPem: options.certPem }),
          ...(options.keyPem === undefined ? {} : { keyPem: options.keyPem }),
          alpn: QUIC_ALPN,
          maxUdpPayload: QUIC_MAX_UDP_PAYLOAD,
          handshakeTimeoutMs: options.handshakeTimeoutMs,
          idleTimeoutMs: options.idleTimeoutMs,
          rxData: rxArea,
          rxMeta: this.rxMeta,
          txData: txArea,
          txMeta: this.txMeta,
          blocked: this.blocked,
        },
        handlers,
      );
    } catch (err) {
      // The addon's socket errors carry `errno`; name it as node does ("EADDRINUSE") for listenError.
      const errno = (err as { errno?: unknown }).errno;
      const name = typeof errno === 'number' ? Object.entries(osConstants.errno).find(([, n]) => n === errno)?.[0] : undefined;
      if (name !== undefined && err instanceof Error) Object.assign(err, { code: name });
      throw err;
    }
  }

  attach(slot: number, handler: QuicSlotHandler): void {
    this.handlers[slot] = handler;
  }

  detach(slot: number, handler: QuicSlotHandler): void {
    if (this.handlers[slot] === handler) this.handlers[slot] = undefined;
  }

  isBlocked(slot: number): boolean {
    return this.blocked[slot] !== 0;
  }

  /** Copies one datagram into the send area (flushing first when it is full). */
  queueDatagram(slot: number, datagram: Buffer): void {
    if (this.closed) return;
    const length = datagram.length;
    if (this.txCount === TX_ENTRIES || this.txBytes + length > TX_BYTES) this.flush();
    if (length > TX_BYTES) return;
    datagram.copy(this.tx, this.txBytes);
    this.txMeta[2 * this.txCount] = slot;
    this.txMeta[2 * this.txCount + 1] = length;
    this.txCount++;
    this.txBytes += length;
  }

  /** Hands the send area to the addon: one native call for every datagram queued since the last flush. */
  flush(): void {
    if (this.txCount === 0 || this.closed) return;
    const count = this.txCount;
    this.txCount = 0;
    this.txBytes = 0;
    this.native.sendBatch(count);
  }

  stats(): NativeQuicStats {
    return this.native.stats();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
  }

  private deliver(count: number): void {
    const meta = this.rxMeta;
    const rx = this.rx;
    for (let i = 0; i < count; i++) {
      const handler = this.handlers[meta[3 * i]!];
      if (handler !== undefined) handler.onDatagram(rx, meta[3 * i + 1]!, meta[3 * i + 2]!);
    }
  }
}
