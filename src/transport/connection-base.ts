/**
 * What every TunnelConnection does the same way, whatever carries it: the bounded send queue, datagram
 * decoding into the receiver, the control channel (newline-delimited JSON, malformed lines dropped and
 * counted, messages held until a handler is set) and the close protocol (send `close` with the reason first,
 * then end the transport; `closed` settles once with the peer's reason when it sent one).
 *
 * Hot path: sendPacket -> SendQueue; receiveDatagram -> DatagramDecoder -> receiver.onPacket* -> onBatchEnd.
 */
import { MAX_CONTROL_MESSAGE_BYTES, encodeControl, parseControlLine, type CloseControl, type ControlMessage } from './control.js';
import { DatagramDecoder, FRAMING_VERSION } from './framing.js';
import { SendQueue, type DatagramWire } from './send-queue.js';
import type { CloseInfo, PacketReceiver, TransportKind, TunnelConnection, TunnelStats } from './types.js';

/**
 * Close reasons after which the peer should not reconnect on its own: the `retry` of every close message that
 * does not set it explicitly. This is the gateway's policy and the only one: the client acts on the `retry`
 * it receives and keeps no list of its own (src/client/tunnel-client.ts). An operator's or the quota's
 * decision (admin_kill, user_removed, quota_exceeded) must not be undone by the client reconnecting, and a
 * `replaced` client coming back would replace the newer session in turn, round and round.
 * Deliberately retried: server_shutdown (the gateway comes back), session_timeout (the lifetime limit exists
 * to force a fresh login, which the reconnect is), idle_timeout (a live client sends keepalives, which count as
 * activity, so only a client that was silent, e.g. suspended or behind a dead path, sees it; reconnecting is
 * what it does on a dead path anyway) and error.
 */
const NO_RETRY_REASONS: ReadonlySet<string> = new Set(['admin_kill', 'user_removed', 'quota_exceeded', 'replaced', 'resumed', 'user_disabled', 'auth_failed']);
/** Control messages kept until a handler is set; more are dropped (the peer misbehaves). */
const MAX_HELD_CONTROL_MESSAGES = 32;

const ignoreReceiver: PacketReceiver = { onPacket() {}, onBatchEnd() {} };

export function defaultRetry(reason: string): boolean {
  return !NO_RETRY_REASONS.has(reason);
}

export function closeMessageFor(info: CloseInfo): CloseControl {
  const message: CloseControl = { type: 'close', reason: info.reason.slice(0, 64), retry: info.retry ?? defaultRetry(info.reason) };
  if (info.message !== undefined) message.message = info.message.slice(0, 512);
  return message;
}

export function closeInfoFrom(message: CloseControl): CloseInfo {
  return message.message === undefined
    ? { reason: message.reason, retry: message.retry }
    : { reason: message.reason, message: message.message, retry: message.retry };
}

export interface ConnectionBaseOptions {
  readonly kind: TransportKind;
  readonly peer: string;
  readonly sendQueuePackets: number;
  readonly maxDatagramBytes: number;
  /** Bytes the wire wants free before each datagram (see DatagramEncoder); default 0. */
  readonly headroom?: number;
  /** The wire carries super-packet datagrams (up to 64 KB): announce framing version 2 and use it. */
  readonly superPackets?: boolean;
}

export abstract class ConnectionBase implements TunnelConnection {
  readonly kind: TransportKind;
  readonly peer: string;
  readonly stats: TunnelStats = { datagramsSent: 0, datagramsReceived: 0, queueDrops: 0, malformed: 0 };
  readonly closed: Promise<CloseInfo>;
  protected readonly sendQueue: SendQueue;
  private readonly decoder = new DatagramDecoder();
  private readonly wireTakesSuper: boolean;
  /** Framing version the peer announced (1 until it does). */
  private peerFraming = 1;
  private framingAnnounced = false;
  private receiver: PacketReceiver = ignoreReceiver;
  private controlHandler: ((message: ControlMessage) => void) | undefined;
  private heldControl: ControlMessage[] = [];
  private peerClose: CloseInfo | undefined;
  private closing = false;
  private settled = false;
  private resolveClosed!: (info: CloseInfo) => void;
  /** Bytes of a control line whose newline has not arrived yet (null: none). */
  private partialLine: Buffer | null = null;
  private discardingLine = false;

  protected constructor(options: ConnectionBaseOptions, wire: DatagramWire) {
    this.kind = options.kind;
    this.peer = options.peer;
    this.wireTakesSuper = options.superPackets ?? false;
    this.closed = new Promise<CloseInfo>((resolve) => {
      this.resolveClosed = resolve;
    });
    this.sendQueue = new SendQueue({
      limitPackets: options.sendQueuePackets,
      maxDatagramBytes: options.maxDatagramBytes,
      stats: this.stats,
      wire,
      headroom: options.headroom ?? 0,
    });
  }

  get maxDatagramBytes(): number {
    return this.sendQueue.maxDatagramBytes;
  }

  /** Whether close() was called or the transport ended. */
  get isClosing(): boolean {
    return this.closing || this.settled;
  }

  sendPacket(data: Uint8Array, offset: number, length: number): boolean {
    return this.sendQueue.sendPacket(data, offset, length);
  }

  flush(): void {
    this.sendQueue.flush();
  }

  get carriesSuperPackets(): boolean {
    return this.wireTakesSuper && this.peerFraming >= FRAMING_VERSION;
  }

  sendSuperPacket(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): boolean {
    return this.sendQueue.sendSuperPacket(data, offset, length, kind, gsoSize);
  }

  /**
   * Tell the peer which framing this side decodes: the client once its control stream is open, the server
   * in answer to the client's (so an older client never sees the message).
   */
  protected announceFraming(): void {
    if (!this.wireTakesSuper || this.framingAnnounced) return;
    this.framingAnnounced = true;
    this.writeControlLine(encodeControl({ type: 'framing', version: FRAMING_VERSION }));
  }

  setReceiver(receiver: PacketReceiver): void {
    this.receiver = receiver;
  }

  setControlHandler(handler: (message: ControlMessage) => void): void {
    this.controlHandler = handler;
    const held = this.heldControl;
    this.heldControl = [];
    for (const message of held) handler(message);
  }

  sendControl(message: ControlMessage): void {
    if (this.isClosing) return;
    this.writeControlLine(encodeControl(message));
  }

  close(info: CloseInfo): void {
    if (this.isClosing) return;
    this.closing = true;
    this.flush();
    const message = closeMessageFor(info);
    this.writeControlLine(encodeControl(message));
    this.shutdown(message);
    this.finish(closeInfoFrom(message));
  }

  /** Transport-specific: write one encoded control line (ends in "\n"). */
  protected abstract writeControlLine(line: string): void;
  /** Transport-specific: end the transport after the close message was queued. */
  protected abstract shutdown(message: CloseControl): void;
  /** Transport-specific: release resources once closed (timers, readers). */
  protected abstract dispose(): void;

  /** A datagram arrived: deliver its packets, then end the batch. */
  protected receiveDatagram(datagram: Buffer, offset: number, length: number): void {
    if (this.settled) return;
    this.stats.datagramsReceived++;
    const receiver = this.receiver;
    if (this.decoder.decode(datagram, offset, length, receiver)) receiver.onBatchEnd();
    else this.datagramMalformed();
  }

  /** A datagram was dropped whole as malformed (also one the transport could not take, e.g. oversized). */
  protected datagramMalformed(): void {
    this.stats.malformed++;
    this.receiver.onMalformed?.();
  }

  /**
   * Bytes of the control stream arrived (any chunking). Lines are cut at the newline byte (0x0a never occurs
   * inside a multi-byte UTF-8 sequence) and each whole line is decoded on its own: no streaming decoder per
   * connection (an ICU converter costs over 1 KiB of native memory per idle session).
   */
  protected receiveControlBytes(chunk: Uint8Array): void {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (;;) {
      const newline = bytes.indexOf(0x0a, start);
      if (newline < 0) break;
      if (this.discardingLine) this.discardingLine = false;
      else {
        const partial = this.partialLine;
        this.partialLine = null;
        const line = partial === null ? bytes.toString('utf8', start, newline) : Buffer.concat([partial, bytes.subarray(start, newline)]).toString('utf8');
        this.receiveControlLine(line);
      }
      start = newline + 1;
    }
    if (this.discardingLine || start === bytes.length) return;
    // The rest waits for its newline; copied, since the chunk's memory is not ours to keep.
    const rest = bytes.subarray(start);
    this.partialLine = this.partialLine === null ? Buffer.from(rest) : Buffer.concat([this.partialLine, rest]);
    if (this.partialLine.length > MAX_CONTROL_MESSAGE_BYTES) {
      // An endless line must not grow memory: drop it up to its newline and count it once.
      this.partialLine = null;
      this.discardingLine = true;
      this.stats.malformed++;
    }
  }

  protected receiveControlLine(line: string): void {
    if (line.length === 0) return;
    const parsed = parseControlLine(line);
    if (!parsed.ok) {
      this.stats.malformed++;
      return;
    }
    const message = parsed.message;
    if (message.type === 'framing') {
      this.peerFraming = message.version;
      this.announceFraming();
      return;
    }
    if (message.type === 'close') this.peerClose ??= closeInfoFrom(message);
    if (this.controlHandler) this.controlHandler(message);
    else if (this.heldControl.length < MAX_HELD_CONTROL_MESSAGES) this.heldControl.push(message);
  }

  /** The peer's close reason carried out of band (e.g. in the WebTransport close capsule). */
  protected notePeerClose(info: CloseInfo): void {
    this.peerClose ??= info;
  }

  /** The transport is gone; `fallback` is used when the peer told no reason. */
  protected transportEnded(fallback: CloseInfo): void {
    this.finish(this.peerClose ?? fallback);
  }

  private finish(info: CloseInfo): void {
    if (this.settled) return;
    this.settled = true;
    this.sendQueue.close();
    this.decoder.release();
    this.dispose();
    this.resolveClosed(info);
  }
}
