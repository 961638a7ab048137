/**
 * A 32-bit (signed) hash of a packet's flow (the 5-tuple: addresses, protocol, and for TCP, UDP, UDP-Lite and SCTP the
 * ports), read in place for the per-packet path: no allocation, no exceptions. The caller mixes in its own
 * salt (the shaping scheduler gives each session and direction its own), so the two directions of one
 * connection and equal tuples of two sessions are different flows.
 *
 * IPv4 fragments (MF set or an offset) are hashed without ports: only the first one carries them, and all of a
 * datagram's fragments must stay in one flow. IPv6 extension headers are not walked: such packets hash by
 * addresses and next header (rare inside a tunnel; they still stay together).
 *
 * Written by hand: a flow dissector that reads a Buffer in place without allocating (no library does).
 */

const TCP = 6;
const UDP = 17;
const UDPLITE = 136;
const SCTP = 132;

function hasPorts(protocol: number): boolean {
  return protocol === TCP || protocol === UDP || protocol === UDPLITE || protocol === SCTP;
}

function word(data: Uint8Array, at: number): number {
  return ((data[at]! << 24) | (data[at + 1]! << 16) | (data[at + 2]! << 8) | data[at + 3]!) | 0;
}

// murmur3's 32-bit mixing steps: cheap, and every input bit reaches every output bit.
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h; // signed: a small integer in V8, where an unsigned value above 2^31 would be a heap number
}

/**
 * Flow hash of the packet at data[offset, offset + length), salted. A packet that is not IPv4 or IPv6 (the
 * pipelines have dropped those already) hashes to its salt's flow.
 */
export function flowHash(data: Uint8Array, offset: number, length: number, salt: number): number {
  let h = salt | 0;
  if (length < 1) return finish(h);
  const version = data[offset]! >> 4;
  if (version === 4 && length >= 20) {
    const ihl = (data[offset]! & 0x0f) * 4;
    const protocol = data[offset + 9]!;
    h = mix(h, word(data, offset + 12));
    h = mix(h, word(data, offset + 16));
    h = mix(h, protocol);
    const fragment = ((data[offset + 6]! << 8) | data[offset + 7]!) & 0x3fff; // MF flag and offset
    if (fragment === 0 && hasPorts(protocol) && length >= ihl + 4) h = mix(h, word(data, offset + ihl));
    return finish(h);
  }
  if (version === 6 && length >= 40) {
    const next = data[offset + 6]!;
    for (let at = offset + 8; at < offset + 40; at += 4) h = mix(h, word(data, at));
    h = mix(h, next);
    if (hasPorts(next) && length >= 44) h = mix(h, word(data, offset + 40));
    return finish(h);
  }
  return finish(h);
}
