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

describe('ShapingQueue (one session and direction)', () => {
  it('bounds its own waiting bytes and packets, and close refuses more and sends nothing', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(1_000_000, 10_000, clock);
    const drops = newDropCounters();
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink, 100, 4);
    bucket.tryConsume(10_000);
    expect(q.hasRoom(100)).toBe(true);
    expect(q.hasRoom(101)).toBe(false);
    shapeOrDrop(bucket, q, Buffer.alloc(40, 1), 0, 40, 0, 50, drops);
    shapeOrDrop(bucket, q, Buffer.alloc(40, 2), 0, 40, 0, 50, drops);
    expect([q.pending, q.queuedBytes, q.hasRoom(40), q.hasRoom(20)]).toEqual([2, 80, false, true]);
    q.close();
    expect([q.pending, q.queuedBytes, q.closed, q.hasRoom(1)]).toEqual([0, 0, true, false]);
    expect(bucket.scheduler!.queuedBytes).toBe(0);
    clock.advance(100);
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
    expect([q.pending, bucket.scheduler!.armed, bucket.holding]).toEqual([0, false, 0]);
  });
});
