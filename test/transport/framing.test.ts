import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DatagramDecoder, DatagramEncoder, H2_MAX_DATAGRAM_BYTES, MAX_PACKET_BYTES, MIN_DATAGRAM_BYTES, sweepIdleBuffers } from '../../src/transport/framing.js';

interface Sealed {
  datagram: Buffer;
  packets: number;
}

function encodeAll(packets: readonly Uint8Array[], maxDatagram: number, slabBytes?: number): Sealed[] {
  const sealed: Sealed[] = [];
  const encoder = new DatagramEncoder(maxDatagram, (datagram, count) => sealed.push({ datagram: Buffer.from(datagram), packets: count }), slabBytes);
  for (const packet of packets) expect(encoder.add(packet, 0, packet.length)).toBe(true);
  encoder.seal();
  return sealed;
}

function decodeAll(datagrams: readonly Buffer[], decoder = new DatagramDecoder()): { packets: Buffer[]; batches: number; malformed: number } {
  const packets: Buffer[] = [];
  let batches = 0;
  let malformed = 0;
  for (const d of datagrams) {
    const ok = decoder.decode(d, 0, d.length, { onPacket: (data, offset, length) => packets.push(Buffer.from(data.subarray(offset, offset + length))) });
    if (ok) batches++;
    else malformed++;
  }
  return { packets, batches, malformed };
}

const packetArb = fc.uint8Array({ minLength: 1, maxLength: 3000 });

describe('DatagramEncoder/Decoder', () => {
  it('coalesces many packets into few datagrams under the limit and decodes them byte-exact', () => {
    const packets = Array.from({ length: 100 }, (_, i) => Buffer.alloc(1400, i));
    const sealed = encodeAll(packets, H2_MAX_DATAGRAM_BYTES);
    // 1402 bytes per record, 11 records per 16000-byte datagram.
    expect(sealed.length).toBe(Math.ceil(100 / 11));
    for (const s of sealed) expect(s.datagram.length).toBeLessThanOrEqual(H2_MAX_DATAGRAM_BYTES);
    expect(sealed.reduce((n, s) => n + s.packets, 0)).toBe(100);
    const decoded = decodeAll(sealed.map((s) => s.datagram));
    expect(decoded.malformed).toBe(0);
    expect(decoded.packets).toEqual(packets);
  });

  it('round-trips any packet sequence at any datagram size, fragmenting what does not fit', () => {
    fc.assert(
      fc.property(fc.array(packetArb, { minLength: 1, maxLength: 30 }), fc.integer({ min: MIN_DATAGRAM_BYTES, max: 4000 }), (packets, max) => {
        const sealed = encodeAll(packets, max, 8192);
        for (const s of sealed) expect(s.datagram.length).toBeLessThanOrEqual(max);
        const decoded = decodeAll(sealed.map((s) => s.datagram));
        expect(decoded.malformed).toBe(0);
        expect(decoded.packets.map((p) => Buffer.from(p))).toEqual(packets.map((p) => Buffer.from(p)));
      }),
      { numRuns: 200 },
    );
  });

  it('fragments a 1400-byte packet for a 1211-byte QUIC datagram limit', () => {
    const packet = Buffer.from(Array.from({ length: 1400 }, (_, i) => i & 0xff));
    const sealed = encodeAll([packet], 1211);
    expect(sealed.length).toBe(2);
    const decoded = decodeAll(sealed.map((s) => s.datagram));
    expect(decoded.packets).toEqual([packet]);
  });

  it('drops a fragmented packet when a fragment is lost, and keeps decoding later ones', () => {
    const a = Buffer.alloc(3000, 1);
    const b = Buffer.alloc(3000, 2);
    const sealed = encodeAll([a, b], 1211).map((s) => s.datagram);
    const decoder = new DatagramDecoder();
    const withoutSecond = sealed.filter((_, i) => i !== 1);
    const decoded = decodeAll(withoutSecond, decoder);
    expect(decoded.packets).toEqual([b]);
    expect(decoder.fragmentGaps).toBe(1);
  });

  it('refuses empty and oversized packets', () => {
    const encoder = new DatagramEncoder(H2_MAX_DATAGRAM_BYTES, () => {});
    expect(encoder.add(Buffer.alloc(10), 0, 0)).toBe(false);
    expect(encoder.add(Buffer.alloc(MAX_PACKET_BYTES + 1), 0, MAX_PACKET_BYTES + 1)).toBe(false);
    expect(encoder.add(Buffer.alloc(MAX_PACKET_BYTES), 0, MAX_PACKET_BYTES)).toBe(true);
  });

  it('honours offset and length of the source buffer', () => {
    const source = Buffer.from('xxhello worldyy');
    const sealed = encodeAll([], 100);
    expect(sealed).toEqual([]);
    const out: Buffer[] = [];
    const encoder = new DatagramEncoder(100, (d) => out.push(Buffer.from(d)));
    encoder.add(source, 2, 11);
    encoder.seal();
    expect(decodeAll(out).packets.map((p) => p.toString())).toEqual(['hello world']);
  });
});

describe('DatagramDecoder on hostile input', () => {
  const decode = (bytes: Uint8Array) => {
    const buf = Buffer.from(bytes);
    const seen: [number, number][] = [];
    const ok = new DatagramDecoder().decode(buf, 0, buf.length, { onPacket: (_d, offset, length) => seen.push([offset, length]) });
    return { ok, seen, size: buf.length };
  };

  it('never throws on random bytes and only delivers views inside the datagram', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 2000 }), (bytes) => {
        const { ok, seen, size } = decode(bytes);
        if (!ok) expect(seen).toEqual([]);
        for (const [offset, length] of seen) {
          expect(length).toBeGreaterThan(0);
          expect(offset + length).toBeLessThanOrEqual(size);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects a length that points past the end (and delivers none of the datagram)', () => {
    expect(decode(Uint8Array.from([0, 3, 1, 2, 3, 0, 9, 1]))).toEqual({ ok: false, seen: [], size: 8 });
  });

  it('rejects zero lengths, truncated headers, trailing bytes and bad fragment numbers', () => {
    expect(decode(Uint8Array.from([0, 0])).ok).toBe(false);
    expect(decode(Uint8Array.from([0, 1, 7, 0])).ok).toBe(false);
    expect(decode(Uint8Array.from([])).ok).toBe(false);
    expect(decode(Uint8Array.from([0x80, 1, 0, 0, 0, 1, 9])).ok).toBe(false); // count 1
    expect(decode(Uint8Array.from([0x80, 1, 0, 0, 2, 2, 9])).ok).toBe(false); // index >= count
    expect(decode(Uint8Array.from([0x80, 0, 0, 0, 0, 2])).ok).toBe(false); // empty fragment
    expect(decode(Uint8Array.from([0, 1, 7]))).toEqual({ ok: true, seen: [[2, 1]], size: 3 });
  });
});

describe('buffers of an idle session', () => {
  it('starts with a slab of two datagrams and doubles it up to 1 MiB while packets keep coming', () => {
    const sizes: number[] = [];
    const encoder = new DatagramEncoder(H2_MAX_DATAGRAM_BYTES, () => {}, undefined, 3);
    const packet = Buffer.alloc(1400, 1);
    for (let i = 0; i < 20_000; i++) {
      encoder.add(packet, 0, packet.length);
      if (sizes.at(-1) !== encoder.slabSize) sizes.push(encoder.slabSize);
    }
    expect(sizes.slice(0, 4)).toEqual([2 * 16003, 4 * 16003, 8 * 16003, 16 * 16003]);
    expect(Math.max(...sizes)).toBe(1 << 20);
    encoder.release();
    expect(encoder.slabSize).toBe(0);
  });

  it('drops the slab after a sweep period without packets, never while used, and sealed datagrams stay intact', () => {
    const sealed: Buffer[] = [];
    const encoder = new DatagramEncoder(H2_MAX_DATAGRAM_BYTES, (d) => sealed.push(d));
    const packet = Buffer.alloc(100, 7);
    encoder.add(packet, 0, packet.length);
    sweepIdleBuffers(); // used since the last sweep: kept
    expect(encoder.slabSize).toBeGreaterThan(0);
    encoder.seal();
    encoder.add(packet, 0, packet.length);
    encoder.seal();
    sweepIdleBuffers();
    expect(encoder.slabSize).toBeGreaterThan(0);
    sweepIdleBuffers(); // a whole period without a packet: dropped
    expect(encoder.slabSize).toBe(0);
    expect(sealed.map((d) => decodeAll([d]).packets)).toEqual([[packet], [packet]]);
    // The next packet starts a small slab again.
    encoder.add(packet, 0, packet.length);
    expect(encoder.slabSize).toBe(2 * H2_MAX_DATAGRAM_BYTES);
    encoder.release();
  });

  it('keeps an open datagram through sweeps', () => {
    const sealed: Buffer[] = [];
    const encoder = new DatagramEncoder(H2_MAX_DATAGRAM_BYTES, (d) => sealed.push(d));
    encoder.add(Buffer.alloc(10, 1), 0, 10);
    sweepIdleBuffers();
    sweepIdleBuffers();
    sweepIdleBuffers();
    encoder.seal();
    expect(sealed).toHaveLength(1);
    expect(decodeAll(sealed).packets).toEqual([Buffer.alloc(10, 1)]);
    encoder.release();
  });

  it('drops the reassembly buffer of an idle decoder and reassembles again afterwards', () => {
    const big = Buffer.from(Array.from({ length: 40_000 }, (_, i) => i & 0xff));
    const decoder = new DatagramDecoder();
    const first = decodeAll(encodeAll([big], H2_MAX_DATAGRAM_BYTES).map((s) => s.datagram), decoder);
    expect(first.packets).toEqual([big]);
    expect(decoder.holdsReassembly).toBe(true);
    sweepIdleBuffers();
    expect(decoder.holdsReassembly).toBe(true);
    sweepIdleBuffers();
    expect(decoder.holdsReassembly).toBe(false);
    const again = decodeAll(encodeAll([big], H2_MAX_DATAGRAM_BYTES).map((s) => s.datagram), decoder);
    expect(again.packets).toEqual([big]);
    expect(decoder.fragmentGaps).toBe(0);
    decoder.release();
  });
});
