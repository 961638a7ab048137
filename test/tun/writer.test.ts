import { describe, expect, it } from 'vitest';
import { MemoryTun } from '../../src/tun/memory.js';
import { TunWriter, type TunWriteAccount } from '../../src/tun/writer.js';
import { measureAllocationQuietest } from '../support/alloc.js';

function tally(): { a: TunWriteAccount; ok: number[]; no: number[] } {
  const ok: number[] = [];
  const no: number[] = [];
  return { a: { written: (n) => ok.push(n), refused: (n) => no.push(n), malformed: (n) => no.push(n) }, ok, no };
}

const packet = (length: number, fill: number): Buffer => Buffer.alloc(length, fill);

describe('TunWriter', () => {
  it('stages packets of a turn and writes them in one writeBatch, in order, at the deferred flush', () => {
    const tun = new MemoryTun({ mtu: 1400 });
    let deferred: (() => void) | undefined;
    const writer = new TunWriter(tun, { defer: (flush) => (deferred = flush) });
    const { a, ok } = tally();
    const source = Buffer.concat([packet(10, 1), packet(100, 2), packet(1400, 3)]);
    writer.stage(source, 0, 10, a);
    writer.stage(source, 10, 100, a);
    writer.stage(source, 110, 1400, a);
    source.fill(0); // staged packets are copies
    expect(tun.written).toHaveLength(0);
    expect(writer.pending).toBe(3);
    deferred!();
    expect(tun.writeBatches).toBe(1);
    expect(tun.written.map((p) => [p.length, p[0]])).toEqual([
      [10, 1],
      [100, 2],
      [1400, 3],
    ]);
    expect(ok).toEqual([10, 100, 1400]);
    expect(writer.pending).toBe(0);
  });

  it('defers once per turn and flushes at once when the batch is full', () => {
    const tun = new MemoryTun({ mtu: 1400 });
    let defers = 0;
    const writer = new TunWriter(tun, { batchSize: 4, defer: () => void defers++ });
    const { a, ok } = tally();
    const p = packet(60, 7);
    for (let i = 0; i < 5; i++) writer.stage(p, 0, 60, a);
    expect(tun.writeBatches).toBe(1); // the 4th filled the batch
    expect(ok).toHaveLength(4);
    expect(writer.pending).toBe(1);
    expect(defers).toBe(1); // the scheduled flush is still pending: no second one
  });

  it('tells each packet account whether the kernel took it', () => {
    const tun = new MemoryTun({ mtu: 1400 });
    tun.refuseWrite = (p) => p[0] === 0xbb;
    const writer = new TunWriter(tun, { defer: () => {} });
    const alice = tally();
    const bob = tally();
    writer.stage(packet(40, 0xaa), 0, 40, alice.a);
    writer.stage(packet(41, 0xbb), 0, 41, bob.a);
    writer.stage(packet(42, 0xaa), 0, 42, bob.a);
    writer.flush();
    expect(alice).toMatchObject({ ok: [40], no: [] });
    expect(bob).toMatchObject({ ok: [42], no: [41] });
  });

  it('writes a packet larger than a slot on its own, after what is staged', () => {
    const tun = new MemoryTun({ mtu: 1400 });
    const writer = new TunWriter(tun, { defer: () => {} });
    const { a, ok } = tally();
    writer.stage(packet(50, 1), 0, 50, a);
    writer.stage(packet(3000, 2), 0, 3000, a);
    expect(tun.written.map((p) => p.length)).toEqual([50, 3000]);
    expect(ok).toEqual([50, 3000]);
  });

  it('flushes in a microtask by default, once the staging task is done', async () => {
    const tun = new MemoryTun({ mtu: 1400 });
    const writer = new TunWriter(tun);
    const { a } = tally();
    writer.stage(packet(60, 1), 0, 60, a);
    writer.stage(packet(60, 2), 0, 60, a);
    expect(tun.written).toHaveLength(0);
    await Promise.resolve();
    expect(tun.writeBatches).toBe(1);
    expect(tun.written).toHaveLength(2);
  });

  it('allocates nothing per staged packet', () => {
    const tun = new MemoryTun({ mtu: 1400 });
    // A device that takes the batch without copying it, so only the writer's own allocations count.
    tun.writeBatch = (batch, status) => {
      status?.fill(1, 0, batch.count);
      return batch.count;
    };
    const writer = new TunWriter(tun, { batchSize: 64, defer: () => {} });
    let bytes = 0;
    const counter: TunWriteAccount = { written: (n) => void (bytes += n), refused: () => {}, malformed: () => {} };
    const p = packet(1200, 5);
    const stageMany = (n: number): void => {
      for (let i = 0; i < n; i++) writer.stage(p, 0, 1200, counter);
      writer.flush();
    };
    const measured = measureAllocationQuietest(stageMany, 1_000_000);
    // A view or closure per packet would be >= 50 MB here: many scavenges. Background runner work: at most one.
    expect(measured.collections).toBeLessThanOrEqual(1);
    expect(bytes).toBeGreaterThan(1_000_000 * 1200);
  });
});
