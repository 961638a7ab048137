/**
 * The receive side of the HTTP/2 fast path: reads the capsules (RFC 9297) on the HTTP/2 stream under a
 * WebTransport session, chunk by chunk as node:http2 hands them over. DATAGRAM capsules go straight to the
 * sink: a view into the chunk when the capsule lies within it, else reassembled ONCE into one reused buffer
 * (a 64 KB super-packet capsule spans four or five 16 KiB TLS records). Every other capsule (stream data of
 * the control stream, flow control, close) goes whole, in order, to the library's own parser.
 * Hand-written: the library's parser (@fails-components/webtransport 1.6.8) concatenates the held bytes with
 * each further chunk (Buffer.concat per chunk: quadratic in the chunks of a capsule, and the largest JS cost
 * of the tunnel in the profiles, docs/webtransport-patch.md) and reads BigInt varints; we keep its parser
 * for everything but datagrams.
 *
 * Capsule: [varint type][varint length][length bytes]; varint = QUIC's (RFC 9000 16): 2-bit length prefix.
 * Per datagram: no allocation, no promise (a split one costs one copy). A reassembly buffer not used for one
 * idle sweep is dropped (framing.ts IdleTrimmable), so an idle session holds none.
 */
import { holdBuffer, releaseBuffer, type IdleTrimmable } from './framing.js';

/** RFC 9297 DATAGRAM capsule type. */
const DATAGRAM_CAPSULE = 0x00;
/** Two varints of at most 8 bytes each. */
const MAX_HEADER_BYTES = 16;

export interface CapsuleSink {
  /** A DATAGRAM capsule's payload (length >= 1); the view is valid during the call only. */
  onDatagram(data: Buffer, offset: number, length: number): void;
  /** Any other capsule, header included, whole and in order; the buffer is valid during the call only. */
  onOtherCapsule(capsule: Buffer): void;
  /** A DATAGRAM capsule longer than maxDatagramBytes: its bytes were skipped, nothing delivered. */
  onOversizedDatagram(length: number): void;
  /** A non-DATAGRAM capsule longer than maxOtherBytes: nothing more is read (the caller ends the session). */
  onProtocolError(message: string): void;
}

export interface CapsuleReaderLimits {
  /** Largest DATAGRAM payload taken (longer ones are skipped and reported). */
  readonly maxDatagramBytes: number;
  /** Largest other capsule (header included) reassembled for the library's parser. */
  readonly maxOtherBytes: number;
}

const enum Mode {
  /** At a capsule start (header bytes may be held in `header`). */
  Header,
  /** Reassembling a DATAGRAM payload into `assembly`. */
  Datagram,
  /** Reassembling another capsule into `other`. */
  Other,
  /** Skipping an oversized DATAGRAM's payload. */
  Skip,
  /** A protocol error was reported: nothing more is read. */
  Failed,
}

/** Header length (type + length varints) of the capsule at `pos`, or 0 when it does not end before `end`. */
function headerLength(buf: Buffer, pos: number, end: number): number {
  if (pos >= end) return 0;
  const typeBytes = 1 << (buf[pos]! >> 6);
  if (pos + typeBytes >= end) return 0;
  const total = typeBytes + (1 << (buf[pos + typeBytes]! >> 6));
  return pos + total <= end ? total : 0;
}

/** A QUIC varint as a Number (values above 2^53 lose precision: they are far beyond every limit here). */
function readVarint(buf: Buffer, pos: number): number {
  const first = buf[pos]!;
  const bytes = 1 << (first >> 6);
  let value = first & 0x3f;
  for (let i = 1; i < bytes; i++) value = value * 256 + buf[pos + i]!;
  return value;
}

export class H2CapsuleReader implements IdleTrimmable {
  private mode = Mode.Header;
  /** Header bytes of a capsule whose header was cut by a chunk end (made the first time that happens). */
  private header: Buffer | undefined;
  private held = 0;
  /** Bytes of the current capsule's payload still to come (Datagram, Other, Skip). */
  private need = 0;
  private filled = 0;
  /** Datagram reassembly: made with the first split datagram, reused, dropped when idle. */
  private assembly: Buffer | undefined;
  private assemblyUsed = false;
  /** The other capsule being reassembled (exact size, header included). */
  private other: Buffer | undefined;

  constructor(
    private readonly sink: CapsuleSink,
    private readonly limits: CapsuleReaderLimits,
  ) {}

  /** Whether a datagram reassembly buffer is held now. */
  get holdsAssembly(): boolean {
    return this.assembly !== undefined;
  }

  /** IdleTrimmable: drop the reassembly buffer when no split datagram used it since the last sweep. */
  trimIfIdle(): boolean {
    if (this.assemblyUsed || this.mode === Mode.Datagram) {
      this.assemblyUsed = false;
      return false;
    }
    this.assembly = undefined;
    return true;
  }

  /** Stop reading and drop the buffers (the session ended). */
  release(): void {
    this.mode = Mode.Failed;
    this.assembly = undefined;
    this.other = undefined;
    releaseBuffer(this);
  }

  push(chunk: Buffer): void {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      const mode = this.mode;
      if (mode === Mode.Header) {
        let source = chunk;
        let at = pos;
        let headerBytes = 0;
        if (this.held === 0) {
          headerBytes = headerLength(chunk, pos, end);
          if (headerBytes === 0) {
            this.held = chunk.copy((this.header ??= Buffer.allocUnsafe(MAX_HEADER_BYTES)), 0, pos, end);
            return;
          }
          pos += headerBytes;
        } else {
          const held = this.header!;
          while ((headerBytes = headerLength(held, 0, this.held)) === 0) {
            if (pos >= end) return;
            held[this.held++] = chunk[pos++]!;
          }
          source = held;
          at = 0;
          this.held = 0;
        }
        const type = readVarint(source, at);
        const length = readVarint(source, at + (1 << (source[at]! >> 6)));
        if (type === DATAGRAM_CAPSULE) {
          if (length > this.limits.maxDatagramBytes) {
            this.sink.onOversizedDatagram(length);
            this.mode = Mode.Skip;
            this.need = length;
          } else if (length <= end - pos) {
            if (length > 0) this.sink.onDatagram(chunk, pos, length);
            pos += length;
          } else {
            this.startAssembly(length);
          }
        } else if (headerBytes + length > this.limits.maxOtherBytes) {
          this.mode = Mode.Failed;
          this.sink.onProtocolError(`HTTP/2 capsule of type 0x${type.toString(16)} with ${length} bytes exceeds ${this.limits.maxOtherBytes}`);
          return;
        } else if (source === chunk && length <= end - pos) {
          this.sink.onOtherCapsule(chunk.subarray(at, pos + length));
          pos += length;
        } else {
          this.other = Buffer.allocUnsafe(headerBytes + length);
          source.copy(this.other, 0, at, at + headerBytes);
          this.filled = headerBytes;
          this.need = length;
          this.mode = Mode.Other;
          if (length === 0) this.finishOther();
        }
        continue;
      }
      if (mode === Mode.Failed) return;
      const take = Math.min(this.need, end - pos);
      if (mode === Mode.Datagram) chunk.copy(this.assembly!, this.filled, pos, pos + take);
      else if (mode === Mode.Other) chunk.copy(this.other!, this.filled, pos, pos + take);
      this.filled += take;
      this.need -= take;
      pos += take;
      if (this.need > 0) return;
      if (mode === Mode.Datagram) {
        this.mode = Mode.Header;
        this.sink.onDatagram(this.assembly!, 0, this.filled);
      } else if (mode === Mode.Other) this.finishOther();
      else this.mode = Mode.Header;
    }
  }

  private startAssembly(length: number): void {
    if (this.assembly === undefined || this.assembly.length < length) {
      if (this.assembly === undefined) holdBuffer(this);
      this.assembly = Buffer.allocUnsafe(Math.max(length, this.limits.maxDatagramBytes));
    }
    this.assemblyUsed = true;
    this.mode = Mode.Datagram;
    this.filled = 0;
    this.need = length;
  }

  private finishOther(): void {
    const capsule = this.other!;
    this.other = undefined;
    this.mode = Mode.Header;
    this.sink.onOtherCapsule(capsule);
  }
}
