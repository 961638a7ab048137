/**
 * Regression test of patches/@fails-components+webtransport: the HTTP/2 capsule parser must deliver every
 * byte of a stream-0 capsule split across two reads, and the FIN of a split capsule (defect 2).
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
// @ts-expect-error internal module of the library, no types
import { Http2CapsuleParser } from '../../node_modules/@fails-components/webtransport/lib/http2/node/capsuleparser.js';

const WT_STREAM_WOFIN = 0x190b4d3b;
const WT_STREAM_WFIN = 0x190b4d3c;

function varint(value: number): Buffer {
  if (value < 64) return Buffer.from([value]);
  if (value < 16384) return Buffer.from([0x40 | (value >> 8), value & 0xff]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  b[0] = b[0]! | 0x80;
  return b;
}

function capsule(type: number, streamId: number, payload: Buffer): Buffer {
  const body = Buffer.concat([varint(streamId), payload]);
  return Buffer.concat([varint(type), varint(body.length), body]);
}

interface Received {
  bytes: Buffer[];
  fins: number;
}

function parserWithStream(streamId: bigint): { parse(data: Buffer): void; received: Received } {
  const received: Received = { bytes: [], fins: 0 };
  const nativesession = { flowController: { receiveWindowSize: 1n << 30n }, jsobj: {}, closeConnection() {} };
  const parser = new (Http2CapsuleParser as new (args: object) => { parseData(d: Buffer): void; wtstreams: Map<bigint, object> })({
    stream: new EventEmitter(),
    nativesession,
    isclient: true,
    initialStreamSendWindowOffsetBidi: 0,
    initialStreamSendWindowOffsetUnidi: 0,
    initialStreamReceiveWindowOffset: 0,
    streamShouldAutoTuneReceiveWindow: false,
    streamReceiveWindowSizeLimit: 0,
  });
  parser.wtstreams.set(streamId, {
    recvData({ data }: { data?: Uint8Array }) {
      if (data) received.bytes.push(Buffer.from(data));
    },
    onFin() {
      received.fins++;
    },
  });
  return { parse: (d) => parser.parseData(d), received };
}

describe('patched Http2CapsuleParser', () => {
  it.each([0, 4])('delivers all bytes of a stream-%i capsule split across reads', (id) => {
    const payload = Buffer.from(Array.from({ length: 20_000 }, (_, i) => i & 0xff));
    const wire = capsule(WT_STREAM_WOFIN, id, payload);
    const { parse, received } = parserWithStream(BigInt(id));
    parse(wire.subarray(0, 16291));
    parse(wire.subarray(16291));
    expect(Buffer.concat(received.bytes).equals(payload)).toBe(true);
  });

  it('sees the FIN of a split capsule exactly once, after its last byte', () => {
    const payload = Buffer.alloc(5000, 9);
    const wire = capsule(WT_STREAM_WFIN, 0, payload);
    const { parse, received } = parserWithStream(0n);
    parse(wire.subarray(0, 1000));
    expect(received.fins).toBe(0);
    parse(wire.subarray(1000, 3000));
    expect(received.fins).toBe(0);
    parse(wire.subarray(3000));
    expect(received.fins).toBe(1);
    expect(Buffer.concat(received.bytes).equals(payload)).toBe(true);
  });
});
