import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { RateSampler, type SampledSession } from '../../src/gateway/rate-sampler.js';
import { newCounters } from '../../src/gateway/session.js';

function session(id: string, startedMono: number): SampledSession & { counters: ReturnType<typeof newCounters> } {
  return { id, startedMono, counters: newCounters() };
}

describe('RateSampler', () => {
  it('reports bytes per second over the last window of samples, each way', () => {
    const clock = new FakeClock();
    const live = [session('s1', 0)];
    const sampler = new RateSampler({ clock, sessions: () => live, windowSamples: 2 });
    sampler.start();
    expect(sampler.rateOf('s1')).toEqual({ in: 0, out: 0 });
    live[0]!.counters.bytesIn = 1000;
    live[0]!.counters.bytesOut = 4000;
    clock.advance(1000);
    expect(sampler.rateOf('s1')).toEqual({ in: 1000, out: 4000 });
    live[0]!.counters.bytesIn = 4000;
    clock.advance(1000);
    expect(sampler.rateOf('s1')).toEqual({ in: 2000, out: 2000 }); // 4000 and 4000 bytes over 2 s
    clock.advance(1000);
    expect(sampler.rateOf('s1')).toEqual({ in: 1500, out: 0 }); // window = last 2 s: 3000 and 0 bytes
    clock.advance(2000);
    expect(sampler.rateOf('s1')).toEqual({ in: 0, out: 0 });
    sampler.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('forgets sessions that are no longer live', () => {
    const clock = new FakeClock();
    let live = [session('a', 0), session('b', 0)];
    const sampler = new RateSampler({ clock, sessions: () => live });
    sampler.sample();
    expect(sampler.trackedSessions).toBe(2);
    live = [live[1]!];
    sampler.sample();
    expect(sampler.trackedSessions).toBe(1);
    expect(sampler.rateOf('a')).toEqual({ in: 0, out: 0 });
  });
});
