import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { UsageLedger } from '../../src/gateway/usage-ledger.js';

const c = (bytesIn: number, bytesOut: number) => ({ bytesIn, bytesOut, packetsIn: 1, packetsOut: 2 });

describe('UsageLedger', () => {
  it('sums ended sessions per user and evicts a user retainMs after their last session ended', () => {
    const clock = new FakeClock();
    const ledger = new UsageLedger({ clock, retainMs: 10_000 });
    ledger.addEnded('alice', c(100, 200));
    clock.advance(6000);
    ledger.addEnded('alice', c(10, 20));
    ledger.addEnded('bob', c(1, 2));
    expect(ledger.get('alice')).toEqual({ bytesIn: 110, bytesOut: 220, packetsIn: 2, packetsOut: 4, sessions: 2 });
    clock.advance(9999);
    expect(ledger.evict(() => false)).toEqual([]);
    clock.advance(1);
    expect(ledger.evict(() => false).sort()).toEqual(['alice', 'bob']);
    expect(ledger.size).toBe(0);
  });

  it('never evicts a user who still has live sessions', () => {
    const clock = new FakeClock();
    const ledger = new UsageLedger({ clock, retainMs: 1000 });
    ledger.addEnded('alice', c(5, 5));
    clock.advance(60_000);
    expect(ledger.evict((u) => u === 'alice')).toEqual([]);
    expect(ledger.get('alice')?.bytesIn).toBe(5);
  });
});
