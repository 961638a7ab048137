/**
 * TicketStore (src/transport/tickets.ts): an admitted request waits for its session for at most the TTL, at
 * most `max` wait at once, and every ticket dropped unused is reported (its guard slot is released).
 */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { TicketStore } from '../../src/transport/tickets.js';

describe('TicketStore', () => {
  it('hands a ticket out once, within its TTL', () => {
    const clock = new FakeClock();
    const expired: string[] = [];
    const store = new TicketStore<string>({ ttlMs: 1000, max: 10, clock, expire: (v) => expired.push(v) });
    const a = store.issue('a');
    const b = store.issue('b');
    expect(store.take(a)).toBe('a');
    expect(store.take(a)).toBeUndefined();
    clock.advance(1000);
    expect(store.take(b)).toBeUndefined();
    expect(expired).toEqual(['b']);
    expect(store.size).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('holds at most `max`: the oldest goes first', () => {
    const clock = new FakeClock();
    const expired: number[] = [];
    const store = new TicketStore<number>({ ttlMs: 60_000, max: 3, clock, expire: (v) => expired.push(v) });
    const ids = Array.from({ length: 5 }, (_, i) => store.issue(i));
    expect(store.size).toBe(3);
    expect(expired).toEqual([0, 1]);
    expect(ids.map((id) => store.take(id))).toEqual([undefined, undefined, 2, 3, 4]);
    store.issue(9);
    store.clear();
    expect(expired).toEqual([0, 1, 9]);
  });
});
