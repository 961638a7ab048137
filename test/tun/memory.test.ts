import { describe, expect, it } from 'vitest';
import { isQuicgateError } from '../../src/errors.js';
import { tunPacket, tunStride } from '../../src/tun/device.js';
import type { TunBatch } from '../../src/tun/device.js';
import { MemoryTun, POISON_BYTE } from '../../src/tun/memory.js';
import { ipv4Packet, ipv6Packet } from '../support/packets.js';

function packetsOf(batch: TunBatch): Buffer[] {
  return Array.from({ length: batch.count }, (_, i) => Buffer.from(tunPacket(batch, i)));
}

describe('MemoryTun', () => {
  it('delivers injected packets in the shared batch layout, in order', () => {
    const tun = new MemoryTun({ mtu: 1400 });
    const sent = [ipv4Packet('198.18.0.2', '198.18.0.1', 100), ipv6Packet('2001:db8::2', '2001:db8::1', 7)];
    const seen: { count: number; stride: number; packets: Buffer[] }[] = [];
    tun.onBatch((batch) => seen.push({ count: batch.count, stride: batch.stride, packets: packetsOf(batch) }));

    expect(tun.inject(sent)).toBe(1);

    expect(seen).toHaveLength(1);
    expect(seen[0]!.count).toBe(2);
    expect(seen[0]!.stride).toBe(tunStride(1400));
    expect(seen[0]!.stride).toBeGreaterThanOrEqual(1400);
    expect(seen[0]!.packets).toEqual(sent);
  });

  it('splits large injections into batches of at most batchSize and reuses one batch object and buffer', () => {
    const tun = new MemoryTun({ mtu: 1280, batchSize: 4 });
    const sent = Array.from({ length: 10 }, (_, i) => ipv4Packet('198.18.0.2', '198.18.0.1', 20 + i, i));
    const batches: TunBatch[] = [];
    const buffers = new Set<ArrayBufferLike>();
    const received: Buffer[] = [];
    tun.onBatch((batch) => {
      batches.push(batch);
      buffers.add(batch.data.buffer);
      received.push(...packetsOf(batch));
    });

    expect(tun.inject(sent)).toBe(3);

    expect(batches).toHaveLength(3);
    expect(new Set(batches).size).toBe(1);
    expect(buffers.size).toBe(1);
    expect(received).toEqual(sent);
  });

  it('poisons the batch after the handler returns, so retained views are caught', () => {
    const tun = new MemoryTun();
    let retained: Buffer | undefined;
    tun.onBatch((batch) => {
      retained = tunPacket(batch, 0);
      expect(retained[0]).toBe(0x45);
    });
    tun.inject([ipv4Packet('198.18.0.2', '198.18.0.1')]);
    expect(retained).toBeDefined();
    expect(retained!.every((b) => b === POISON_BYTE)).toBe(true);
  });

  it('holds packets injected before onBatch and delivers them after it, asynchronously', async () => {
    const tun = new MemoryTun();
    const early = [ipv4Packet('198.18.0.3', '198.18.0.1', 10), ipv4Packet('198.18.0.4', '198.18.0.1', 11)];
    expect(tun.inject(early)).toBe(0);
    early[0]!.fill(0); // inject copied: later changes by the caller do not leak in
    const received: Buffer[] = [];
    tun.onBatch((batch) => received.push(...packetsOf(batch)));
    expect(received).toHaveLength(0);
    await Promise.resolve();
    expect(received).toEqual([ipv4Packet('198.18.0.3', '198.18.0.1', 10), early[1]]);
  });

  it('a second onBatch replaces the handler', () => {
    const tun = new MemoryTun();
    const calls: string[] = [];
    tun.onBatch(() => calls.push('first'));
    tun.onBatch(() => calls.push('second'));
    tun.inject([ipv4Packet('198.18.0.2', '198.18.0.1')]);
    expect(calls).toEqual(['second']);
  });

  it('records copies of written packets, honouring offset and length', () => {
    const tun = new MemoryTun();
    const packet = ipv4Packet('198.18.0.1', '198.18.0.2', 40);
    const frame = Buffer.concat([Buffer.from([1, 2, 3]), packet, Buffer.from([9])]);
    expect(tun.write(frame, 3, packet.length)).toBe(true);
    frame.fill(0);
    expect(tun.written).toHaveLength(1);
    expect(Buffer.from(tun.written[0]!)).toEqual(packet);
    expect(() => tun.write(frame, 1, frame.length)).toThrow(RangeError);
  });

  it('injects write failures: refused packets return false, count as drops and are not recorded', () => {
    const tun = new MemoryTun();
    tun.refuseWrite = (packet) => (packet[0]! >> 4) === 6;
    const v4 = ipv4Packet('198.18.0.1', '198.18.0.2');
    const v6 = ipv6Packet('2001:db8::1', '2001:db8::2');
    expect(tun.write(v6, 0, v6.length)).toBe(false);
    expect(tun.write(v4, 0, v4.length)).toBe(true);
    expect(tun.writeDrops).toBe(1);
    expect(tun.written.map((p) => Buffer.from(p))).toEqual([v4]);
  });

  it('writeBatch writes a read batch back and reports how many were accepted', () => {
    const tun = new MemoryTun({ batchSize: 8 });
    const sent = [ipv4Packet('198.18.0.2', '198.18.0.1', 5), ipv6Packet('2001:db8::2', '2001:db8::1', 6), ipv4Packet('198.18.0.5', '198.18.0.1', 7)];
    tun.refuseWrite = (packet) => packet.length === sent[1]!.length;
    const accepted: number[] = [];
    tun.onBatch((batch) => accepted.push(tun.writeBatch(batch)));
    tun.inject(sent);
    expect(accepted).toEqual([2]);
    expect(tun.written.map((p) => Buffer.from(p))).toEqual([sent[0], sent[2]]);
  });

  it('rejects packets larger than the MTU and empty packets', () => {
    const tun = new MemoryTun({ mtu: 1280 });
    tun.onBatch(() => undefined);
    expect(() => tun.inject([Buffer.alloc(1281, 0x45)])).toThrow(RangeError);
    expect(() => tun.inject([Buffer.alloc(0)])).toThrow(RangeError);
  });

  it('a throwing handler throws out of inject and the device keeps working', () => {
    const tun = new MemoryTun();
    let calls = 0;
    tun.onBatch(() => {
      calls++;
      if (calls === 1) throw new Error('handler bug');
    });
    expect(() => tun.inject([ipv4Packet('198.18.0.2', '198.18.0.1')])).toThrow('handler bug');
    expect(tun.inject([ipv4Packet('198.18.0.2', '198.18.0.1')])).toBe(1);
    expect(calls).toBe(2);
  });

  it('close is idempotent; afterwards inject and onBatch fail with QG_ERR_CLOSED and writes are drops', async () => {
    const tun = new MemoryTun({ batchSize: 1 });
    const calls: number[] = [];
    tun.onBatch((batch) => {
      calls.push(batch.count);
      void tun.close(); // closing inside the handler stops the remaining batches
    });
    expect(tun.inject([ipv4Packet('198.18.0.2', '198.18.0.1'), ipv4Packet('198.18.0.3', '198.18.0.1')])).toBe(1);
    expect(calls).toEqual([1]);
    await tun.close();
    expect(tun.isClosed).toBe(true);

    let thrown: unknown;
    try {
      tun.inject([ipv4Packet('198.18.0.2', '198.18.0.1')]);
    } catch (err) {
      thrown = err;
    }
    expect(isQuicgateError(thrown, 'QG_ERR_CLOSED')).toBe(true);
    expect(() => tun.onBatch(() => undefined)).toThrow(expect.objectContaining({ code: 'QG_ERR_CLOSED' }));
    const packet = ipv4Packet('198.18.0.1', '198.18.0.2');
    expect(tun.write(packet, 0, packet.length)).toBe(false);
    expect(tun.written).toHaveLength(0);
  });
});
