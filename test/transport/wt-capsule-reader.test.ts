/**
 * H2CapsuleReader (src/transport/wt-capsule-reader.ts): capsules cut at every possible chunk boundary come out
 * whole and in order (fixed-seed property test), DATAGRAMs within one chunk as views without a copy, split ones
 * through one reused buffer that the idle sweep drops, oversized ones skipped and reported, oversized other
 * capsules a protocol error. And divertHttp2Capsules (wt-lib.ts) against the library's real Http2CapsuleParser
 * (@fails-components/webtransport 1.6.8 internals): it takes the stream over at a capsule boundary only, and
 * stream data still reaches the library's streams through its parser.
 */
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
// @ts-expect-error internal module of the library, no types
import { Http2CapsuleParser } from '../../node_modules/@fails-components/webtransport/lib/http2/node/capsuleparser.js';
import { sweepIdleBuffers } from '../../src/transport/framing.js';
import { H2CapsuleReader, type CapsuleSink } from '../../src/transport/wt-capsule-reader.js';
import { divertHttp2Capsules } from '../../src/transport/wt-lib.js';

function varint(value: number, bytes?: number): Buffer {
  const size = bytes ?? (value < 64 ? 1 : value < 16384 ? 2 : value < 2 ** 30 ? 4 : 8);
  const out = Buffer.alloc(size);
  let v = value;
  for (let i = size - 1; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  out[0] = out[0]! | ({ 1: 0x00, 2: 0x40, 4: 0x80, 8: 0xc0 } as Record<number, number>)[size]!;
  return out;
}

function capsule(type: number, payload: Buffer, lengthBytes?: number): Buffer {
  return Buffer.concat([varint(type), varint(payload.length, lengthBytes), payload]);
}

type Event = { kind: 'datagram'; bytes: Buffer } | { kind: 'other'; bytes: Buffer } | { kind: 'oversized'; length: number } | { kind: 'error' };

function collector(): { sink: CapsuleSink; events: Event[] } {
  const events: Event[] = [];
  return {
    events,
    sink: {
      onDatagram: (data, offset, length) => events.push({ kind: 'datagram', bytes: Buffer.from(data.subarray(offset, offset + length)) }),
      onOtherCapsule: (c) => events.push({ kind: 'other', bytes: Buffer.from(c) }),
      onOversizedDatagram: (length) => events.push({ kind: 'oversized', length }),
      onProtocolError: () => events.push({ kind: 'error' }),
    },
  };
}

const LIMITS = { maxDatagramBytes: 65_536, maxOtherBytes: 1 << 20 };
const WT_STREAM = 0x190b4d3b;

function payload(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('H2CapsuleReader', () => {
  it('gives the same capsules for every way of cutting the bytes into chunks (fixed seed)', () => {
    const capsuleArb = fc.oneof(
      fc.record({ kind: fc.constant('datagram' as const), length: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 1000, max: 65_536 }), fc.constant(65_536)), wide: fc.boolean() }),
      fc.record({ kind: fc.constant('other' as const), length: fc.integer({ min: 0, max: 20_000 }), wide: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(capsuleArb, { minLength: 1, maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 40 }), (capsules, cuts) => {
        const expected: Event[] = [];
        const wire = Buffer.concat(
          capsules.map((c, i) => {
            const body = payload(c.length, i);
            // A non-minimal length varint (8 bytes) is legal and makes the longest headers.
            const encoded = capsule(c.kind === 'datagram' ? 0 : WT_STREAM, body, c.wide ? 8 : undefined);
            if (c.kind === 'other') expected.push({ kind: 'other', bytes: encoded });
            else if (c.length > 0) expected.push({ kind: 'datagram', bytes: body });
            return encoded;
          }),
        );
        const { sink, events } = collector();
        const reader = new H2CapsuleReader(sink, LIMITS);
        let pos = 0;
        for (let i = 0; pos < wire.length; i++) {
          const size = cuts[i % cuts.length]!;
          reader.push(wire.subarray(pos, pos + size));
          pos += size;
        }
        // Compared by kind, length and content without a deep diff of 64 KB buffers.
        const summary = (list: Event[]) => list.map((e) => ('bytes' in e ? `${e.kind}:${e.bytes.length}:${e.bytes.toString('base64').slice(-12)}` : e.kind));
        expect(summary(events)).toEqual(summary(expected));
        expect(events.every((e, i) => 'bytes' in e && e.bytes.equals((expected[i] as { bytes: Buffer }).bytes))).toBe(true);
        reader.release();
      }),
      { numRuns: 200 },
    );
  });

  it('cuts a header at every byte: type and length varints held across chunks', () => {
    const wire = Buffer.concat([capsule(WT_STREAM, payload(5, 1), 8), capsule(0, payload(300, 2), 8), capsule(0, payload(3, 3))]);
    for (let cut = 1; cut < wire.length; cut++) {
      const { sink, events } = collector();
      const reader = new H2CapsuleReader(sink, LIMITS);
      reader.push(wire.subarray(0, cut));
      reader.push(wire.subarray(cut));
      expect(events.map((e) => e.kind)).toEqual(['other', 'datagram', 'datagram']);
      expect(events[1]).toEqual({ kind: 'datagram', bytes: payload(300, 2) });
    }
  });

  it('hands a datagram within one chunk over as a view of that chunk (no copy)', () => {
    const chunk = Buffer.concat([capsule(0, payload(100, 1)), capsule(0, payload(200, 2))]);
    const views: Buffer[] = [];
    const reader = new H2CapsuleReader({ ...collector().sink, onDatagram: (data) => views.push(data) }, LIMITS);
    reader.push(chunk);
    expect(views).toEqual([chunk, chunk]);
    expect(reader.holdsAssembly).toBe(false);
  });

  it('reassembles a 64 KB datagram split over 16 KiB chunks into one reused buffer, dropped when idle', () => {
    const big = payload(65_536, 7);
    const wire = Buffer.concat([capsule(0, big), capsule(0, big)]);
    const seen: Buffer[] = [];
    const { sink, events } = collector();
    const reader = new H2CapsuleReader({ ...sink, onDatagram: (data, offset, length) => (seen.push(data), sink.onDatagram(data, offset, length)) }, LIMITS);
    for (let pos = 0; pos < wire.length; pos += 16_384) reader.push(wire.subarray(pos, pos + 16_384));
    expect(events).toEqual([{ kind: 'datagram', bytes: big }, { kind: 'datagram', bytes: big }]);
    expect(seen[0]).toBe(seen[1]);
    expect(reader.holdsAssembly).toBe(true);
    sweepIdleBuffers(); // used since the last sweep: kept
    expect(reader.holdsAssembly).toBe(true);
    sweepIdleBuffers();
    expect(reader.holdsAssembly).toBe(false);
    reader.push(wire);
    expect(events).toHaveLength(4);
  });

  it('skips an oversized datagram and reads on; an oversized other capsule ends the reading', () => {
    const { sink, events } = collector();
    const reader = new H2CapsuleReader(sink, { maxDatagramBytes: 100, maxOtherBytes: 64 });
    const wire = Buffer.concat([capsule(0, payload(101, 1)), capsule(0, payload(100, 2)), capsule(WT_STREAM, payload(70, 3)), capsule(0, payload(5, 4))]);
    reader.push(wire.subarray(0, 50));
    reader.push(wire.subarray(50));
    expect(events).toEqual([{ kind: 'oversized', length: 101 }, { kind: 'datagram', bytes: payload(100, 2) }, { kind: 'error' }]);
  });
});

describe('divertHttp2Capsules against the library parser (1.6.8 internals)', () => {
  function libraryParser(stream: PassThrough): { parser: object; streamData: Buffer[]; libraryDatagrams: Buffer[] } {
    const streamData: Buffer[] = [];
    const libraryDatagrams: Buffer[] = [];
    const nativesession = {
      flowController: { receiveWindowSize: 1n << 30n },
      jsobj: { state: 'connected', onDatagramReceived: ({ datagram }: { datagram: Uint8Array }) => libraryDatagrams.push(Buffer.from(datagram)), onClose() {} },
      closeConnection() {},
    };
    const parser = new (Http2CapsuleParser as new (args: object) => { wtstreams: Map<bigint, object> })({
      stream,
      nativesession,
      isclient: true,
      initialStreamSendWindowOffsetBidi: 0,
      initialStreamSendWindowOffsetUnidi: 0,
      initialStreamReceiveWindowOffset: 0,
      streamShouldAutoTuneReceiveWindow: false,
      streamReceiveWindowSizeLimit: 0,
    });
    parser.wtstreams.set(0n, { recvData: ({ data }: { data?: Uint8Array }) => data && streamData.push(Buffer.from(data)), onFin() {} });
    return { parser, streamData, libraryDatagrams };
  }

  const streamCapsule = (text: string): Buffer => capsule(WT_STREAM, Buffer.concat([Buffer.from([0]), Buffer.from(text)]));
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('takes over at a capsule boundary: datagrams to our reader, stream capsules through the library parser', async () => {
    const stream = new PassThrough();
    const { parser, streamData, libraryDatagrams } = libraryParser(stream);
    const { sink, events } = collector();
    let libraryParse: ((c: Buffer) => void) | null = null;
    const reader = new H2CapsuleReader({ ...sink, onOtherCapsule: (c) => libraryParse?.(c) }, LIMITS);
    // The library's parser holds half a datagram capsule when the diversion is installed.
    const first = capsule(0, payload(3000, 1));
    stream.write(first.subarray(0, 1000));
    await tick();
    libraryParse = divertHttp2Capsules({ objint: { capsParser: parser } }, stream, (chunk) => reader.push(chunk));
    expect(libraryParse).not.toBeNull();
    expect(stream.listenerCount('readable')).toBe(0);
    // The library's parser takes the rest of its capsule, then hands over at the end of that chunk.
    stream.write(first.subarray(1000));
    await tick();
    stream.write(Buffer.concat([streamCapsule('hello '), capsule(0, payload(40_000, 2))]));
    await tick();
    stream.write(streamCapsule('world'));
    await tick();
    // The split capsule was finished by the library (which then handed over); the rest came through the reader.
    expect(libraryDatagrams).toEqual([payload(3000, 1)]);
    expect(events).toEqual([{ kind: 'datagram', bytes: payload(40_000, 2) }]);
    expect(Buffer.concat(streamData).toString()).toBe('hello world');
  });

  it('refuses (changes nothing) when the session has no library parser on that stream', () => {
    const stream = new PassThrough();
    stream.on('readable', () => {});
    expect(divertHttp2Capsules({ objint: {} }, stream, () => {})).toBeNull();
    expect(divertHttp2Capsules({ objint: { capsParser: { parseData() {}, mode: 's', stream: new PassThrough() } } }, stream, () => {})).toBeNull();
    expect(stream.listenerCount('readable')).toBe(1);
  });
});
