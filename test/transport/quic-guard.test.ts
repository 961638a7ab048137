import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { QuicGuard } from '../../src/transport/quic-guard.js';

function guard(options: { maxPending?: number; maxPendingPerSource?: number; blocked?: string[] } = {}) {
  const clock = new FakeClock();
  const expired: number[] = [];
  const g = new QuicGuard({
    handshakeTimeoutMs: 1000,
    maxPending: options.maxPending ?? 10,
    maxPendingPerSource: options.maxPendingPerSource ?? 3,
    sourceBlocked: (a) => (options.blocked ?? []).includes(a),
    expire: (slot) => expired.push(slot),
    logger: silentLogger(),
    clock,
  });
  return { g, clock, expired };
}

describe('QuicGuard', () => {
  it('bounds pending connections per source (IPv6 by /64) and in total, and counts why it refused', () => {
    const { g } = guard({ maxPending: 5, maxPendingPerSource: 2 });
    expect([g.admit('192.0.2.7', 0), g.admit('192.0.2.7', 1), g.admit('192.0.2.7', 2)]).toEqual([true, true, false]);
    expect([g.admit('2001:db8::1', 3), g.admit('2001:db8::2', 4), g.admit('2001:db8::3', 5)]).toEqual([true, true, false]);
    expect(g.admit('192.0.2.8', 6)).toBe(true);
    expect(g.admit('192.0.2.9', 7)).toBe(false);
    const stats = g.stats(0);
    expect(stats.pending).toBe(5);
    expect(stats.closed.limit_source).toBe(2);
    expect(stats.closed.limit_total).toBe(1);
  });

  it('refuses a blocked source before anything else', () => {
    const { g } = guard({ blocked: ['198.51.100.1'] });
    expect(g.admit('198.51.100.1', 0)).toBe(false);
    expect(g.stats(0).closed.source_blocked).toBe(1);
    expect(g.stats(0).pending).toBe(0);
  });

  it('expires a connection without an admitted session at the deadline: handshake_timeout before TLS, connect_timeout after', () => {
    const { g, clock, expired } = guard();
    g.admit('192.0.2.7', 0);
    g.admit('192.0.2.7', 1);
    g.handshake(1);
    g.admit('192.0.2.7', 2);
    clock.advance(500);
    g.admitted(2);
    clock.advance(600);
    expect(expired.sort()).toEqual([0, 1]);
    const stats = g.stats(1);
    expect(stats.closed.handshake_timeout).toBe(1);
    expect(stats.closed.connect_timeout).toBe(1);
    expect(stats).toMatchObject({ pending: 0, open: 1 });
    // The slots are free again for the source.
    expect(g.admit('192.0.2.7', 0)).toBe(true);
  });

  it('counts refusals and native handshake timeouts once, and forgets what the addon closed', () => {
    const { g, clock, expired } = guard();
    g.admit('192.0.2.7', 0);
    g.admit('192.0.2.7', 1);
    g.admit('192.0.2.7', 2);
    g.refused(0);
    g.refused(0);
    g.gone(1, true);
    g.gone(2, false);
    clock.advance(2000);
    expect(expired).toEqual([]);
    const stats = g.stats(0);
    expect(stats.closed.refused).toBe(1);
    expect(stats.closed.handshake_timeout).toBe(1);
    expect(stats.pending).toBe(0);
  });
});
