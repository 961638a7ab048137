/**
 * Reading IP headers in place, for the per-packet path: no allocation, no exceptions. Addresses are read as
 * signed 32-bit words (readInt32BE), which stay small integers in V8 and serve directly as Map keys.
 *
 * Layout facts used here:
 *   IPv4: byte 0 = version(4) | IHL, bytes 2-3 total length, 12-15 source, 16-19 destination.
 *   IPv6: byte 0 = version(6) | traffic class, bytes 4-5 payload length, 8-23 source, 24-39 destination.
 */

export const IPV4_HEADER_MIN = 20;
export const IPV6_HEADER_LEN = 40;

/** 4, 6, or 0 when the packet is too short or of another version, or its header lies about lengths. */
export function checkIpPacket(data: Uint8Array, offset: number, length: number): 0 | 4 | 6 {
  if (length < 1) return 0;
  const first = data[offset]!;
  const version = first >> 4;
  if (version === 4) {
    if (length < IPV4_HEADER_MIN) return 0;
    const ihl = (first & 0x0f) * 4;
    if (ihl < IPV4_HEADER_MIN || ihl > length) return 0;
    const total = (data[offset + 2]! << 8) | data[offset + 3]!;
    if (total < ihl || total > length) return 0;
    return 4;
  }
  if (version === 6) {
    if (length < IPV6_HEADER_LEN) return 0;
    const payload = (data[offset + 4]! << 8) | data[offset + 5]!;
    if (IPV6_HEADER_LEN + payload > length) return 0;
    return 6;
  }
  return 0;
}

function word(data: Uint8Array, at: number): number {
  return ((data[at]! << 24) | (data[at + 1]! << 16) | (data[at + 2]! << 8) | data[at + 3]!) | 0;
}

export function ipv4Source(data: Uint8Array, offset: number): number {
  return word(data, offset + 12);
}

export function ipv4Destination(data: Uint8Array, offset: number): number {
  return word(data, offset + 16);
}

/** Word i (0..3) of the IPv6 source address. */
export function ipv6SourceWord(data: Uint8Array, offset: number, i: number): number {
  return word(data, offset + 8 + 4 * i);
}

/** Word i (0..3) of the IPv6 destination address. */
export function ipv6DestinationWord(data: Uint8Array, offset: number, i: number): number {
  return word(data, offset + 24 + 4 * i);
}

/** Parse a dotted IPv4 string to the signed word used as key; throws on bad input (edge use only). */
export function ipv4ToWord(address: string): number {
  const parts = address.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${address}`);
  let value = 0;
  for (const part of parts) {
    const n = Number(part);
    if (!/^\d{1,3}$/.test(part) || n > 255) throw new Error(`not an IPv4 address: ${address}`);
    value = value * 256 + n;
  }
  return value | 0;
}

export function wordToIpv4(value: number): string {
  const v = value >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Parse an IPv6 string into four signed words (edge use only). */
export function ipv6ToWords(address: string): [number, number, number, number] {
  const bytes = ipv6ToBytes(address);
  return [word(bytes, 0), word(bytes, 4), word(bytes, 8), word(bytes, 12)];
}

export function ipv6ToBytes(address: string): Uint8Array {
  let text = address;
  const out = new Uint8Array(16);
  // An embedded IPv4 tail ("::ffff:1.2.3.4") becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const w = ipv4ToWord(v4[1]!) >>> 0;
    text = `${text.slice(0, v4.index)}${(w >>> 16).toString(16)}:${(w & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${address}`);
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) throw new Error(`not an IPv6 address: ${address}`);
  const groups = [...head, ...new Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  groups.forEach((g, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`not an IPv6 address: ${address}`);
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 255;
  });
  return out;
}
