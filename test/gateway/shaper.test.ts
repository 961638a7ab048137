import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { ShapingQueue } from '../../src/gateway/shaper.js';

function recorder() {
  const sent: { at: number; bytes: string }[] = [];
  let flushes = 0;
  return {
    sent,
    get flushes() {
      return flushes;
    },
    sink(clock: FakeClock) {
      return {
        send(data: Buffer, offset: number, length: number) {
          sent.push({ at: clock.now(), bytes: data.toString('hex', offset, offset + length) });
        },
        flush() {
          flushes++;
        },
      };
    },
  };
}

describe('ShapingQueue', () => {
  it('releases packets at their release time, in order, byte-exact', () => {
    const clock = new FakeClock();
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink(clock), 1024, 16);
    q.enqueue(Buffer.from('aaaa', 'hex'), 0, 2, 10);
    q.enqueue(Buffer.from('00bbbb00', 'hex'), 1, 2, 20);
    q.enqueue(Buffer.from('cc', 'hex'), 0, 1, 15); // earlier stamp than the tail: keeps order, goes at 20
    expect(q.pending).toBe(3);
    clock.advance(9);
    expect(rec.sent).toEqual([]);
    clock.advance(1);
    expect(rec.sent).toEqual([{ at: 10, bytes: 'aaaa' }]);
    clock.advance(10);
    expect(rec.sent.map((s) => s.bytes)).toEqual(['aaaa', 'bbbb', 'cc']);
    expect(rec.sent[2]!.at).toBe(20);
    expect(q.pending).toBe(0);
    expect(rec.flushes).toBe(2);
    expect(clock.pendingTimers).toBe(0);
  });

  it('bounds bytes and packets, wrapping around the ring', () => {
    const clock = new FakeClock();
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink(clock), 100, 4);
    const p = Buffer.alloc(40, 1);
    expect(q.hasRoom(40)).toBe(true);
    q.enqueue(p, 0, 40, 1);
    q.enqueue(p, 0, 40, 2);
    expect(q.hasRoom(40)).toBe(false); // 80 used, 20 left at the end
    expect(q.hasRoom(20)).toBe(true);
    expect(q.hasRoom(101)).toBe(false);
    clock.advance(1); // first one leaves: 40 bytes free at the start
    expect(q.hasRoom(40)).toBe(true);
    q.enqueue(Buffer.alloc(40, 2), 0, 40, 3);
    clock.advance(5);
    expect(rec.sent.map((s) => s.bytes.slice(0, 2))).toEqual(['01', '01', '02']);
    for (let i = 0; i < 4; i++) q.enqueue(Buffer.alloc(10, i), 0, 10, 100);
    expect(q.hasRoom(1)).toBe(false); // packet slots full
  });

  it('close drops everything and cancels its timer', () => {
    const clock = new FakeClock();
    const rec = recorder();
    const q = new ShapingQueue(clock, rec.sink(clock), 100, 4);
    q.enqueue(Buffer.alloc(10), 0, 10, 50);
    q.close();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(100);
    expect(rec.sent).toEqual([]);
    expect(q.hasRoom(1)).toBe(false);
  });
});

describe('ShapingQueue and the bucket it charges', () => {
  it('counts itself as an active queue of the bucket while it holds packets, and stops at drain or close', async () => {
    const { TokenBucket } = await import('../../src/gateway/bucket.js');
    const clock = new FakeClock();
    const bucket = new TokenBucket(1_000_000, null, clock);
    const rec = recorder();
    const a = new ShapingQueue(clock, rec.sink(clock), 1024, 16);
    const b = new ShapingQueue(clock, rec.sink(clock), 1024, 16);
    a.enqueue(Buffer.alloc(10), 0, 10, 5, bucket);
    a.enqueue(Buffer.alloc(10), 0, 10, 6, bucket);
    expect(bucket.activeQueues).toBe(1);
    expect(a.queuedBytes).toBe(20);
    b.enqueue(Buffer.alloc(10), 0, 10, 50, bucket);
    expect(bucket.activeQueues).toBe(2);
    clock.advance(10);
    expect(bucket.activeQueues).toBe(1);
    expect(a.queuedBytes).toBe(0);
    b.close();
    expect(bucket.activeQueues).toBe(0);
  });
});
