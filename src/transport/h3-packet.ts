/**
 * What the HTTP/3 connection guard reads of a QUIC datagram before the library's QUICHE gets it (RFC 9000 §17,
 * invariants RFC 8999): the header form, a long header's version and type, and the destination connection ID.
 * Nothing is decrypted and nothing allocated; a datagram too short to parse is left to QUICHE.
 *
 * And which connection IDs QUICHE's server gives a connection: the native module (1.6.8, pinned; its
 * http3server.h uses QUICHE's DeterministicConnectionIdGenerator with 8-byte IDs) keeps a client's 8-byte
 * original destination ID as its own, replaces any other length by FNV-1a-64 of it (the 8 bytes in host order,
 * little-endian on x64), and derives each further ID it issues (NEW_CONNECTION_ID) the same way from the one
 * before. test/transport/h3-connection-guard.test.ts checks this against the real module.
 */

export const QUIC_V1 = 0x00000001;
/** QUICHE's server connection ID length (kQuicDefaultConnectionIdLength). */
export const SERVER_CID_LENGTH = 8;
/** QUICHE drops client Initial datagrams below this (RFC 9000 §14.1); such a datagram opens nothing. */
export const MIN_INITIAL_DATAGRAM = 1200;

export const PacketKind = {
  /** Short header (1-RTT): the destination ID is the server's, SERVER_CID_LENGTH bytes at offset 1. */
  Short: 0,
  /** A v1 Initial whose datagram is large enough to open a connection. */
  Initial: 1,
  /** A v1 Handshake packet: the client got the server's first flight (it is not spoofed). */
  Handshake: 2,
  /** Any other long header (0-RTT, another version) or a datagram too short to parse. */
  Other: 3,
} as const;
export type PacketKind = (typeof PacketKind)[keyof typeof PacketKind];

/** The kind of the first packet in `msg`. */
export function packetKind(msg: Uint8Array): PacketKind {
  const first = msg[0];
  if (first === undefined) return PacketKind.Other;
  if ((first & 0x80) === 0) return msg.length > SERVER_CID_LENGTH ? PacketKind.Short : PacketKind.Other;
  if (msg.length < 7) return PacketKind.Other;
  const version = ((msg[1]! << 24) | (msg[2]! << 16) | (msg[3]! << 8) | msg[4]!) >>> 0;
  if (version !== QUIC_V1) return PacketKind.Other;
  const dcidLength = msg[5]!;
  if (dcidLength > 20 || msg.length < 6 + dcidLength) return PacketKind.Other;
  const type = (first & 0x30) >> 4;
  if (type === 0) return msg.length >= MIN_INITIAL_DATAGRAM && dcidLength >= 8 ? PacketKind.Initial : PacketKind.Other;
  return type === 2 ? PacketKind.Handshake : PacketKind.Other;
}

/** A QUIC variable-length integer at msg[offset] (RFC 9000 §16), or null past the end. */
function varint(msg: Uint8Array, offset: number): { value: number; next: number } | null {
  const first = msg[offset];
  if (first === undefined) return null;
  const size = 1 << (first >> 6);
  if (offset + size > msg.length) return null;
  let value = first & 0x3f;
  for (let i = 1; i < size; i++) value = value * 256 + msg[offset + i]!;
  return { value, next: offset + size };
}

/**
 * Whether a datagram that starts with a v1 Initial also carries a Handshake (or 1-RTT) packet behind it: the
 * client's second flight coalesces its Initial ACK with its Handshake packet (RFC 9000 §12.2). Only called while
 * a connection's handshake is not yet seen, so a few small objects here do not touch the data plane.
 */
export function coalescesHandshake(msg: Uint8Array): boolean {
  let offset = 0;
  while (offset < msg.length) {
    const first = msg[offset]!;
    if ((first & 0x80) === 0) return (first & 0x40) !== 0;
    if (offset + 7 > msg.length) return false;
    const type = (first & 0x30) >> 4;
    if (type === 2) return true;
    if (type !== 0) return false;
    let at = offset + 5;
    at += 1 + msg[at]!; // destination ID
    if (at >= msg.length) return false;
    at += 1 + msg[at]!; // source ID
    const token = varint(msg, at);
    if (token === null) return false;
    const length = varint(msg, token.next + token.value);
    if (length === null) return false;
    offset = length.next + length.value;
  }
  return false;
}

/** Where the destination connection ID of the first packet starts, and its length (call after packetKind). */
export function dcidOffset(msg: Uint8Array): number {
  return (msg[0]! & 0x80) === 0 ? 1 : 6;
}

export function dcidLength(msg: Uint8Array): number {
  return (msg[0]! & 0x80) === 0 ? SERVER_CID_LENGTH : msg[5]!;
}

/** A 32-bit hash of bytes [offset, offset + length) (FNV-1a 32): the index key of a connection ID. */
export function cidKey(bytes: Uint8Array, offset: number, length: number): number {
  let h = 0x811c9dc5;
  for (let i = offset; i < offset + length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h | 0;
}

const FNV64_OFFSET = 0xcbf29ce484222325n;
const FNV64_PRIME = 0x100000001b3n;
const U64 = (1n << 64n) - 1n;

/** QUICHE's QuicUtils::FNV1a_64_Hash, as the 8 bytes its generator copies out of the uint64 (little-endian). */
function replacement(cid: Uint8Array): Buffer {
  let h = FNV64_OFFSET;
  for (const b of cid) h = ((h ^ BigInt(b)) * FNV64_PRIME) & U64;
  const out = Buffer.alloc(SERVER_CID_LENGTH);
  out.writeBigUInt64LE(h);
  return out;
}

/** The first `count` connection IDs QUICHE's server uses for the connection a client opened with `originalDcid`. */
export function serverConnectionIds(originalDcid: Uint8Array, count: number): Buffer[] {
  const ids: Buffer[] = [];
  let id = originalDcid.length === SERVER_CID_LENGTH ? Buffer.from(originalDcid) : replacement(originalDcid);
  for (let i = 0; i < count; i++) {
    ids.push(id);
    id = replacement(id);
  }
  return ids;
}
