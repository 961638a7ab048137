import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { TokenBucket } from '../../src/gateway/bucket.js';
import { newDropCounters } from '../../src/gateway/drops.js';
import { TunnelPeer } from '../../src/gateway/peer.js';
import type { Session } from '../../src/gateway/session.js';
import { shapeOrDrop, ShapingQueue } from '../../src/gateway/shaper.js';

const MBIT = 125_000;

function session(bucket: TokenBucket | null): Session {
  return { id: 's1', user: 'alice', ipv4: '198.18.0.2', ipv6: null, bucket } as unknown as Session;
}

const nullSink = { send() {}, flush() {} };

describe('TunnelPeer and its shaping queues', () => {
  it('close() drops what waits in both queues, takes them out of the user scheduler and leaves no timer', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MBIT, null, clock);
    const s = session(bucket);
    const peer = new TunnelPeer(s);
    const other = new TunnelPeer({ ...s, id: 's2', ipv4: '198.18.0.3' } as Session); // the same user's second session
    const drops = newDropCounters();
    bucket.tryConsume(bucket.burst);
    for (const p of [peer, other]) {
      const [out, inn] = [new ShapingQueue(clock, nullSink, 50), new ShapingQueue(clock, nullSink, 50)];
      p.outShaper = out;
      p.inShaper = inn;
      shapeOrDrop(bucket, out, Buffer.alloc(1000), 0, 1000, 0, 50, drops);
      shapeOrDrop(bucket, inn, Buffer.alloc(500), 0, 500, 0, 50, drops);
    }
    const scheduler = bucket.scheduler!;
    expect([peer.outboundPending, peer.inboundPending, scheduler.activeQueues, scheduler.queuedBytes]).toEqual([1, 1, 4, 3000]);
    expect(clock.pendingTimers).toBe(1);
    const [out, inn] = [peer.outShaper!, peer.inShaper!];
    peer.close();
    expect([peer.outShaper, peer.inShaper, peer.outboundPending, peer.inboundPending]).toEqual([null, null, 0, 0]);
    expect([out.closed, inn.closed, out.scheduler, inn.scheduler]).toEqual([true, true, null, null]);
    expect([scheduler.activeQueues, scheduler.queuedBytes]).toEqual([2, 1500]);
    expect(clock.pendingTimers).toBe(1); // the other session's packets still wait
    other.close();
    expect([scheduler.activeQueues, scheduler.queuedBytes, scheduler.armed, scheduler.linked]).toEqual([0, 0, false, false]);
    expect(clock.pendingTimers).toBe(1); // only the storage's idle trim
    clock.advance(10_000);
    expect([clock.pendingTimers, scheduler.storageBytes]).toEqual([0, 0]);
    expect(drops.rate_limit + drops.queue_full).toBe(0);
  });
});
