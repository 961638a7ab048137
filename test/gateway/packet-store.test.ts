import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { PacketStore } from '../../src/gateway/packet-store.js';
import { ShapingQueue } from '../../src/gateway/shaper.js';

const owner = new ShapingQueue(new FakeClock(), { send() {}, flush() {} }, 50);

function bytesOf(store: PacketStore<ShapingQueue>, slot: number): string {
  const at = store.offsets[slot]!;
  return store.ring.toString('hex', at, at + store.lengths[slot]!);
}

describe('PacketStore', () => {
  it('keeps packets byte-exact with their arrival times and owners', () => {
    const store = new PacketStore<ShapingQueue>(1024, 16);
    const a = store.put(Buffer.from('aaaa', 'hex'), 0, 2, 10, owner);
    const b = store.put(Buffer.from('00bbbb00', 'hex'), 1, 2, 12.5, owner);
    expect([bytesOf(store, a), bytesOf(store, b), store.arrivedAt[b], store.owners[a] === owner]).toEqual(['aaaa', 'bbbb', 12.5, true]);
    store.free(a);
    expect([store.span, store.owners[a]]).toEqual([1, null]);
  });

  it('gives bytes back only once every older packet is freed, wrapping around the ring', () => {
    const store = new PacketStore<ShapingQueue>(100, 8);
    const p = Buffer.alloc(40, 1);
    const first = store.put(p, 0, 40, 0, owner);
    const second = store.put(p, 0, 40, 0, owner);
    expect(store.put(p, 0, 40, 0, owner)).toBe(-1); // 80 used, 20 left at the end
    store.free(second); // out of order: its bytes stay until the first is freed
    expect([store.span, store.put(p, 0, 40, 0, owner)]).toEqual([2, -1]);
    store.free(first);
    expect(store.span).toBe(0);
    const c = store.put(Buffer.alloc(60, 3), 0, 60, 0, owner);
    const d = store.put(Buffer.alloc(30, 4), 0, 30, 0, owner);
    expect(store.offsets[d]).toBe(60);
    store.free(c); // 60 free at the start
    const e = store.put(Buffer.alloc(50, 5), 0, 50, 0, owner); // wraps to 0 (the end's 10 are too short)
    expect(store.offsets[e]).toBe(0);
    expect(store.put(p, 0, 11, 0, owner)).toBe(-1); // 50..60 is all that is left before the oldest
    expect(store.offsets[store.put(p, 0, 10, 0, owner)]).toBe(50); // ends exactly at the oldest: full
    expect(store.put(p, 0, 1, 0, owner)).toBe(-1);
    expect(bytesOf(store, e).slice(0, 2)).toBe('05');
  });

  it('bounds packet slots', () => {
    const store = new PacketStore<ShapingQueue>(1000, 4);
    for (let i = 0; i < 4; i++) expect(store.put(Buffer.alloc(10), 0, 10, 0, owner)).toBe(i);
    expect(store.put(Buffer.alloc(10), 0, 10, 0, owner)).toBe(-1);
    store.free(0);
    expect(store.put(Buffer.alloc(10), 0, 10, 0, owner)).toBe(0);
  });
});
