import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { TokenBucket } from '../../src/gateway/bucket.js';
import { newDropCounters } from '../../src/gateway/drops.js';
import { queueBoundBytes, shapeOrDrop, ShapingQueue } from '../../src/gateway/shaper.js';

const MBIT = 125_000;

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
  it("bounds its own waiting bytes and packets for the bucket that pays (2 x (rate x delay + burst), 256 KiB .. 16 MiB), sized again when a reload changes the bucket's rate", () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(1_000_000, 10_000, clock);
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink, 50);
    expect([q.hasRoom(262_144, bucket), q.hasRoom(262_145, bucket), q.boundBytes]).toEqual([true, false, 262_144]);
    expect(queueBoundBytes(1_000_000, 10_000, 50)).toBe(262_144); // 2 x 60 kB is below the floor
    // Raised live to 320 Mbit/s (40 MB/s, default burst 2 MB): 2 x (2 MB + 2 MB).
    bucket.setRate(40_000_000);
    expect([q.hasRoom(8_000_000, bucket), q.hasRoom(8_000_001, bucket), q.boundBytes]).toEqual([true, false, 8_000_000]);
    q.count = 125_000; // as the scheduler counts the packets it holds: one per 64 bytes of the bound at most
    expect(q.hasRoom(1, bucket)).toBe(false);
    q.count = 0;
    bucket.setRate(1000 * MBIT); // 125 MB/s: 25 MB, capped
    expect(q.hasRoom(16 * 1024 * 1024, bucket)).toBe(true);
    expect(q.hasRoom(16 * 1024 * 1024 + 1, bucket)).toBe(false);
  });

  it('close refuses more and sends nothing', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(1_000_000, 10_000, clock);
    const drops = newDropCounters();
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink, 50);
    bucket.tryConsume(10_000);
    shapeOrDrop(bucket, q, Buffer.alloc(40, 1), 0, 40, 0, 50, drops);
    shapeOrDrop(bucket, q, Buffer.alloc(40, 2), 0, 40, 0, 50, drops);
    expect([q.pending, q.queuedBytes, q.hasRoom(40, bucket)]).toEqual([2, 80, true]);
    q.close();
    expect([q.pending, q.queuedBytes, q.closed, q.hasRoom(1, bucket)]).toEqual([0, 0, true, false]);
    expect(bucket.scheduler!.queuedBytes).toBe(0);
    clock.advance(100);
    expect(rec.sent).toEqual([]);
  });
});

describe('shapeOrDrop', () => {
  it('drops queue_full when the queue is at its bound, else queues the packet uncharged with the user scheduler', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(1_000_000, 10_000, clock);
    const drops = newDropCounters();
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink, 50);
    expect(bucket.tryConsume(10_000)).toBe(true);
    shapeOrDrop(bucket, q, Buffer.alloc(1500), 0, 1500, 0, 50, drops);
    shapeOrDrop(bucket, q, Buffer.alloc(1500), 0, 1500, 0, 50, drops);
    // As if the queue held packets up to its bound (only super-packets admitted outside the scheduler's budget
    // can get it there): the next packet is dropped before the scheduler sees it.
    const held = q.boundBytes - 3000;
    q.bytesQueued += held;
    shapeOrDrop(bucket, q, Buffer.alloc(1500), 0, 1500, 0, 50, drops);
    q.bytesQueued -= held;
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
