import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { isQuicgateError } from '../../src/errors.js';
import { defaultBurst, MIN_DEFAULT_BURST, TokenBucket } from '../../src/gateway/bucket.js';
import { measureAllocationQuietest } from '../support/alloc.js';

const MB = 1_000_000;

describe('defaultBurst', () => {
  it('is 16 KiB for slow rates and 50 ms worth of bytes for fast ones', () => {
    expect(MIN_DEFAULT_BURST).toBe(16_384);
    expect(defaultBurst(1000)).toBe(16_384);
    expect(defaultBurst(125_000)).toBe(16_384); // 1 Mbit/s: 131 ms of traffic, ten 1500-byte packets
    expect(defaultBurst(327_680)).toBe(16_384); // 2.62 Mbit/s: where 50 ms takes over
    expect(defaultBurst(400_000)).toBe(20_000);
    expect(defaultBurst(MB)).toBe(50_000);
    expect(defaultBurst(100 * MB)).toBe(5 * MB);
  });
});

describe('TokenBucket', () => {
  it('charges exactly the bytes of a packet', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, 10_000, clock);
    expect(bucket.available()).toBe(10_000);
    expect(bucket.tryConsume(60)).toBe(true);
    expect(bucket.available()).toBe(9_940);
  });

  it('lets exactly the burst through at once, then refuses', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, 15_000, clock);
    let sent = 0;
    while (bucket.tryConsume(1500)) sent += 1500;
    expect(sent).toBe(15_000);
    expect(bucket.tryConsume(1)).toBe(false);
  });

  it('holds the rate over a long interval: 10 MB at 1 MB/s takes 10 s minus the burst, within one packet', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, null, clock);
    const packet = 1500;
    const total = 10 * MB;
    let sent = 0;
    while (sent < total) {
      const wait = bucket.delayFor(packet);
      if (wait > 0) clock.advance(wait);
      expect(bucket.tryConsume(packet)).toBe(true);
      sent += packet;
    }
    const expectedMs = ((sent - bucket.burst) / MB) * 1000;
    const onePacketMs = (packet / MB) * 1000;
    expect(Math.abs(clock.now() - expectedMs)).toBeLessThanOrEqual(onePacketMs);
    // Over a further 10 s with a fresh start of the window, the bytes sent equal rate × time within one packet.
    const start = clock.now();
    let more = 0;
    while (clock.now() - start < 10_000) {
      if (bucket.tryConsume(packet)) more += packet;
      else clock.advance(0.25);
    }
    expect(Math.abs(more - 10 * MB)).toBeLessThanOrEqual(packet);
  });

  it('delayFor says exactly when the bytes may go', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, 65_536, clock);
    expect(bucket.delayFor(1000)).toBe(0);
    expect(bucket.tryConsume(65_536)).toBe(true);
    const wait = bucket.delayFor(1000);
    expect(wait).toBeCloseTo(1, 9); // 1000 bytes at 1000 bytes/ms
    clock.advance(wait * 0.99);
    expect(bucket.tryConsume(1000)).toBe(false);
    clock.advance(wait * 0.01);
    expect(bucket.delayFor(1000)).toBeCloseTo(0, 9);
    expect(bucket.tryConsume(1000)).toBe(true);
  });

  it('consume goes into debt and the debt delays later packets exactly', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, 65_536, clock);
    bucket.consume(65_536 + 5_000);
    expect(bucket.available()).toBe(-5_000);
    expect(bucket.delayFor(1_000)).toBeCloseTo(6, 9);
    clock.advance(6);
    expect(bucket.tryConsume(1_000)).toBe(true);
  });

  it('lets a packet larger than the burst go once the bucket is full, paying for it afterwards', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, 10_000, clock);
    expect(bucket.tryConsume(5_000)).toBe(true);
    expect(bucket.tryConsume(20_000)).toBe(false);
    expect(bucket.delayFor(20_000)).toBeCloseTo(5, 9); // until full, not until 20 000 (never)
    clock.advance(5);
    expect(bucket.tryConsume(20_000)).toBe(true);
    expect(bucket.available()).toBe(-10_000);
    expect(bucket.delayFor(1)).toBeCloseTo(10.001, 9);
  });

  it('setRate applies at once without resetting the balance', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, 100_000, clock);
    expect(bucket.tryConsume(100_000)).toBe(true);
    clock.advance(10); // +10 000 at the old rate
    bucket.setRate(2 * MB, 100_000);
    expect(bucket.available()).toBe(10_000);
    clock.advance(10); // +20 000 at the new rate
    expect(bucket.available()).toBe(30_000);
    // Long-run rate follows the new limit.
    const start = clock.now();
    let sent = 0;
    while (clock.now() - start < 1000) {
      if (bucket.tryConsume(1000)) sent += 1000;
      else clock.advance(0.1);
    }
    expect(Math.abs(sent - (2 * MB + 30_000))).toBeLessThanOrEqual(1000);
  });

  it('setRate caps the balance at a smaller burst and keeps debt', () => {
    const clock = new FakeClock();
    const full = new TokenBucket(MB, 100_000, clock);
    full.setRate(MB, 20_000);
    expect(full.available()).toBe(20_000);
    expect(full.burst).toBe(20_000);
    const indebted = new TokenBucket(MB, 100_000, clock);
    indebted.consume(150_000);
    indebted.setRate(4 * MB);
    expect(indebted.available()).toBe(-50_000);
    expect(indebted.burst).toBe(defaultBurst(4 * MB));
    expect(indebted.rate).toBe(4 * MB);
  });

  it('ignores a timestamp older than the last one', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(MB, 10_000, clock);
    bucket.consume(10_000, 100);
    expect(bucket.available(50)).toBe(0);
    expect(bucket.available(101)).toBe(1_000);
  });

  it('refuses a non-positive rate or burst with QG_ERR_CONFIG_INVALID', () => {
    for (const make of [() => new TokenBucket(0), () => new TokenBucket(Number.NaN), () => new TokenBucket(1000, -1)]) {
      let caught: unknown;
      try {
        make();
      } catch (err) {
        caught = err;
      }
      expect(isQuicgateError(caught, 'QG_ERR_CONFIG_INVALID')).toBe(true);
    }
  });

  it('allocates nothing per check (4e6 calls of each operation)', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(10 * MB, null, clock);
    let start = 0;
    const checks = (n: number): number => {
      let passed = 0;
      for (let i = 0; i < n; i++) {
        const now = start + i * 0.0137; // fractional timestamps, the real case
        if (bucket.tryConsume(60, now)) passed++;
        passed += bucket.delayFor(1500, now);
        bucket.consume(7, now);
      }
      start += n * 0.0137;
      return passed;
    };
    const measured = measureAllocationQuietest(checks, 4_000_000);
    // Allocating even 16 bytes per call would be 192 MB here: many scavenges. The runner's own background work
    // in this worker can add a collection, never that. (The heap delta alone is not a signal: in the full suite
    // on Node 22 it moved by ~10 MB without any collection.)
    expect(measured.collections).toBeLessThanOrEqual(1);

    // The same measurement does see a loop that allocates one small array per call.
    let sink: unknown = null;
    const allocating = (n: number): number => {
      for (let i = 0; i < n; i++) sink = [i];
      return sink === null ? 0 : 1;
    };
    expect(measureAllocationQuietest(allocating, 1_000_000).collections).toBeGreaterThan(1);
  });
});
