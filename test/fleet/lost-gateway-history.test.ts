import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { LostGatewayHistory } from '../../src/fleet/lost-gateway-history.js';
import { captureLog } from '../support/log-capture.js';

/** A store that refuses the first `failures` closes (PostgreSQL down), then records them. */
function flakyStore(failures: number) {
  const calls: Array<{ gatewayId: string; endedAtMs: number; startedByMs: number | null; ok: boolean }> = [];
  return {
    calls,
    async closeOpenSessions(gatewayId: string, _reason: 'crash', endedAtMs: number, startedByMs: number | null): Promise<number> {
      const ok = calls.length >= failures;
      calls.push({ gatewayId, endedAtMs, startedByMs, ok });
      if (!ok) throw new Error('connect ECONNREFUSED');
      return 2;
    },
  };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('LostGatewayHistory', () => {
  it('closes at once when the store takes it', async () => {
    const clock = new FakeClock();
    const store = flakyStore(0);
    const lost = new LostGatewayHistory({ history: store, clock, logger: captureLog('info').logger });
    await lost.lost('gw2');
    // Only rows started by the time the loss was found: a gateway restarted under the same id keeps its own.
    expect(store.calls).toEqual([{ gatewayId: 'gw2', endedAtMs: clock.wallNow(), startedByMs: clock.wallNow(), ok: true }]);
    expect(lost.pending()).toEqual([]);
  });

  it('retries with a doubling delay while the store refuses, always with the time the loss was found', async () => {
    const clock = new FakeClock();
    const store = flakyStore(3);
    const lost = new LostGatewayHistory({ history: store, clock, logger: captureLog('warn').logger, firstRetryMs: 1_000, maxRetryMs: 60_000 });
    const foundAt = clock.wallNow();
    await lost.lost('gw2');
    expect(store.calls).toHaveLength(1);
    expect(lost.pending()).toEqual(['gw2']);
    clock.advance(999);
    await settle();
    expect(store.calls).toHaveLength(1);
    clock.advance(1);
    await settle();
    expect(store.calls).toHaveLength(2); // after 1 s
    clock.advance(1_999);
    await settle();
    expect(store.calls).toHaveLength(2);
    clock.advance(1);
    await settle();
    expect(store.calls).toHaveLength(3); // 2 s later
    clock.advance(4_000);
    await settle();
    expect(store.calls).toHaveLength(4); // 4 s later: taken
    expect(store.calls.map((c) => c.endedAtMs)).toEqual([foundAt, foundAt, foundAt, foundAt]);
    expect(store.calls.at(-1)!.ok).toBe(true);
    expect(lost.pending()).toEqual([]);
    expect(lost.failedAttempts).toBe(3);
    clock.advance(120_000);
    await settle();
    expect(store.calls).toHaveLength(4);
  });

  it('caps the delay and stops retrying when stopped', async () => {
    const clock = new FakeClock();
    const store = flakyStore(Infinity);
    const lost = new LostGatewayHistory({ history: store, clock, logger: captureLog('warn').logger, firstRetryMs: 1_000, maxRetryMs: 4_000 });
    const at: number[] = [];
    const close = store.closeOpenSessions.bind(store);
    store.closeOpenSessions = (id, reason, endedAtMs, startedByMs) => (at.push(clock.now()), close(id, reason, endedAtMs, startedByMs));
    await lost.lost('gw3');
    for (let i = 0; i < 60; i++) {
      clock.advance(500);
      await settle();
    }
    // The delay doubles from 1 s and stops at the 4 s cap.
    expect(at.slice(1).map((t, i) => t - at[i]!)).toEqual([1_000, 2_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000]);
    lost.stop();
    clock.advance(60_000);
    await settle();
    expect(store.calls.length).toBe(9);
    expect(clock.pendingTimers).toBe(0);
  });
});
