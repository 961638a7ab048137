/** Builders of real IPv4/IPv6 packets for unit tests (valid headers, arbitrary payload). */
import { ipv4ToWord, ipv6ToBytes } from '../../src/packet/ip.js';

/** IPv4/UDP with `optionWords` 4-byte words of options (router alert, then NOPs); total length as declared. */
export function ipv4PacketWith(src: string, dst: string, payload: Uint8Array, optionWords = 0): Buffer {
  const ihl = 5 + optionWords;
  const b = Buffer.alloc(ihl * 4 + payload.length);
  b[0] = 0x40 | ihl;
  b.writeUInt16BE(b.length, 2);
  b[8] = 64;
  b[9] = 17;
  b.writeInt32BE(ipv4ToWord(src), 12);
  b.writeInt32BE(ipv4ToWord(dst), 16);
  for (let i = 20; i < ihl * 4; i++) b[i] = i === 20 ? 0x94 : 1;
  Buffer.from(payload).copy(b, ihl * 4);
  return b;
}

/** IPv6 with a chain of 8-byte extension headers (hop-by-hop 0, routing 43, fragment 44, dest opts 60), then UDP. */
export function ipv6PacketWith(src: string, dst: string, payload: Uint8Array, extensions: readonly number[] = []): Buffer {
  const exts = extensions.map((type, i) => {
    const e = Buffer.alloc(8);
    e[0] = extensions[i + 1] ?? 17;
    if (type === 44) e.writeUInt16BE(0x0001, 2); // offset 0, more fragments
    return e;
  });
  const body = Buffer.concat([...exts, Buffer.from(payload)]);
  const b = Buffer.alloc(40 + body.length);
  b.writeUInt32BE(0x60000000, 0);
  b.writeUInt16BE(body.length, 4);
  b[6] = extensions[0] ?? 17;
  b[7] = 64;
  Buffer.from(ipv6ToBytes(src)).copy(b, 8);
  Buffer.from(ipv6ToBytes(dst)).copy(b, 24);
  body.copy(b, 40);
  return b;
}

export function ipv4Packet(src: string, dst: string, payloadLength = 32, fill = 0xab): Buffer {
  return ipv4PacketWith(src, dst, Buffer.alloc(payloadLength, fill));
}

export function ipv6Packet(src: string, dst: string, payloadLength = 32, fill = 0xcd): Buffer {
  return ipv6PacketWith(src, dst, Buffer.alloc(payloadLength, fill));
}

/**
 * A TCP super-packet (as a TSO read hands it over): one IPv4 (or IPv6) + TCP header, then `payloadLength`
 * bytes standing for segments of `gsoSize`. The TCP checksum is left as the kernel leaves it (not final).
 */
export function tcpSuperPacket(src: string, dst: string, payloadLength: number, fill = 0x5a): Buffer {
  const v6 = src.includes(':');
  const ip = v6 ? 40 : 20;
  const b = Buffer.alloc(ip + 20 + payloadLength, fill);
  if (v6) {
    b.writeUInt32BE(0x60000000, 0);
    b.writeUInt16BE(20 + payloadLength, 4);
    b[6] = 6;
    b[7] = 64;
    Buffer.from(ipv6ToBytes(src)).copy(b, 8);
    Buffer.from(ipv6ToBytes(dst)).copy(b, 24);
  } else {
    b.fill(0, 0, 20);
    b[0] = 0x45;
    b.writeUInt16BE(b.length, 2);
    b.writeUInt16BE(0x4000, 6);
    b[8] = 64;
    b[9] = 6;
    b.writeInt32BE(ipv4ToWord(src), 12);
    b.writeInt32BE(ipv4ToWord(dst), 16);
  }
  b.fill(0, ip, ip + 20);
  b.writeUInt16BE(40000, ip);
  b.writeUInt16BE(5201, ip + 2);
  b.writeUInt32BE(1000, ip + 4);
  b.writeUInt32BE(1, ip + 8);
  b[ip + 12] = 5 << 4;
  b[ip + 13] = 0x18; // ACK|PSH
  b.writeUInt16BE(512, ip + 14);
  return b;
}
