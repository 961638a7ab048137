/** QuicConnection and QuicEndpointHost over an in-memory double of the native addon (quic-native.ts). */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { QuicConnection } from '../../src/transport/quic-connection.js';
import { QuicEndpointHost } from '../../src/transport/quic-endpoint.js';
import type { NativeQuicAddon, NativeQuicHandlers, NativeQuicOptions, NativeQuicStats } from '../../src/transport/quic-native.js';
import { REFUSAL_CLOSE_CODE, encodeRefusal } from '../../src/transport/wt-auth.js';

class FakeEndpoint {
  static last: FakeEndpoint;
  readonly sent: { slot: number; bytes: Buffer }[] = [];
  readonly stream: string[] = [];
  readonly closes: { slot: number; code: number; reason: string }[] = [];
  batches = 0;
  constructor(
    readonly options: NativeQuicOptions,
    readonly handlers: NativeQuicHandlers,
  ) {
    FakeEndpoint.last = this;
  }
  connect(): number {
    return 0;
  }
  sendBatch(count: number): number {
    this.batches++;
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const length = this.options.txMeta[2 * i + 1]!;
      this.sent.push({ slot: this.options.txMeta[2 * i]!, bytes: Buffer.from(this.options.txData.subarray(offset, offset + length)) });
      offset += length;
    }
    return count;
  }
  writeStream(_slot: number, data: Uint8Array): boolean {
    this.stream.push(Buffer.from(data).toString());
    return true;
  }
  closeConnection(slot: number, code: number, reason: string): void {
    this.closes.push({ slot, code, reason });
  }
  maxDatagramBytes(): number {
    return 1404;
  }
  updateCertificate(): void {}
  stats(): NativeQuicStats {
    return {} as NativeQuicStats;
  }
  address() {
    return { address: '127.0.0.1', port: 4433 };
  }
  close(): void {}
  /** Puts datagrams into the receive area as the addon does and makes its one call. */
  deliver(slot: number, datagrams: Buffer[]): void {
    let offset = 0;
    datagrams.forEach((d, i) => {
      this.options.rxData.set(d, offset);
      this.options.rxMeta.set([slot, offset, d.length], 3 * i);
      offset += d.length;
    });
    this.handlers.onDatagrams(datagrams.length);
  }
}

const addon = { QuicEndpoint: FakeEndpoint, ngtcp2Version: 'fake', gnutlsVersion: 'fake' } as unknown as NativeQuicAddon;

function open() {
  const host = new QuicEndpointHost(addon, { server: true, host: '127.0.0.1', port: 0, handshakeTimeoutMs: 1000, idleTimeoutMs: 5000 });
  const native = FakeEndpoint.last;
  const connection = new QuicConnection({ host, slot: 3, role: 'server', peer: '192.0.2.7:1', sendQueuePackets: 64, logger: silentLogger() });
  return { host, native, connection };
}

describe('QuicConnection over a double of the addon', () => {
  it('hands a batch of packets to the addon in one sendBatch at flush, coalesced into datagrams of its size', () => {
    const { native, connection } = open();
    expect(connection.maxDatagramBytes).toBe(1404);
    const packet = Buffer.alloc(600, 1);
    for (let i = 0; i < 6; i++) expect(connection.sendPacket(packet, 0, packet.length)).toBe(true);
    connection.flush();
    expect(native.batches).toBe(1);
    expect(native.sent.length).toBe(3);
    expect(native.sent.every((d) => d.slot === 3 && d.bytes.length <= 1404)).toBe(true);
  });

  it('decodes datagrams of its slot from the receive area and counts the malformed one', () => {
    const { native, connection } = open();
    const got: number[] = [];
    let batches = 0;
    connection.setReceiver({ onPacket: (_d, _o, length) => got.push(length), onBatchEnd: () => batches++ });
    const record = Buffer.concat([Buffer.from([0x00, 0x05]), Buffer.from([0x45, 1, 2, 3, 4])]);
    native.deliver(3, [record, Buffer.from([0xff]), record]);
    native.deliver(9, [record]); // another slot: not this connection's
    expect(got).toEqual([5, 5]);
    expect(batches).toBe(2);
    expect(connection.stats.malformed).toBe(1);
  });

  it('holds back when the addon marks the slot blocked and resumes on onWritable', () => {
    const { native, connection } = open();
    native.options.blocked[3] = 1;
    const packet = Buffer.alloc(1400, 2);
    connection.sendPacket(packet, 0, packet.length);
    connection.flush();
    expect(native.sent.length).toBe(0);
    native.options.blocked[3] = 0;
    native.handlers.onWritable(3);
    expect(native.sent.length).toBe(1);
  });

  it('closes with the close line on the stream and the same message as the CONNECTION_CLOSE reason', async () => {
    const { native, connection } = open();
    connection.close({ reason: 'admin_kill', message: 'bye' });
    expect(native.stream.at(-1)).toBe('{"type":"close","reason":"admin_kill","retry":false,"message":"bye"}\n');
    expect(native.closes).toEqual([{ slot: 3, code: 0, reason: '{"type":"close","reason":"admin_kill","retry":false,"message":"bye"}' }]);
    expect(await connection.closed).toEqual({ reason: 'admin_kill', message: 'bye', retry: false });
  });

  it("reports the peer's refusal and close reason from onClose", async () => {
    const refused = open();
    const refusal = { status: 401, code: 'QG_ERR_AUTH_FAILED', message: 'bad password' };
    refused.native.handlers.onClose(3, 0, REFUSAL_CLOSE_CODE, encodeRefusal(refusal));
    expect(await refused.connection.closed).toEqual({ reason: 'QG_ERR_AUTH_FAILED', message: 'bad password', retry: false, refused: refusal });
    const idle = open();
    idle.native.handlers.onClose(3, 2, 0, '');
    expect(await idle.connection.closed).toEqual({ reason: 'connection_lost', message: 'QUIC idle timeout' });
  });
});
