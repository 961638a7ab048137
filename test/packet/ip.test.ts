import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  checkIpPacket,
  ipv4Destination,
  ipv4Source,
  ipv4ToWord,
  ipv6DestinationWord,
  ipv6SourceWord,
  ipv6ToBytes,
  ipv6ToWords,
  wordToIpv4,
} from '../../src/packet/ip.js';
import { ipv4Packet, ipv6Packet } from '../support/packets.js';

describe('IP header reading', () => {
  it('reads IPv4 source and destination as words', () => {
    const p = ipv4Packet('198.18.0.2', '198.19.255.254');
    expect(checkIpPacket(p, 0, p.length)).toBe(4);
    expect(ipv4Source(p, 0)).toBe(ipv4ToWord('198.18.0.2'));
    expect(wordToIpv4(ipv4Destination(p, 0))).toBe('198.19.255.254');
  });

  it('reads IPv6 addresses word by word', () => {
    const p = ipv6Packet('2001:db8::2', '2001:db8:4711::ffff:1');
    expect(checkIpPacket(p, 0, p.length)).toBe(6);
    const src = ipv6ToWords('2001:db8::2');
    const dst = ipv6ToWords('2001:db8:4711::ffff:1');
    for (let i = 0; i < 4; i++) {
      expect(ipv6SourceWord(p, 0, i)).toBe(src[i]);
      expect(ipv6DestinationWord(p, 0, i)).toBe(dst[i]);
    }
  });

  it('works at an offset inside a larger buffer', () => {
    const p = ipv4Packet('198.18.0.9', '198.18.0.1');
    const big = Buffer.alloc(100 + p.length);
    p.copy(big, 100);
    expect(checkIpPacket(big, 100, p.length)).toBe(4);
    expect(wordToIpv4(ipv4Source(big, 100))).toBe('198.18.0.9');
  });

  it('rejects truncated packets, wrong versions and lying lengths', () => {
    const v4 = ipv4Packet('198.18.0.2', '198.18.0.1', 40);
    expect(checkIpPacket(v4, 0, 19)).toBe(0);
    expect(checkIpPacket(v4, 0, 0)).toBe(0);
    const lying = Buffer.from(v4);
    lying.writeUInt16BE(2000, 2);
    expect(checkIpPacket(lying, 0, lying.length)).toBe(0);
    const badIhl = Buffer.from(v4);
    badIhl[0] = 0x44;
    expect(checkIpPacket(badIhl, 0, badIhl.length)).toBe(0);
    const v5 = Buffer.from(v4);
    v5[0] = 0x55;
    expect(checkIpPacket(v5, 0, v5.length)).toBe(0);
    const v6 = ipv6Packet('2001:db8::2', '2001:db8::1', 10);
    expect(checkIpPacket(v6, 0, 39)).toBe(0);
    v6.writeUInt16BE(500, 4);
    expect(checkIpPacket(v6, 0, v6.length)).toBe(0);
  });

  it('accepts IPv4 options when IHL covers them', () => {
    const p = ipv4Packet('198.18.0.2', '198.18.0.1', 40);
    p[0] = 0x46;
    expect(checkIpPacket(p, 0, p.length)).toBe(4);
  });

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(80), (bytes, len) => {
        const buf = Buffer.from(bytes);
        const length = Math.min(len, buf.length);
        const v = checkIpPacket(buf, 0, length);
        expect([0, 4, 6]).toContain(v);
        if (v === 4) expect(length).toBeGreaterThanOrEqual(20);
        if (v === 6) expect(length).toBeGreaterThanOrEqual(40);
      }),
      { numRuns: 2000 },
    );
  });

  it('parses IPv6 text forms', () => {
    expect(Buffer.from(ipv6ToBytes('::1')).toString('hex')).toBe('00000000000000000000000000000001');
    expect(Buffer.from(ipv6ToBytes('2001:db8::')).toString('hex')).toBe('20010db8000000000000000000000000');
    expect(Buffer.from(ipv6ToBytes('::ffff:192.0.2.1')).toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(() => ipv6ToBytes('1::2::3')).toThrow();
    expect(() => ipv4ToWord('256.1.1.1')).toThrow();
  });
});
