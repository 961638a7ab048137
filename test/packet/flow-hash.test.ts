import { describe, expect, it } from 'vitest';
import { flowHash } from '../../src/packet/flow-hash.js';

function v4(protocol: number, sport: number, dport: number, fragment = 0, src = 2): Buffer {
  const p = Buffer.alloc(40);
  p[0] = 0x45;
  p.writeUInt16BE(40, 2);
  p.writeUInt16BE(fragment, 6);
  p[9] = protocol;
  p.set([198, 18, 0, src], 12);
  p.set([198, 18, 1, 1], 16);
  p.writeUInt16BE(sport, 20);
  p.writeUInt16BE(dport, 22);
  return p;
}

function v6(next: number, sport: number): Buffer {
  const p = Buffer.alloc(60);
  p[0] = 0x60;
  p.writeUInt16BE(20, 4);
  p[6] = next;
  p.set([0x20, 0x01, 0x0d, 0xb8], 8);
  p[23] = 2;
  p.set([0x20, 0x01, 0x0d, 0xb8], 24);
  p[39] = 1;
  p.writeUInt16BE(sport, 40);
  p.writeUInt16BE(443, 42);
  return p;
}

const h = (p: Buffer, salt = 7): number => flowHash(p, 0, p.length, salt);

describe('flowHash', () => {
  it('tells flows apart by ports, protocol, addresses and salt; the same 5-tuple always hashes the same', () => {
    expect(h(v4(6, 1000, 443))).toBe(h(v4(6, 1000, 443)));
    const distinct = [v4(6, 1000, 443), v4(6, 1001, 443), v4(6, 1000, 444), v4(17, 1000, 443), v4(6, 1000, 443, 0, 3)].map((p) => h(p));
    expect(new Set(distinct).size).toBe(5);
    expect(h(v4(6, 1000, 443), 1)).not.toBe(h(v4(6, 1000, 443), 2)); // another session or direction
    expect(Number.isInteger(h(v4(6, 1, 2)))).toBe(true);
  });

  it('ignores ports for ICMP and for IPv4 fragments (all fragments of a datagram stay in one flow)', () => {
    expect(h(v4(1, 1000, 443))).toBe(h(v4(1, 2000, 80)));
    expect(h(v4(17, 1000, 443, 0x2000))).toBe(h(v4(17, 9, 9, 0x0010))); // MF set / an offset
    expect(h(v4(17, 1000, 443, 0x2000))).not.toBe(h(v4(17, 1000, 443)));
  });

  it('reads IPv6 addresses, next header and ports; non-IP bytes hash to the salt alone', () => {
    expect(h(v6(6, 1000))).not.toBe(h(v6(6, 1001)));
    expect(h(v6(58, 1000))).toBe(h(v6(58, 1001)));
    expect(h(Buffer.alloc(40))).toBe(h(Buffer.alloc(80)));
    expect(h(Buffer.alloc(0))).toBe(h(Buffer.alloc(40)));
  });

  it('spreads 10 000 ports over 128 sets evenly (no set above twice its share)', () => {
    const counts = new Array<number>(128).fill(0);
    for (let port = 0; port < 10_000; port++) counts[h(v4(6, port, 443)) & 127]!++;
    expect(Math.max(...counts)).toBeLessThan((2 * 10_000) / 128);
  });
});
