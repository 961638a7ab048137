/**
 * A TunnelConnection over one open WebTransport session (HTTP/2 or HTTP/3), server or client side.
 *
 * Flow out: sendPacket/flush -> SendQueue -> WtDatagramWire: write a datagram while the HTTP/2 stream under
 *   the session does not need draining and the datagram writer has room; else wait for 'drain' / writer.ready.
 * Flow in: datagram reader loop -> decode -> receiver.onPacket* -> onBatchEnd (one batch per datagram).
 * Control: one bidirectional stream, newline-delimited JSON both ways (ConnectionBase).
 * Close: `close` control line, then session.close() whose reason carries the same message (whichever
 *   arrives first tells the peer why); the session's `closed` ends the connection either way.
 */
import type { Duplex } from 'node:stream';
import type { WritableStreamDefaultWriter } from 'node:stream/web';
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { encodeControl, parseControlLine, type CloseControl } from './control.js';
import { ConnectionBase, closeInfoFrom } from './connection-base.js';
import { H2_MAX_DATAGRAM_BYTES, MIN_DATAGRAM_BYTES } from './framing.js';
import type { DatagramWire } from './send-queue.js';
import type { WtBidiStream, WtSession } from './wt-lib.js';

/** How long a closing side waits for its `close` line to be taken before ending the session anyway. */
const CLOSE_LINE_WAIT_MS = 250;
/** How often the HTTP/3 path re-reads maxDatagramSize (it can change with the path MTU). */
const H3_DATAGRAM_SIZE_POLL_MS = 2000;
/** Used until the QUIC connection reports its datagram limit. */
const H3_FALLBACK_DATAGRAM_BYTES = 1200;

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

  static open(options: WtConnectionOptions): WebTransportConnection {
    const writer = options.session.datagrams.createWritable().getWriter();
    return new WebTransportConnection(options, new WtDatagramWire(writer, options.drainStream));
  }

  private constructor(options: WtConnectionOptions, wire: WtDatagramWire) {
    const maxDatagramBytes = options.kind === 'h2' ? H2_MAX_DATAGRAM_BYTES : h3DatagramBytes(options.session);
    super({ kind: options.kind, peer: options.peer, sendQueuePackets: options.sendQueuePackets, maxDatagramBytes }, wire);
    this.session = options.session;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.controlWriter = options.controlStream.writable.getWriter();
    this.controlWriter.closed.then(undefined, noop);
    void this.readDatagrams();
    void this.readControl(options.controlStream);
    this.session.closed.then(
      (info) => this.onSessionClosed(info.reason ?? '', info.closeCode),
      (err: unknown) => this.onSessionClosed(err instanceof Error ? err.message : String(err), undefined),
    );
    if (options.kind === 'h3') {
      this.sizePoll = this.clock.setInterval(() => this.sendQueue.setMaxDatagramBytes(h3DatagramBytes(this.session)), H3_DATAGRAM_SIZE_POLL_MS);
    }
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
  }

  private onSessionClosed(reason: string, closeCode: number | undefined): void {
    const parsed = reason.startsWith('{') ? parseControlLine(reason) : undefined;
    if (parsed?.ok && parsed.message.type === 'close') this.notePeerClose(closeInfoFrom(parsed.message));
    const detail = reason === '' ? `session ended (code ${closeCode ?? 'none'})` : reason.slice(0, 200);
    this.transportEnded({ reason: 'connection_lost', message: detail });
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
