/**
 * A TunnelConnection over one open WebTransport session (HTTP/2 or HTTP/3), server or client side.
 *
 * Flow out: sendPacket/flush -> SendQueue -> WtDatagramWire: write a datagram while the HTTP/2 stream under
 *   the session does not need draining and the datagram writer has room; else wait for 'drain' / writer.ready.
 * Flow in: HTTP/2: the session stream's chunks -> H2CapsuleReader (wt-capsule-reader.ts) -> DATAGRAM capsules
 *   -> decode -> receiver.onPacket* -> onBatchEnd (one batch per datagram); other capsules -> the library's
 *   parser. HTTP/3 (and HTTP/2 when the library's internals are not as expected): the datagram reader loop.
 * Control: one bidirectional stream, newline-delimited JSON both ways (ConnectionBase).
 * Close: `close` control line, then session.close() whose reason carries the same message (whichever
 *   arrives first tells the peer why); the session's `closed` ends the connection either way.
 */
import type { Http2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { WritableStreamDefaultWriter } from 'node:stream/web';
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { encodeControl, parseControlLine, type CloseControl } from './control.js';
import { ConnectionBase, closeInfoFrom } from './connection-base.js';
import { H2_MAX_DATAGRAM_BYTES, MAX_WIRE_SUPER_PACKET_BYTES, MIN_DATAGRAM_BYTES, SUPER_HEADER_BYTES } from './framing.js';
import type { DatagramWire } from './send-queue.js';
import { decodeRefusal, refusalRetries } from './wt-auth.js';
import { H2CapsuleReader } from './wt-capsule-reader.js';
import { divertHttp2Capsules, http2SessionInternals, type WtBidiStream, type WtSession } from './wt-lib.js';

/** How long a closing side waits for its `close` line to be taken before ending the session anyway. */
const CLOSE_LINE_WAIT_MS = 250;
/** How often the HTTP/3 path re-reads maxDatagramSize (it can change with the path MTU). */
const H3_DATAGRAM_SIZE_POLL_MS = 2000;
/** Used until the QUIC connection reports its datagram limit. */
const H3_FALLBACK_DATAGRAM_BYTES = 1200;

/**
 * HTTP/2 receive windows (connection and stream) this side grants: node's default of 65,535 bytes caps a
 * session at one window per round trip and cannot hold one 64 KB super-packet capsule. Larger is not better:
 * what the window admits queues in front of every later packet when the receiver is the bottleneck (8 MiB
 * measured: ping p95 of 173-383 ms in bench/limits.ts at 100 Mbit/s); 512 KiB kept it within the goals for
 * one TCP flow and still carries about 8 Gbit/s at a 0.5 ms round trip (but 200 Mbit/s at 20 ms).
 */
const H2_RECEIVE_WINDOW_BYTES = 512 << 10;
/** Largest HTTP/2 frame this side accepts: one super-packet capsule per DATA frame instead of five. */
const H2_MAX_FRAME_BYTES = 1 << 17;
/** Largest DATAGRAM capsule payload a peer sends: one super-packet record (framing.ts). */
const H2_MAX_DATAGRAM_CAPSULE_BYTES = SUPER_HEADER_BYTES + MAX_WIRE_SUPER_PACKET_BYTES;
/**
 * Largest other capsule reassembled for the library's parser: control stream writes are lines of at most
 * 16 KiB (control.ts), flow-control and close capsules a few bytes; a peer sending more is broken.
 */
const H2_MAX_OTHER_CAPSULE_BYTES = 1 << 20;

const noop = (): void => {};
const textEncoder = new TextEncoder();

export interface WtConnectionOptions {
  readonly kind: 'h2' | 'h3';
  readonly role: 'client' | 'server';
  readonly peer: string;
  readonly session: WtSession;
  readonly controlStream: WtBidiStream;
  /** The HTTP/2 stream under the session (wt-lib findHttp2SessionStream), null on HTTP/3. */
  readonly drainStream: Duplex | null;
  readonly sendQueuePackets: number;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/**
 * DATAGRAM capsule (RFC 9297) header: type 0x00, then the length as a QUIC varint: 2 bytes below 16384,
 * 4 bytes above (super-packet datagrams, framing.ts). The encoder keeps room for the larger one.
 */
const CAPSULE_HEADER_BYTES = 5;
const SHORT_CAPSULE_PAYLOAD = 16383;
const MAX_CAPSULE_PAYLOAD = (1 << 30) - 1;

/**
 * HTTP/2 fast path: each sealed datagram goes down as one DATAGRAM capsule in ONE write on the HTTP/2 stream
 * under the session: the header is written into the encoder's headroom right before the datagram, so there
 * is no header allocation, no second write and no WritableStream promise per datagram. Runs of datagrams are
 * corked into one writev. Back pressure is the stream's own writableNeedDrain / 'drain'.
 */
class H2CapsuleWire implements DatagramWire {
  constructor(private readonly stream: Duplex) {}

  canWrite(): boolean {
    return !this.stream.writableNeedDrain;
  }

  write(datagram: Buffer): void {
    const length = datagram.length;
    const stream = this.stream;
    if (!stream.writable || datagram.byteOffset < CAPSULE_HEADER_BYTES || length > MAX_CAPSULE_PAYLOAD) return;
    const header = length <= SHORT_CAPSULE_PAYLOAD ? 3 : 5;
    const capsule = Buffer.from(datagram.buffer, datagram.byteOffset - header, length + header);
    capsule[0] = 0x00;
    if (header === 3) {
      capsule[1] = 0x40 | (length >> 8);
      capsule[2] = length & 0xff;
    } else {
      capsule[1] = 0x80 | (length >>> 24);
      capsule[2] = (length >>> 16) & 0xff;
      capsule[3] = (length >>> 8) & 0xff;
      capsule[4] = length & 0xff;
    }
    stream.write(capsule);
  }

  waitWritable(onWritable: () => void): void {
    this.stream.once('drain', onWritable);
  }

  cork(): void {
    this.stream.cork();
  }

  uncork(): void {
    this.stream.uncork();
  }
}

class WtDatagramWire implements DatagramWire {
  constructor(
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly drainStream: Duplex | null,
  ) {}

  canWrite(): boolean {
    if (this.drainStream?.writableNeedDrain) return false;
    const room = this.writer.desiredSize;
    return room !== null && room > 0;
  }

  write(datagram: Buffer): void {
    this.writer.write(datagram).then(undefined, noop);
  }

  waitWritable(onWritable: () => void): void {
    if (this.drainStream?.writableNeedDrain) this.drainStream.once('drain', onWritable);
    else this.writer.ready.then(onWritable, noop);
  }
}

export class WebTransportConnection extends ConnectionBase {
  private readonly session: WtSession;
  private readonly controlWriter: WritableStreamDefaultWriter<Uint8Array>;
  private readonly logger: Logger;
  private lastControlWrite: Promise<void> = Promise.resolve();
  private sizePoll: TimerHandle | undefined;
  private readonly clock: Clock;
  /** HTTP/2 fast path: our reader of the session stream's capsules (null: the library's parser reads them). */
  private capsuleReader: H2CapsuleReader | null = null;

  static open(options: WtConnectionOptions): WebTransportConnection {
    if (options.kind === 'h2' && options.drainStream !== null) raiseHttp2Windows(options.drainStream, options.logger);
    if (options.kind === 'h2' && options.drainStream !== null && process.env.QUICGATE_H2_FASTPATH !== '0') {
      return new WebTransportConnection(options, new H2CapsuleWire(options.drainStream), CAPSULE_HEADER_BYTES);
    }
    const writer = options.session.datagrams.createWritable().getWriter();
    return new WebTransportConnection(options, new WtDatagramWire(writer, options.drainStream), 0);
  }

  private constructor(options: WtConnectionOptions, wire: DatagramWire, headroom: number) {
    const maxDatagramBytes = options.kind === 'h2' ? H2_MAX_DATAGRAM_BYTES : h3DatagramBytes(options.session);
    // Super-packets (64 KB datagrams) only on the HTTP/2 fast path both ways: our capsule writer, and the
    // capsule parser's datagrams delivered straight into the decoder (the library's own queue is not asked).
    const superPackets = headroom > 0 && typeof http2SessionInternals(options.session)?.jsobj?.onDatagramReceived === 'function';
    super(
      { kind: options.kind, peer: options.peer, sendQueuePackets: options.sendQueuePackets, maxDatagramBytes, headroom, superPackets },
      wire,
    );
    this.session = options.session;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.controlWriter = options.controlStream.writable.getWriter();
    this.controlWriter.closed.then(undefined, noop);
    if (!this.interceptH2Datagrams(options)) void this.readDatagrams();
    else this.divertH2Capsules(options);
    void this.readControl(options.controlStream);
    if (options.role === 'client') this.announceFraming();
    this.session.closed.then(
      (info) => this.onSessionClosed(info.reason ?? '', info.closeCode),
      (err: unknown) => this.onSessionClosed(err instanceof Error ? err.message : String(err), undefined),
    );
    if (options.kind === 'h3') {
      this.sizePoll = this.clock.setInterval(() => this.sendQueue.setMaxDatagramBytes(h3DatagramBytes(this.session)), H3_DATAGRAM_SIZE_POLL_MS);
    }
  }

  /** Whether the HTTP/2 fast path reads the session stream's capsules itself (wt-capsule-reader.ts). */
  get readsCapsules(): boolean {
    return this.capsuleReader !== null;
  }

  protected writeControlLine(line: string): void {
    this.lastControlWrite = this.controlWriter.write(textEncoder.encode(line)).then(undefined, noop);
  }

  protected shutdown(message: CloseControl): void {
    // The same message rides in the session close reason: capsule order against stream data is not guaranteed.
    const reason = encodeControl(message).trimEnd();
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      timer.cancel();
      try {
        this.session.close({ closeCode: 0, reason });
      } catch (err) {
        this.logger.debug({ err }, 'webtransport session close failed');
      }
    };
    const timer = this.clock.setTimeout(end, CLOSE_LINE_WAIT_MS);
    void this.lastControlWrite.then(end);
  }

  protected dispose(): void {
    this.sizePoll?.cancel();
    this.sizePoll = undefined;
    this.capsuleReader?.release();
  }

  private onSessionClosed(reason: string, closeCode: number | undefined): void {
    const parsed = reason.startsWith('{') ? parseControlLine(reason) : undefined;
    if (parsed?.ok && parsed.message.type === 'close') this.notePeerClose(closeInfoFrom(parsed.message));
    const refused = decodeRefusal(closeCode, reason);
    if (refused) this.notePeerClose({ reason: refused.code, message: refused.message, retry: refusalRetries(refused.status), refused });
    const detail = reason === '' ? `session ended (code ${closeCode ?? 'none'})` : reason.slice(0, 200);
    this.transportEnded({ reason: 'connection_lost', message: detail });
  }

  /**
   * HTTP/2 fast path in: the library's capsule parser hands each DATAGRAM capsule to its session object's
   * onDatagramReceived, which queues it into a ReadableStream (a promise per datagram for the reader).
   * Replacing that method on this one session object delivers the view straight into the decoder (it is
   * consumed synchronously). False (use the reader) when the internals are not as expected.
   */
  private interceptH2Datagrams(options: WtConnectionOptions): boolean {
    if (options.kind !== 'h2' || process.env.QUICGATE_H2_FASTPATH === '0') return false;
    const jsobj = http2SessionInternals(options.session)?.jsobj;
    if (jsobj === undefined || typeof jsobj.onDatagramReceived !== 'function') return false;
    jsobj.onDatagramReceived = (args: { datagram: Uint8Array }): void => {
      const value = args.datagram;
      if (value.byteLength === 0) return;
      this.receiveDatagram(Buffer.from(value.buffer, value.byteOffset, value.byteLength), 0, value.byteLength);
    };
    return true;
  }

  /**
   * HTTP/2 fast path in, from the first capsule boundary on: the session stream's chunks go to our capsule
   * reader (wt-capsule-reader.ts), DATAGRAM capsules from there straight into the decoder, the others whole to
   * the library's parser. Until then (and when the internals are not as expected) the library's parser reads
   * and interceptH2Datagrams delivers.
   */
  private divertH2Capsules(options: WtConnectionOptions): void {
    const stream = options.drainStream;
    if (stream === null || process.env.QUICGATE_H2_READER === '0') return;
    let libraryParse: ((capsule: Buffer) => void) | null = null;
    const reader = new H2CapsuleReader(
      {
        onDatagram: (data, offset, length) => this.receiveDatagram(data, offset, length),
        onOtherCapsule: (capsule) => libraryParse?.(capsule),
        onOversizedDatagram: () => this.datagramMalformed(),
        onProtocolError: (message) => this.close({ reason: 'error', message }),
      },
      { maxDatagramBytes: H2_MAX_DATAGRAM_CAPSULE_BYTES, maxOtherBytes: H2_MAX_OTHER_CAPSULE_BYTES },
    );
    libraryParse = divertHttp2Capsules(options.session, stream, (chunk) => reader.push(chunk));
    if (libraryParse !== null) this.capsuleReader = reader;
  }

  private async readDatagrams(): Promise<void> {
    const reader = this.session.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const datagram = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        this.receiveDatagram(datagram, 0, datagram.length);
      }
    } catch (err) {
      if (!this.isClosing) this.logger.debug({ err }, 'datagram reader ended');
    }
  }

  private async readControl(stream: WtBidiStream): Promise<void> {
    const reader = stream.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.receiveControlBytes(value);
      }
    } catch (err) {
      if (!this.isClosing) this.logger.debug({ err }, 'control stream reader ended');
    }
  }
}

/**
 * Grants the peer H2_RECEIVE_WINDOW_BYTES on the HTTP/2 connection under the session: the connection window
 * directly, the stream windows through SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 6.9.2: it resizes the windows
 * of open streams too). Best effort: a stream without a node:http2 session keeps the defaults.
 */
function raiseHttp2Windows(stream: Duplex, logger: Logger): void {
  const session = (stream as Partial<Http2Stream>).session;
  if (session === undefined || session.destroyed) return;
  try {
    session.setLocalWindowSize(H2_RECEIVE_WINDOW_BYTES);
    session.settings({ initialWindowSize: H2_RECEIVE_WINDOW_BYTES, maxFrameSize: H2_MAX_FRAME_BYTES });
  } catch (err) {
    logger.debug({ err }, 'raising the HTTP/2 receive windows failed');
  }
}

function h3DatagramBytes(session: WtSession): number {
  let reported = 0;
  try {
    reported = session.datagrams.maxDatagramSize;
  } catch {
    reported = 0;
  }
  if (!Number.isFinite(reported) || reported < MIN_DATAGRAM_BYTES) return H3_FALLBACK_DATAGRAM_BYTES;
  return Math.min(reported, H2_MAX_DATAGRAM_BYTES);
}
