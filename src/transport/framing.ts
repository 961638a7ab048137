/**
 * Datagram codec of the tunnel: several IP packets per datagram, and packets that do not fit one datagram
 * split into fragments. Hand-written: the format is ours and must not allocate per packet.
 *
 * Wire format (framing version 2; version 1 is the same without the super-packet record): a datagram is a
 * sequence of records that fills it exactly, nothing else.
 *   whole packet  [u16 BE length L (1..0x7fff)][L bytes]
 *   fragment      [u16 BE 0x8000|L (L >= 1)][u16 BE packet id][u8 index][u8 count (>= 2)][L bytes]
 *   super-packet  [u16 BE 0][u8 record type 1][u8 kind][u16 BE gso size (>= 1)][u32 BE length L][L bytes]
 *                 a TCP/UDP packet of up to 64 KB standing for several real ones (TSO/USO, src/tun/device.ts):
 *                 kind 1 tcp4, 2 tcp6, 3 udp4, 4 udp6, a TCP kind | 0x80 with ECN (CWR); L <= 65575. Sent
 *                 only to a peer that announced framing version 2 (control message `framing`), alone in its
 *                 datagram (the HTTP/2 path's capsule then has a 4-byte length); the receiver checks the IP
 *                 and L4 headers before it writes the unit to its TUN (native/src/gso.h).
 * A length of 0 not followed by a known record type, a length past the end, bad fragment numbers, a bad
 * super-packet header or trailing bytes make the whole datagram malformed: nothing of it is delivered. Fragments of one packet are sent in order and reassembled only in
 * order (one packet at a time); a gap drops that packet (loss on the unreliable path, never corruption).
 *
 * Flow (encode): add() writes records straight into a slab; a datagram that is full (or flushed by seal())
 * is handed to the sink as a view into the slab. Slab memory is never reused, only replaced, so a view may
 * stay queued in the transport. Flow (decode): validate all record headers, then deliver offset views.
 *
 * Memory of an idle session: the first slab after idleness holds two full datagrams and each next one doubles
 * up to `slabBytes` (1 MiB), so a trickle of packets never pins a large slab while a busy session soon writes
 * into large ones. A slab (or reassembly buffer) that saw no use for one sweep period (IDLE_SWEEP_MS, one
 * process-wide unref'd timer) is dropped: an idle session holds no send or reassembly buffer.
 */

/** Something holding a buffer it can give up when idle (encoder slab, decoder reassembly, capsule reassembly). */
export interface IdleTrimmable {
  /** Drop the buffer when it was not used since the last call; true when nothing is held any more. */
  trimIfIdle(): boolean;
}

import { MAX_SUPER_PACKET_BYTES } from '../tun/device.js';

export { MAX_SUPER_PACKET_BYTES };

const holders = new Set<IdleTrimmable>();
let sweeper: NodeJS.Timeout | undefined;

export function holdBuffer(holder: IdleTrimmable): void {
  holders.add(holder);
  if (sweeper === undefined) {
    sweeper = setInterval(sweepIdleBuffers, IDLE_SWEEP_MS);
    sweeper.unref();
  }
}

/** The holder gave its buffer up itself: the sweep need not look at it any more. */
export function releaseBuffer(holder: IdleTrimmable): void {
  holders.delete(holder);
}

/** Drops the buffers idle since the previous sweep (exported for tests; the timer calls it). */
export function sweepIdleBuffers(): void {
  for (const holder of holders) if (holder.trimIfIdle()) holders.delete(holder);
  if (holders.size === 0 && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

export const RECORD_HEADER_BYTES = 2;
/** Highest framing version this codec speaks (announced to the peer; 2 adds the super-packet record). */
export const FRAMING_VERSION = 2;
export const SUPER_HEADER_BYTES = 10;
/**
 * Largest super-packet sent as one unit: the HTTP/2 library's capsule parser (@fails-components/webtransport
 * 1.6.8, capsuleparser.js) closes the connection on a capsule longer than 4 x its initial 16 KiB session
 * window, so a super-packet datagram stays within 65,536 bytes. Larger ones (rare: the kernel's TSO packets
 * stay below about 65,300 bytes) are segmented by the sender. Checked by test/transport/wt.test.ts.
 */
export const MAX_WIRE_SUPER_PACKET_BYTES = 4 * 16384 - SUPER_HEADER_BYTES;
const SUPER_RECORD_TYPE = 1;
const SUPER_KIND_ECN = 0x80;
export const FRAGMENT_HEADER_BYTES = 6;
/** Largest payload of one record (15-bit length). */
export const MAX_RECORD_PAYLOAD = 0x7fff;
/** Largest IP packet accepted (IPv4/IPv6 total length without jumbograms). */
export const MAX_PACKET_BYTES = 0xffff;
/** The HTTP/2 path silently drops datagrams over 16384 bytes; stay well below. */
export const H2_MAX_DATAGRAM_BYTES = 16000;
/** Below this a datagram cannot carry a useful fragment. */
export const MIN_DATAGRAM_BYTES = FRAGMENT_HEADER_BYTES + 16;
const MAX_FRAGMENTS = 255;
const FRAGMENT_FLAG = 0x8000;
const DEFAULT_SLAB_BYTES = 1 << 20;
/** How often idle buffers are looked at: one that was not used between two looks is dropped. */
const IDLE_SWEEP_MS = 10_000;

/** Receives a sealed datagram and the number of packets that start in it (for queue accounting). */
export type DatagramSink = (datagram: Buffer, packets: number) => void;

const EMPTY_SLAB = Buffer.alloc(0);

export class DatagramEncoder implements IdleTrimmable {
  private maxDatagram: number;
  private readonly slabBytes: number;
  private slab: Buffer;
  private start = 0;
  private pos = 0;
  private packetsInOpen = 0;
  private nextFragmentId = 0;
  private readonly headroom: number;
  /** Size of the next slab: two datagrams after idleness, doubling up to slabBytes. */
  private nextSlabBytes = 0;
  /** A packet was written since the last idle sweep. */
  private used = false;

  /**
   * `headroom`: bytes kept free in the slab right before every datagram, for the transport to put its own
   * framing there (the HTTP/2 path writes its capsule header in place, so one write carries the capsule).
   */
  constructor(
    maxDatagramBytes: number,
    private readonly sink: DatagramSink,
    slabBytes = DEFAULT_SLAB_BYTES,
    headroom = 0,
  ) {
    this.maxDatagram = checkDatagramSize(maxDatagramBytes);
    this.headroom = headroom;
    this.slabBytes = Math.max(slabBytes, this.maxDatagram + headroom);
    // The slab comes with the first packet (reserve()): an idle session holds no send buffer.
    this.slab = EMPTY_SLAB;
  }

  /** Bytes of the slab held now (0 when idle). */
  get slabSize(): number {
    return this.slab.length;
  }

  /** IdleTrimmable: drop the slab when no packet came since the last sweep and no datagram is open. */
  trimIfIdle(): boolean {
    if (this.used || this.pos !== this.start) {
      this.used = false;
      return false;
    }
    this.release();
    return true;
  }

  /**
   * Drop the slab and an open datagram with it (seal() first to keep that); views already handed out stay
   * valid. The next packet starts a small slab.
   */
  release(): void {
    this.slab = EMPTY_SLAB;
    this.start = this.pos = 0;
    this.packetsInOpen = 0;
    this.nextSlabBytes = 0;
    holders.delete(this);
  }

  get maxDatagramBytes(): number {
    return this.maxDatagram;
  }

  /** Packets written into the datagram that is not sealed yet. */
  get openPackets(): number {
    return this.packetsInOpen;
  }

  /** Change the datagram limit (e.g. the QUIC path's maxDatagramSize); seals what is open first. */
  setMaxDatagramBytes(bytes: number): void {
    if (bytes === this.maxDatagram) return;
    this.seal();
    this.maxDatagram = checkDatagramSize(bytes);
    if (this.slab.length < this.maxDatagram + this.headroom) {
      this.slab = EMPTY_SLAB;
      this.start = this.pos = 0;
    }
  }

  /** Encode one packet; false (nothing written) when its length is 0 or above MAX_PACKET_BYTES. */
  add(data: Uint8Array, offset: number, length: number): boolean {
    if (length <= 0 || length > MAX_PACKET_BYTES) return false;
    if (length <= MAX_RECORD_PAYLOAD && RECORD_HEADER_BYTES + length <= this.maxDatagram) {
      this.reserve(RECORD_HEADER_BYTES + length);
      this.slab.writeUInt16BE(length, this.pos);
      copyBytes(data, this.slab, this.pos + RECORD_HEADER_BYTES, offset, offset + length);
      this.pos += RECORD_HEADER_BYTES + length;
      this.packetsInOpen++;
      return true;
    }
    return this.addFragmented(data, offset, length);
  }

  /**
   * Encode one super-packet (see the file comment) as a datagram of its own, past maxDatagramBytes; false
   * (nothing written) when its length, kind or gso size cannot be framed.
   */
  addSuper(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): boolean {
    if (length <= 0 || length > MAX_WIRE_SUPER_PACKET_BYTES || !isSuperKind(kind) || gsoSize < 1 || gsoSize > 0xffff) return false;
    this.seal();
    this.used = true;
    const need = this.headroom + SUPER_HEADER_BYTES + length;
    if (this.slab.length - this.pos < need) {
      if (this.slab === EMPTY_SLAB) holdBuffer(this);
      const size = Math.max(need, Math.min(this.slabBytes, Math.max(this.nextSlabBytes, 2 * need)));
      this.nextSlabBytes = Math.min(this.slabBytes, size * 2);
      this.slab = Buffer.allocUnsafe(size);
      this.pos = 0;
    }
    this.pos += this.headroom;
    this.start = this.pos;
    const slab = this.slab;
    const at = this.pos;
    slab.writeUInt16BE(0, at);
    slab[at + 2] = SUPER_RECORD_TYPE;
    slab[at + 3] = kind;
    slab.writeUInt16BE(gsoSize, at + 4);
    slab.writeUInt32BE(length, at + 6);
    copyBytes(data, slab, at + SUPER_HEADER_BYTES, offset, offset + length);
    this.pos = at + SUPER_HEADER_BYTES + length;
    this.packetsInOpen = 1;
    this.seal();
    return true;
  }

  /** Hand the open datagram (if any) to the sink. */
  seal(): void {
    if (this.pos === this.start) return;
    const datagram = this.slab.subarray(this.start, this.pos);
    const packets = this.packetsInOpen;
    this.start = this.pos;
    this.packetsInOpen = 0;
    this.sink(datagram, packets);
  }

  private addFragmented(data: Uint8Array, offset: number, length: number): boolean {
    const chunk = Math.min(MAX_RECORD_PAYLOAD, this.maxDatagram - FRAGMENT_HEADER_BYTES);
    const count = Math.ceil(length / chunk);
    if (count > MAX_FRAGMENTS) return false;
    const id = this.nextFragmentId;
    this.nextFragmentId = (id + 1) & 0xffff;
    for (let index = 0; index < count; index++) {
      const from = index * chunk;
      const size = Math.min(chunk, length - from);
      this.reserve(FRAGMENT_HEADER_BYTES + size);
      const slab = this.slab;
      slab.writeUInt16BE(FRAGMENT_FLAG | size, this.pos);
      slab.writeUInt16BE(id, this.pos + 2);
      slab[this.pos + 4] = index;
      slab[this.pos + 5] = count;
      copyBytes(data, slab, this.pos + FRAGMENT_HEADER_BYTES, offset + from, offset + from + size);
      this.pos += FRAGMENT_HEADER_BYTES + size;
      if (index === 0) this.packetsInOpen++;
    }
    return true;
  }

  /**
   * Make room for `bytes` in the open datagram: seal it when full; when a new datagram opens, start a new slab
   * if the rest of this one cannot hold a full datagram, and skip the headroom.
   */
  private reserve(bytes: number): void {
    this.used = true;
    if (this.pos - this.start + bytes > this.maxDatagram) this.seal();
    if (this.pos === this.start) {
      const datagram = this.maxDatagram + this.headroom;
      if (this.slab.length - this.pos < datagram) {
        if (this.slab === EMPTY_SLAB) holdBuffer(this);
        const size = Math.min(this.slabBytes, Math.max(this.nextSlabBytes, 2 * datagram));
        this.nextSlabBytes = Math.min(this.slabBytes, size * 2);
        this.slab = Buffer.allocUnsafe(size);
        this.pos = 0;
      }
      this.pos += this.headroom;
      this.start = this.pos;
    }
  }
}

// Buffer#copy works on any Uint8Array and, from Node 22, copies without making a view (subarray + set always
// allocates one per packet; Node 20's copy does too, internally).
const bufferCopy = Buffer.prototype.copy;
function copyBytes(source: Uint8Array, target: Buffer, targetStart: number, sourceStart: number, sourceEnd: number): void {
  bufferCopy.call(source as Buffer, target, targetStart, sourceStart, sourceEnd);
}

function checkDatagramSize(bytes: number): number {
  if (!Number.isInteger(bytes) || bytes < MIN_DATAGRAM_BYTES) {
    throw new RangeError(`datagram size ${bytes} is below ${MIN_DATAGRAM_BYTES}`);
  }
  return bytes;
}

export interface DecodedPacketTarget {
  onPacket(data: Buffer, offset: number, length: number): void;
  /** A super-packet record (framing version 2): kind and gso size as framed, headers not yet checked. */
  onSuperPacket?(data: Buffer, offset: number, length: number, kind: number, gsoSize: number): void;
}

function isSuperKind(kind: number): boolean {
  const base = kind & ~SUPER_KIND_ECN;
  if (base < 1 || base > 4 || (kind & ~0xff) !== 0) return false;
  return (kind & SUPER_KIND_ECN) === 0 || base <= 2;
}

export class DatagramDecoder implements IdleTrimmable {
  /** Fragmented packets dropped because a fragment was missing or out of order. */
  fragmentGaps = 0;
  /** Made with the first fragment; dropped again when idle for a sweep period (see the file comment). */
  private reassembly: Buffer | undefined;
  private reassemblyUsed = false;
  private fragmentId = -1;
  private fragmentNext = 0;
  private fragmentCount = 0;
  private fragmentBytes = 0;

  /** Whether a reassembly buffer is held now. */
  get holdsReassembly(): boolean {
    return this.reassembly !== undefined;
  }

  /** IdleTrimmable: drop the reassembly buffer when no fragment came since the last sweep. */
  trimIfIdle(): boolean {
    if (this.reassemblyUsed) {
      this.reassemblyUsed = false;
      return false;
    }
    this.release();
    return true;
  }

  /** Drop the reassembly buffer (a packet half reassembled is lost, counted as a gap). */
  release(): void {
    if (this.fragmentNext !== 0) this.fragmentGaps++;
    this.fragmentNext = 0;
    this.reassembly = undefined;
    holders.delete(this);
  }

  /**
   * Deliver the packets of one datagram (views into `datagram`, valid during the call only).
   * Returns false, delivering nothing, when the datagram is malformed.
   */
  decode(datagram: Buffer, offset: number, length: number, target: DecodedPacketTarget): boolean {
    if (!isWellFormed(datagram, offset, length)) return false;
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const header = datagram.readUInt16BE(pos);
      if (header === 0) {
        const length = datagram.readUInt32BE(pos + 6);
        target.onSuperPacket?.(datagram, pos + SUPER_HEADER_BYTES, length, datagram[pos + 3]!, datagram.readUInt16BE(pos + 4));
        pos += SUPER_HEADER_BYTES + length;
      } else if ((header & FRAGMENT_FLAG) === 0) {
        target.onPacket(datagram, pos + RECORD_HEADER_BYTES, header);
        pos += RECORD_HEADER_BYTES + header;
      } else {
        const size = header & MAX_RECORD_PAYLOAD;
        this.onFragment(datagram, pos, size, target);
        pos += FRAGMENT_HEADER_BYTES + size;
      }
    }
    return true;
  }

  private onFragment(datagram: Buffer, pos: number, size: number, target: DecodedPacketTarget): void {
    const id = datagram.readUInt16BE(pos + 2);
    const index = datagram[pos + 4]!;
    const count = datagram[pos + 5]!;
    if (index === 0) {
      if (this.fragmentNext !== 0) this.fragmentGaps++;
      this.fragmentId = id;
      this.fragmentCount = count;
      this.fragmentBytes = 0;
    } else if (id !== this.fragmentId || index !== this.fragmentNext || count !== this.fragmentCount) {
      if (this.fragmentNext !== 0) this.fragmentGaps++;
      this.fragmentNext = 0;
      return;
    }
    if (this.fragmentBytes + size > MAX_PACKET_BYTES) {
      this.fragmentGaps++;
      this.fragmentNext = 0;
      return;
    }
    if (this.reassembly === undefined) {
      this.reassembly = Buffer.allocUnsafe(MAX_PACKET_BYTES);
      holdBuffer(this);
    }
    this.reassemblyUsed = true;
    datagram.copy(this.reassembly, this.fragmentBytes, pos + FRAGMENT_HEADER_BYTES, pos + FRAGMENT_HEADER_BYTES + size);
    this.fragmentBytes += size;
    this.fragmentNext = index + 1;
    if (this.fragmentNext === count) {
      this.fragmentNext = 0;
      target.onPacket(this.reassembly, 0, this.fragmentBytes);
    }
  }
}

/** Every record header is sane and the records fill the datagram exactly. */
function isWellFormed(datagram: Buffer, offset: number, length: number): boolean {
  if (length <= 0 || offset < 0 || offset + length > datagram.length) return false;
  const end = offset + length;
  let pos = offset;
  while (pos < end) {
    if (pos + RECORD_HEADER_BYTES > end) return false;
    const header = datagram.readUInt16BE(pos);
    if (header === 0) {
      if (pos + SUPER_HEADER_BYTES > end || datagram[pos + 2] !== SUPER_RECORD_TYPE) return false;
      if (!isSuperKind(datagram[pos + 3]!) || datagram.readUInt16BE(pos + 4) === 0) return false;
      const length = datagram.readUInt32BE(pos + 6);
      if (length === 0 || length > MAX_SUPER_PACKET_BYTES) return false;
      pos += SUPER_HEADER_BYTES + length;
    } else if ((header & FRAGMENT_FLAG) === 0) {
      pos += RECORD_HEADER_BYTES + header;
    } else {
      const size = header & MAX_RECORD_PAYLOAD;
      if (size === 0 || pos + FRAGMENT_HEADER_BYTES > end) return false;
      const index = datagram[pos + 4]!;
      const count = datagram[pos + 5]!;
      if (count < 2 || index >= count) return false;
      pos += FRAGMENT_HEADER_BYTES + size;
    }
  }
  return pos === end;
}
