/** Builders of real IPv4/IPv6 packets for unit tests (valid headers, arbitrary payload). */
import { ipv4ToWord, ipv6ToBytes } from '../../src/packet/ip.js';

export function ipv4Packet(src: string, dst: string, payloadLength = 32, fill = 0xab): Buffer {
  const total = 20 + payloadLength;
  const b = Buffer.alloc(total, fill);
  b[0] = 0x45;
  b[1] = 0;
  b.writeUInt16BE(total, 2);
  b.writeUInt32BE(0, 4);
  b[8] = 64;
  b[9] = 17;
  b.writeUInt16BE(0, 10);
  b.writeInt32BE(ipv4ToWord(src), 12);
  b.writeInt32BE(ipv4ToWord(dst), 16);
  return b;
}

export function ipv6Packet(src: string, dst: string, payloadLength = 32, fill = 0xcd): Buffer {
  const b = Buffer.alloc(40 + payloadLength, fill);
  b.writeUInt32BE(0x60000000, 0);
  b.writeUInt16BE(payloadLength, 4);
  b[6] = 17;
  b[7] = 64;
  Buffer.from(ipv6ToBytes(src)).copy(b, 8);
  Buffer.from(ipv6ToBytes(dst)).copy(b, 24);
  return b;
}
