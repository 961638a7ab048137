/**
 * Regression test of patches/@fails-components+webtransport: the HTTP/2 capsule parser must deliver every
 * byte of a stream-0 capsule split across two reads, and the FIN of a split capsule (defect 2); a session makes
 * its datagram readable, incoming unidirectional streams and `draining` only on first use (memory per idle
 * session) and they behave as before: data reaches them, they close with the session. And the pin: the
 * installed library is exactly the version the patch was made for, package.json pins that version exactly,
 * the install fails when the patch does not apply, and every line the patch adds is in the installed files.
 */
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error internal module of the library, no types
import { Http2CapsuleParser } from '../../node_modules/@fails-components/webtransport/lib/http2/node/capsuleparser.js';
// @ts-expect-error internal module of the library, no types
import { HttpWTSession } from '../../node_modules/@fails-components/webtransport/lib/session.js';

const ROOT = resolve(import.meta.dirname, '../..');
const LIB = '@fails-components/webtransport';
const H3 = '@fails-components/webtransport-transport-http3-quiche';

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(resolve(ROOT, path), 'utf8')) as Record<string, unknown>;
}

describe('the library patch is pinned to its version', () => {
  const patches = readdirSync(resolve(ROOT, 'patches')).filter((f) => f.startsWith('@fails-components+webtransport+'));
  const patchVersion = /\+(\d+\.\d+\.\d+)\.patch$/.exec(patches[0] ?? '')?.[1];

  it('one patch, made for exactly the installed version, which package.json pins exactly', () => {
    expect(patches).toHaveLength(1);
    const installed = readJson(`node_modules/${LIB}/package.json`).version;
    expect(installed).toBe(patchVersion);
    const pkg = readJson('package.json') as { dependencies: Record<string, string>; scripts: Record<string, string> };
    expect(pkg.dependencies[LIB]).toBe(patchVersion);
    // A patch that does not apply fails `npm ci`, on CI and off it.
    expect(pkg.scripts.postinstall).toMatch(/^patch-package --error-on-fail\b/);
  });

  it('the HTTP/3 module is of the same version as the library it plugs into', () => {
    expect(readJson(`node_modules/${H3}/package.json`).version).toBe(readJson(`node_modules/${LIB}/package.json`).version);
  });

  it('every line the patch adds is in the installed files (the patch is applied)', () => {
    const text = readFileSync(resolve(ROOT, 'patches', patches[0]!), 'utf8');
    const files = text.split(/^diff --git /m).slice(1);
    expect(files.length).toBeGreaterThan(0);
    for (const section of files) {
      const file = /^a\/(\S+)/.exec(section)![1]!;
      const installed = readFileSync(resolve(ROOT, file), 'utf8');
      const added = section.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++') && l.trim().length > 1).map((l) => l.slice(1));
      const missing = added.filter((l) => !installed.includes(l));
      expect(missing, `${file}: lines of the patch not installed`).toEqual([]);
    }
  });
});

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

interface LazySession {
  state: string;
  datagramsReadable_: unknown;
  incomingUnidirectionalStreams_: unknown;
  draining_: unknown;
  readonly draining: Promise<undefined>;
  readonly closed: Promise<{ closeCode: number; reason: string }>;
  readonly incomingUnidirectionalStreams: ReadableStream<unknown>;
  readonly datagrams: { readonly readable: ReadableStream<Uint8Array>; readonly maxDatagramSize: number; createWritable(): WritableStream<Uint8Array> };
  onReady(args: object): void;
  onClose(args: { errorcode: number; error: string }): void;
  onDatagramReceived(args: { datagram: Uint8Array }): void;
  onGoAwayReceived(): void;
}

function session(objint?: object): LazySession {
  const s = new (HttpWTSession as new (args: object) => LazySession)({ parentobj: {}, ...(objint ? { object: objint } : {}) });
  s.onReady({});
  return s;
}

describe('patched HttpWTSession (lazy per-session streams)', () => {
  it('makes nothing up front, and delivers a datagram that arrives before anyone asked for the readable', async () => {
    const s = session();
    expect(s.datagramsReadable_).toBeUndefined();
    expect(s.incomingUnidirectionalStreams_).toBeUndefined();
    expect(s.draining_).toBeUndefined();
    for (const field of ['incomingUnidirectionalStreams', 'draining']) expect(Object.hasOwn(s, field)).toBe(false);
    void s.datagrams.maxDatagramSize; // using the datagrams object does not make its readable
    expect(s.datagramsReadable_).toBeUndefined();
    s.onDatagramReceived({ datagram: new Uint8Array([1, 2, 3]) });
    const reader = s.datagrams.readable.getReader();
    expect(await reader.read()).toEqual({ done: false, value: new Uint8Array([1, 2, 3]) });
    s.onDatagramReceived({ datagram: new Uint8Array([4]) });
    expect(await reader.read()).toEqual({ done: false, value: new Uint8Array([4]) });
  });

  it('closes the streams with the session, also those first asked for after the close', async () => {
    const early = session();
    const uni = early.incomingUnidirectionalStreams.getReader();
    const dgram = early.datagrams.readable.getReader();
    early.onClose({ errorcode: 0, error: 'bye' });
    expect(await uni.read()).toEqual({ done: true, value: undefined });
    expect(await dgram.read()).toEqual({ done: true, value: undefined });
    expect(await early.closed).toEqual({ closeCode: 0, reason: 'bye' });

    const late = session();
    late.onClose({ errorcode: 0, error: '' });
    expect(await late.incomingUnidirectionalStreams.getReader().read()).toEqual({ done: true, value: undefined });
    expect(await late.datagrams.readable.getReader().read()).toEqual({ done: true, value: undefined });
  });

  it('resolves draining on GOAWAY whether it was asked for before or after', async () => {
    const before = session();
    const draining = before.draining;
    before.onGoAwayReceived();
    await expect(draining).resolves.toBeUndefined();
    const after = session();
    after.onGoAwayReceived();
    await expect(after.draining).resolves.toBeUndefined();
    expect(after.draining).toBe(after.draining);
  });

  it('writes datagrams through createWritable and reports the size limit', async () => {
    const written: Uint8Array[] = [];
    const s = session({ jsobj: undefined, getMaxDatagramSize: () => 16384, writeDatagram: (d: Uint8Array) => (written.push(d), { code: 'success' }) });
    expect(s.datagrams.maxDatagramSize).toBe(16384);
    const writer = s.datagrams.createWritable().getWriter();
    await writer.write(new Uint8Array([7, 8]));
    expect(written).toEqual([new Uint8Array([7, 8])]);
  });
});
