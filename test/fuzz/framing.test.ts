/**
 * Fuzzing the datagram decoder (src/transport/framing.ts) with hostile datagrams: random bytes, coalesced
 * records whose lengths lie, truncation, trailing bytes, forged fragments, and loss/reordering of real
 * fragmented traffic, super-packet records (framing version 2) with lying lengths, unknown record types, bad
 * kinds and gso sizes. Properties: decode never throws; a malformed datagram delivers nothing; what is delivered
 * always lies inside the datagram; the accept/reject decision matches an independent reference validator; and
 * under any loss or reordering a delivered packet is always byte-equal to a packet that was sent (loss, never
 * corruption).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DatagramDecoder,
  DatagramEncoder,
  MAX_PACKET_BYTES,
  MAX_SUPER_PACKET_BYTES,
  MIN_DATAGRAM_BYTES,
} from '../../src/transport/framing.js';

/** Reference reading of the wire format, written from the format comment, not from the implementation. */
function referenceWellFormed(d: Uint8Array): boolean {
  if (d.length === 0) return false;
  let pos = 0;
  while (pos < d.length) {
    if (pos + 2 > d.length) return false;
    const header = (d[pos]! << 8) | d[pos + 1]!;
    if (header === 0) {
      // super-packet: [0][type 1][kind][gso size][u32 length]
      if (pos + 10 > d.length || d[pos + 2] !== 1) return false;
      const kind = d[pos + 3]!;
      const base = kind & 0x7f;
      if (base < 1 || base > 4 || (kind & 0x80 && base > 2)) return false;
      if (((d[pos + 4]! << 8) | d[pos + 5]!) === 0) return false;
      const length = d[pos + 6]! * 2 ** 24 + ((d[pos + 7]! << 16) | (d[pos + 8]! << 8) | d[pos + 9]!);
      if (length === 0 || length > 65575) return false;
      pos += 10 + length;
    } else if (header & 0x8000) {
      const size = header & 0x7fff;
      if (size === 0 || pos + 6 > d.length) return false;
      const index = d[pos + 4]!;
      const count = d[pos + 5]!;
      if (count < 2 || index >= count) return false;
      pos += 6 + size;
    } else {
      pos += 2 + header;
    }
  }
  return pos === d.length;
}

interface Delivery {
  ok: boolean;
  packets: Buffer[];
  supers: { body: Buffer; kind: number; gsoSize: number }[];
}

function decodeOne(decoder: DatagramDecoder, buffer: Buffer, offset: number, length: number): Delivery {
  const packets: Buffer[] = [];
  const supers: Delivery['supers'] = [];
  const ok = decoder.decode(buffer, offset, length, {
    onSuperPacket(data, at, len, kind, gsoSize) {
      expect(data).toBe(buffer);
      expect(len).toBeGreaterThan(0);
      expect(len).toBeLessThanOrEqual(MAX_SUPER_PACKET_BYTES);
      expect(at).toBeGreaterThanOrEqual(offset);
      expect(at + len).toBeLessThanOrEqual(offset + length);
      expect(gsoSize).toBeGreaterThan(0);
      supers.push({ body: Buffer.from(data.subarray(at, at + len)), kind, gsoSize });
    },
    onPacket(data, at, len) {
      expect(len).toBeGreaterThan(0);
      expect(len).toBeLessThanOrEqual(MAX_PACKET_BYTES);
      expect(at).toBeGreaterThanOrEqual(0);
      expect(at + len).toBeLessThanOrEqual(data.length);
      if (data === buffer) {
        // A whole-record packet is a view inside the datagram's own range.
        expect(at).toBeGreaterThanOrEqual(offset);
        expect(at + len).toBeLessThanOrEqual(offset + length);
      }
      packets.push(Buffer.from(data.subarray(at, at + len)));
    },
  });
  if (!ok) expect(packets.length + supers.length).toBe(0);
  return { ok, packets, supers };
}

/** Records built by hand: honest or lying lengths, fragments with arbitrary numbers. */
const record = fc.oneof(
  fc.record({ kind: fc.constant('whole' as const), body: fc.uint8Array({ minLength: 0, maxLength: 64 }), lie: fc.integer({ min: -3, max: 3 }) }),
  fc.record({
    kind: fc.constant('fragment' as const),
    body: fc.uint8Array({ minLength: 0, maxLength: 64 }),
    lie: fc.integer({ min: -3, max: 3 }),
    id: fc.integer({ min: 0, max: 3 }),
    index: fc.integer({ min: 0, max: 4 }),
    count: fc.integer({ min: 0, max: 4 }),
  }),
  fc.record({
    kind: fc.constant('super' as const),
    body: fc.uint8Array({ minLength: 0, maxLength: 64 }),
    lie: fc.integer({ min: -3, max: 3 }),
    type: fc.constantFrom(1, 1, 1, 0, 2),
    superKind: fc.constantFrom(1, 2, 3, 4, 0x81, 0x82, 0, 5, 0x83, 0xff),
    gsoSize: fc.constantFrom(1, 1000, 0xffff, 0),
  }),
);
type Rec = typeof record extends fc.Arbitrary<infer T> ? T : never;

function build(records: readonly Rec[], lieOften: boolean): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) {
    const declared = Math.max(0, r.body.length + (lieOften ? r.lie : 0)) & 0x7fff;
    if (r.kind === 'super') {
      const h = Buffer.alloc(10);
      h[2] = r.type;
      h[3] = r.superKind;
      h.writeUInt16BE(r.gsoSize, 4);
      h.writeUInt32BE(Math.max(0, r.body.length + (lieOften ? r.lie : 0)), 6);
      parts.push(h, Buffer.from(r.body));
    } else if (r.kind === 'whole') {
      const h = Buffer.alloc(2);
      h.writeUInt16BE(declared);
      parts.push(h, Buffer.from(r.body));
    } else {
      const h = Buffer.alloc(6);
      h.writeUInt16BE(0x8000 | declared);
      h.writeUInt16BE(r.id, 2);
      h[4] = r.index;
      h[5] = r.count;
      parts.push(h, Buffer.from(r.body));
    }
  }
  return Buffer.concat(parts);
}

describe('DatagramDecoder under fuzz', () => {
  it('never throws on random bytes, and agrees with the reference validator', () => {
    const decoder = new DatagramDecoder();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        const buffer = Buffer.from(bytes);
        const { ok } = decodeOne(decoder, buffer, 0, buffer.length);
        expect(ok).toBe(referenceWellFormed(bytes));
      }),
      { numRuns: 5000 },
    );
  });

  it('handles coalesced records with lying lengths and forged fragment numbers like the reference', () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 12 }), fc.boolean(), (records, lieOften) => {
        const datagram = build(records, lieOften);
        const decoder = new DatagramDecoder();
        const { ok, packets, supers } = decodeOne(decoder, datagram, 0, datagram.length);
        expect(ok).toBe(referenceWellFormed(datagram));
        // (A zero-length whole record reads as the start of a super-packet record: then no count holds.)
        if (ok && !lieOften && records.every((r) => r.kind !== 'whole' || r.body.length > 0)) {
          // Every super-packet record arrives byte-exact with its kind and gso size.
          const superRecords = records.filter((r) => r.kind === 'super');
          expect(supers).toEqual(superRecords.map((r) => ({ body: Buffer.from(r.body), kind: r.superKind, gsoSize: r.gsoSize })));
          // Every whole record arrives byte-exact; fragments never produce more packets than they could.
          const wholes = records.filter((r) => r.kind === 'whole');
          const fragments = records.filter((r) => r.kind === 'fragment');
          expect(packets.length).toBeGreaterThanOrEqual(wholes.length);
          expect(packets.length).toBeLessThanOrEqual(wholes.length + Math.floor(fragments.length / 2));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('respects offset and length inside a larger buffer (bytes around the datagram are never read as records)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(record, { maxLength: 6 }), fc.uint8Array({ maxLength: 64 }), (before, records, after) => {
        const datagram = build(records, false);
        const buffer = Buffer.concat([Buffer.from(before), datagram, Buffer.from(after)]);
        const alone = decodeOne(new DatagramDecoder(), datagram, 0, datagram.length);
        const inside = decodeOne(new DatagramDecoder(), buffer, before.length, datagram.length);
        expect(inside).toEqual(alone);
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects out-of-range offset/length arguments instead of reading outside the buffer', () => {
    const decoder = new DatagramDecoder();
    const buffer = Buffer.from([0, 1, 9]);
    for (const [offset, length] of [[0, 0], [0, 4], [-1, 3], [2, 2], [3, 1], [0, -5]] as const) {
      expect(decodeOne(decoder, buffer, offset, length).ok).toBe(false);
    }
    expect(decodeOne(decoder, buffer, 0, 3)).toEqual({ ok: true, packets: [Buffer.from([9])], supers: [] });
  });

  it('under loss, duplication, reordering and bit flips of real traffic, delivers only packets that were sent', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: MIN_DATAGRAM_BYTES, max: 1500 }),
        fc.array(fc.record({ op: fc.constantFrom('drop', 'dup', 'swap', 'flip', 'truncate'), at: fc.nat(), other: fc.nat(), bit: fc.nat() }), { maxLength: 8 }),
        (sizes, maxDatagram, ops) => {
          // Unique content per packet: a 4-byte serial repeated, so a mix of two packets cannot pass as either.
          // At most 255 fragments per packet: cap sizes to what this datagram size can carry.
          const sent = sizes.map((wanted, serial) => {
            const size = Math.min(wanted, (maxDatagram - 6) * 255);
            const p = Buffer.alloc(size);
            for (let i = 0; i < size; i++) p[i] = (serial * 131 + Math.floor(i / 4) * 7 + i) & 0xff;
            p[0] = serial;
            return p;
          });
          const datagrams: Buffer[] = [];
          const encoder = new DatagramEncoder(maxDatagram, (d) => datagrams.push(Buffer.from(d)));
          for (const p of sent) expect(encoder.add(p, 0, p.length)).toBe(true);
          encoder.seal();
          const flipped = new Set<Buffer>();
          for (const { op, at, other, bit } of ops) {
            if (datagrams.length === 0) break;
            const i = at % datagrams.length;
            const d = datagrams[i]!;
            if (op === 'drop') datagrams.splice(i, 1);
            else if (op === 'dup') datagrams.splice(i, 0, d);
            else if (op === 'swap') {
              const j = other % datagrams.length;
              [datagrams[i], datagrams[j]] = [datagrams[j]!, d];
            } else if (op === 'truncate') datagrams[i] = d.subarray(0, other % (d.length + 1));
            else {
              const copy = Buffer.from(d);
              copy[bit % copy.length]! ^= 1 << (other % 8);
              datagrams[i] = copy;
              flipped.add(copy);
            }
          }
          const decoder = new DatagramDecoder();
          const known = new Set(sent.map((p) => p.toString('hex')));
          for (const d of datagrams) {
            const { ok, packets } = decodeOne(decoder, d, 0, d.length);
            expect(ok).toBe(referenceWellFormed(d));
            // A flipped payload bit is the transport's business (TLS/QUIC protect it) and can travel into a
            // reassembled packet; loss, duplication, reordering and truncation must never mix packets.
            if (flipped.size === 0) for (const p of packets) expect(known.has(p.toString('hex'))).toBe(true);
          }
        },
      ),
      { numRuns: 800 },
    );
  });

  it('caps reassembly at the largest IP packet: endless fragment chains are dropped and counted', () => {
    const decoder = new DatagramDecoder();
    const delivered: number[] = [];
    const target = { onPacket: (_d: Buffer, _o: number, len: number) => void delivered.push(len) };
    // 255 fragments of 0x7fff bytes claim ~8 MB; the decoder must stop at 64 KiB and never allocate more.
    const body = Buffer.alloc(0x7fff, 1);
    for (let index = 0; index < 255; index++) {
      const h = Buffer.alloc(6);
      h.writeUInt16BE(0x8000 | body.length);
      h.writeUInt16BE(9, 2);
      h[4] = index;
      h[5] = 255;
      const d = Buffer.concat([h, body]);
      expect(decoder.decode(d, 0, d.length, target)).toBe(true);
    }
    expect(delivered).toEqual([]);
    expect(decoder.fragmentGaps).toBeGreaterThanOrEqual(1);
    // The decoder is usable afterwards.
    const ok = Buffer.from([0, 2, 0x45, 0]);
    expect(decoder.decode(ok, 0, ok.length, target)).toBe(true);
    expect(delivered).toEqual([2]);
  });
});
