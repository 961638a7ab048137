/**
 * Fuzzing the IPv4/IPv6 header reader (src/packet/ip.ts): random bytes, truncation, wrong versions, IPv4
 * options (IHL 5..15) and IPv6 extension headers. checkIpPacket never throws, agrees with a reference reading
 * of RFC 791/8200 length rules, never reads past offset+length, and the address readers return the addresses
 * that were written, wherever the packet sits in its buffer.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkIpPacket,
  ipv4Destination,
  ipv4Source,
  ipv6DestinationWord,
  ipv6SourceWord,
  ipv6ToWords,
  wordToIpv4,
} from '../../src/packet/ip.js';
import { ipv4PacketWith, ipv6PacketWith } from '../support/packets.js';

function reference(d: Uint8Array, offset: number, length: number): 0 | 4 | 6 {
  if (length < 1) return 0;
  const v = d[offset]! >> 4;
  if (v === 4) {
    const ihl = (d[offset]! & 15) * 4;
    if (length < 20 || ihl < 20 || ihl > length) return 0;
    const total = d[offset + 2]! * 256 + d[offset + 3]!;
    return total >= ihl && total <= length ? 4 : 0;
  }
  if (v === 6) {
    if (length < 40) return 0;
    return 40 + d[offset + 4]! * 256 + d[offset + 5]! <= length ? 6 : 0;
  }
  return 0;
}

const v4addr = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
const v6addr = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));

/** The packet inside a larger buffer, with poison around it, so any read outside offset+length shows. */
function embed(packet: Uint8Array, before: number, after: number, poison: number): { buffer: Buffer; offset: number } {
  const buffer = Buffer.alloc(before + packet.length + after, poison);
  Buffer.from(packet).copy(buffer, before);
  return { buffer, offset: before };
}

describe('IP header reader under fuzz', () => {
  it('never throws on random bytes and matches the reference length rules', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.nat(8), fc.nat(8), fc.nat(255), (bytes, before, after, poison) => {
        const { buffer, offset } = embed(bytes, before, after, poison);
        const version = checkIpPacket(buffer, offset, bytes.length);
        expect([0, 4, 6]).toContain(version);
        expect(version).toBe(reference(bytes, 0, bytes.length));
      }),
      { numRuns: 10_000 },
    );
  });

  it('biased to plausible headers: version nibble 4/6, IHL and length fields near the edges', () => {
    const plausible = fc
      .tuple(fc.constantFrom(4, 6, 0, 5, 15), fc.nat(15), fc.nat(120), fc.uint8Array({ minLength: 0, maxLength: 100 }))
      .map(([version, ihl, declared, rest]) => {
        const b = Buffer.alloc(Math.max(1, rest.length));
        Buffer.from(rest).copy(b);
        b[0] = (version << 4) | ihl;
        if (b.length >= 6) b.writeUInt16BE(version === 6 ? Math.max(0, declared - 40) : declared, version === 6 ? 4 : 2);
        return b;
      });
    fc.assert(
      fc.property(plausible, (b) => {
        expect(checkIpPacket(b, 0, b.length)).toBe(reference(b, 0, b.length));
      }),
      { numRuns: 10_000 },
    );
  });

  it('accepts IPv4 with any options, reads its addresses, and refuses every truncation and a wrong version', () => {
    fc.assert(
      fc.property(v4addr, v4addr, fc.nat(10), fc.uint8Array({ maxLength: 64 }), fc.nat(8), fc.nat(), fc.nat(15), (src, dst, words, payload, pad, cut, badVersion) => {
        const p = ipv4PacketWith(src, dst, payload, words);
        const { buffer, offset } = embed(p, pad, pad, 0x45);
        expect(checkIpPacket(buffer, offset, p.length)).toBe(4);
        expect(wordToIpv4(ipv4Source(buffer, offset))).toBe(src);
        expect(wordToIpv4(ipv4Destination(buffer, offset))).toBe(dst);
        const truncated = cut % p.length;
        expect(checkIpPacket(buffer, offset, truncated)).toBe(0);
        if (badVersion !== 4 && badVersion !== 6) {
          buffer[offset] = (badVersion << 4) | (buffer[offset]! & 15);
          expect(checkIpPacket(buffer, offset, p.length)).toBe(0);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('accepts IPv6 with extension headers, reads its addresses in place, and refuses every truncation', () => {
    fc.assert(
      fc.property(
        v6addr,
        v6addr,
        fc.array(fc.constantFrom(0, 43, 44, 60), { maxLength: 4 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.nat(8),
        fc.nat(),
        (src, dst, extensions, payload, pad, cut) => {
          const p = ipv6PacketWith(src, dst, payload, extensions);
          const { buffer, offset } = embed(p, pad, pad, 0x60);
          expect(checkIpPacket(buffer, offset, p.length)).toBe(6);
          const s = ipv6ToWords(src);
          const d = ipv6ToWords(dst);
          for (let i = 0; i < 4; i++) {
            expect(ipv6SourceWord(buffer, offset, i)).toBe(s[i]);
            expect(ipv6DestinationWord(buffer, offset, i)).toBe(d[i]);
          }
          expect(checkIpPacket(buffer, offset, cut % p.length)).toBe(0);
          // An IPv6 header claiming version 4 (or 4 claiming 6) is read by the other rules, never trusted blindly.
          buffer[offset] = 0x40 | (buffer[offset]! & 15);
          expect(checkIpPacket(buffer, offset, p.length)).toBe(reference(buffer, offset, p.length));
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('refuses lying IPv4 lengths: IHL below 5, IHL past the end, total below IHL or past the end', () => {
    const p = ipv4PacketWith('198.18.0.2', '198.18.0.1', new Uint8Array(10));
    const at = (mutate: (b: Buffer) => void): number => {
      const b = Buffer.from(p);
      mutate(b);
      return checkIpPacket(b, 0, b.length);
    };
    expect(at(() => {})).toBe(4);
    for (let ihl = 0; ihl < 5; ihl++) expect(at((b) => void (b[0] = 0x40 | ihl))).toBe(0);
    expect(at((b) => void (b[0] = 0x4f))).toBe(0); // 60-byte header in a 30-byte packet
    expect(at((b) => b.writeUInt16BE(19, 2))).toBe(0);
    expect(at((b) => b.writeUInt16BE(31, 2))).toBe(0);
    expect(at((b) => b.writeUInt16BE(25, 2))).toBe(4); // shorter than the buffer: padding after the packet is allowed
  });
});
