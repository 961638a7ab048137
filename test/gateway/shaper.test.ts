import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { TokenBucket } from '../../src/gateway/bucket.js';
import { newDropCounters } from '../../src/gateway/drops.js';
import { shapeOrDrop, ShapingQueue } from '../../src/gateway/shaper.js';

function recorder() {
  const sent: string[] = [];
  let flushes = 0;
  return {
    sent,
    get flushes() {
      return flushes;
    },
    sink: {
      send(data: Buffer, offset: number, length: number) {
        sent.push(data.toString('hex', offset, offset + length));
      },
      flush() {
        flushes++;
      },
    },
  };
}

function drain(q: ShapingQueue): void {
  while (q.pending > 0) {
    q.sendHead();
    q.popHead();
  }
}

describe('ShapingQueue (the ring)', () => {
  it('keeps packets byte-exact in arrival order with their arrival times', () => {
    const rec = recorder();
    const q = new ShapingQueue(new FakeClock(), rec.sink, 1024, 16);
    q.push(Buffer.from('aaaa', 'hex'), 0, 2, 10);
    q.push(Buffer.from('00bbbb00', 'hex'), 1, 2, 12.5);
    q.push(Buffer.from('cc', 'hex'), 0, 1, 13);
    expect([q.pending, q.queuedBytes, q.headLength, q.headArrivedAt]).toEqual([3, 5, 2, 10]);
    q.sendHead();
    expect(q.popHead()).toBe(2);
    expect([q.headLength, q.headArrivedAt]).toEqual([2, 12.5]);
    drain(q);
    expect(rec.sent).toEqual(['aaaa', 'bbbb', 'cc']);
    expect([q.pending, q.queuedBytes, q.headLength]).toEqual([0, 0, 0]);
  });

  it('gives up its newest packet from the tail, and the freed bytes are used again', () => {
    const rec = recorder();
    const q = new ShapingQueue(new FakeClock(), rec.sink, 100, 8);
    q.push(Buffer.alloc(40, 1), 0, 40, 0);
    q.push(Buffer.alloc(40, 2), 0, 40, 0);
    expect(q.hasRoom(40)).toBe(false);
    expect(q.popTail()).toBe(40);
    expect([q.pending, q.queuedBytes]).toEqual([1, 40]);
    expect(q.hasRoom(60)).toBe(true);
    q.push(Buffer.alloc(60, 3), 0, 60, 1);
    drain(q);
    expect(rec.sent.map((s) => [s.slice(0, 2), s.length / 2])).toEqual([
      ['01', 40],
      ['03', 60],
    ]);
    expect(q.popTail()).toBe(0);
    expect(q.popHead()).toBe(0);
  });

  it('bounds bytes and packets, wrapping around the ring, also after a tail that had wrapped is given up', () => {
    const rec = recorder();
    const q = new ShapingQueue(new FakeClock(), rec.sink, 100, 4);
    const p = Buffer.alloc(40, 1);
    expect(q.hasRoom(40)).toBe(true);
    q.push(p, 0, 40, 0);
    q.push(p, 0, 40, 0);
    expect(q.hasRoom(40)).toBe(false); // 80 used, 20 left at the end
    expect(q.hasRoom(20)).toBe(true);
    expect(q.hasRoom(101)).toBe(false);
    q.sendHead();
    q.popHead(); // 40 bytes free at the start
    expect(q.hasRoom(40)).toBe(true);
    q.push(Buffer.alloc(40, 2), 0, 40, 0); // wraps to 0
    expect(q.popTail()).toBe(40); // the wrapped one again: the end's 20 bytes count as free once more
    expect(q.hasRoom(20)).toBe(true);
    q.push(Buffer.alloc(30, 3), 0, 30, 0); // wraps to 0 (the end's 20 are too short)
    q.push(Buffer.alloc(10, 4), 0, 10, 0); // 30..40: the wrapped part now ends exactly at the oldest packet
    expect(q.hasRoom(1)).toBe(false); // full, although one packet slot is free
    drain(q);
    expect(rec.sent.map((s) => s.slice(0, 2))).toEqual(['01', '01', '03', '04']);
    for (let i = 0; i < 4; i++) q.push(Buffer.alloc(10, i), 0, 10, 0);
    expect(q.hasRoom(1)).toBe(false); // packet slots full
  });

  it('close drops everything and refuses more', () => {
    const rec = recorder();
    const q = new ShapingQueue(new FakeClock(), rec.sink, 100, 4);
    q.push(Buffer.alloc(10), 0, 10, 0);
    q.close();
    expect([q.pending, q.queuedBytes, q.closed]).toEqual([0, 0, true]);
    expect(q.hasRoom(1)).toBe(false);
    q.sendHead();
    expect(rec.sent).toEqual([]);
  });
});

describe('shapeOrDrop', () => {
  it('drops queue_full when the ring has no room, else queues the packet uncharged with the user scheduler', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(1_000_000, 10_000, clock);
    const drops = newDropCounters();
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink, 3000, 8);
    expect(bucket.tryConsume(10_000)).toBe(true);
    shapeOrDrop(bucket, q, Buffer.alloc(1500), 0, 1500, 0, 50, drops);
    shapeOrDrop(bucket, q, Buffer.alloc(1500), 0, 1500, 0, 50, drops);
    shapeOrDrop(bucket, q, Buffer.alloc(1500), 0, 1500, 0, 50, drops);
    expect(drops).toMatchObject({ queue_full: 1, rate_limit: 0 });
    expect(bucket.available()).toBe(0); // waiting packets are not charged yet
    expect(bucket.scheduler?.queuedBytes).toBe(3000);
    expect(q.scheduler).toBe(bucket.scheduler);
    clock.advance(3); // 3000 bytes at 1000 bytes/ms
    expect(rec.sent.length).toBe(2);
    expect(bucket.available()).toBe(0);
    expect(q.scheduler).toBeNull();
  });
});
