/**
 * The session MTU (src/transport/mtu.ts) and what a datagram size that shrinks during a session does: the
 * session stays, every packet still arrives whole (split into fragments once it no longer fits).
 */
import { describe, expect, it } from 'vitest';
import { createMemoryPair } from '../../src/transport/memory.js';
import { IPV6_MIN_MTU, packetBytesFor, sessionMtu } from '../../src/transport/mtu.js';

describe('sessionMtu', () => {
  it('keeps the configured MTU where one datagram carries it (HTTP/2)', () => {
    expect(sessionMtu(1400, 16000, true)).toBe(1400);
  });

  it('lowers it to the largest packet one datagram carries whole (HTTP/3 at the gateway: 1213)', () => {
    expect(packetBytesFor(1213)).toBe(1211);
    expect(sessionMtu(1400, 1213, false)).toBe(1211);
  });

  it('never goes below the IPv6 minimum for a session with IPv6', () => {
    expect(sessionMtu(1400, 1213, true)).toBe(IPV6_MIN_MTU);
    expect(sessionMtu(1400, 100, false)).toBe(576);
  });
});

describe('a datagram size that shrinks during a session', () => {
  it('keeps the session and delivers every packet byte-exact, fitting ones whole, larger ones in fragments', async () => {
    const pair = createMemoryPair({ maxDatagramBytes: 1402 });
    const received: Buffer[] = [];
    pair.server.setReceiver({ onPacket: (d, o, l) => received.push(Buffer.from(d.subarray(o, o + l))), onBatchEnd() {} });
    const packet = (size: number, fill: number): Buffer => Buffer.alloc(size, fill);
    const sent = [packet(1400, 1), packet(1400, 2)];
    for (const p of sent) pair.client.sendPacket(p, 0, p.length);
    pair.client.flush();
    await new Promise((r) => setImmediate(r));
    const before = pair.client.stats.datagramsSent;
    expect(before).toBe(2);
    // The path shrinks (e.g. a QUIC path MTU drop): 1400-byte packets no longer fit one datagram.
    pair.setMaxDatagramBytes('client', 1211);
    expect(pair.client.maxDatagramBytes).toBe(1211);
    const later = [packet(1400, 3), packet(1209, 4), packet(1400, 5)];
    for (const p of later) pair.client.sendPacket(p, 0, p.length);
    pair.client.flush();
    await new Promise((r) => setImmediate(r));
    expect(received).toEqual([...sent, ...later]);
    // 1400 -> two fragments each; the 1209-byte packet (the new MTU) goes whole: 5 datagrams.
    expect(pair.client.stats.datagramsSent - before).toBe(5);
    expect(pair.server.stats.malformed).toBe(0);
    let closed = false;
    void pair.client.closed.then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
  });
});
