/**
 * A quota counted fleet-wide through a shared PostgreSQL history (real server): bytes another gateway added to
 * the user's row count here too, so the user is disconnected once the fleet's total is spent.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import type { HistoryConfig } from '../../src/config/types.js';
import { HistoryStore } from '../../src/history/store.js';
import type { CloseInfo } from '../../src/transport/types.js';
import { testPasswordHash, userConfig } from '../support/config-fixture.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres-server.js';
import { startHarness, tempDataDir } from './operator-harness.js';

let server: TestPostgres;
beforeAll(async () => {
  server = await startTestPostgres();
}, 60_000);
afterAll(async () => {
  await server?.dispose();
});

describe('quota across gateways sharing a PostgreSQL history', () => {
  it("counts the other gateway's bytes: 900 there and 200 here spend a quota of 1000", async () => {
    const url = await server.createDatabase('quota_fleet');
    const history: HistoryConfig = {
      enabled: true, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000,
      backend: 'postgres', postgres: { url, poolSize: 2, connectTimeoutMs: 2000, queryTimeoutMs: 5000 },
    };
    const clock = new FakeClock(Date.UTC(2026, 0, 1, 10, 0, 0));
    const passwordHash = await testPasswordHash('pw-bob');
    const bob = userConfig('bob', { passwordHash, quota: { bytes: 1000, period: 'day', action: 'disconnect', throttleRate: null } });
    const h = await startHarness({ clock, dataDir: tempDataDir(), config: { gatewayId: 'gw-a', history, users: [bob] } });
    const other = await HistoryStore.open({ dataDir: tempDataDir(), config: history, gatewayId: 'gw-b', clock, logger: pino({ level: 'silent' }) });
    try {
      const { pair, session } = await h.connect('bob');
      const closed = new Promise<CloseInfo>((resolve) => void pair.client.closed.then(resolve));
      other.addQuotaUsage('bob', other.periodKey('day'), 900);
      await other.flush();
      await h.sendFromClient(pair, session, 200);
      clock.advance(1000); // counted here (200) and written; the write reads back the fleet's 1100
      await h.surface.history!.settled();
      expect(h.surface.history!.quotaUsage('bob', '2026-01-01')).toBe(1100);
      clock.advance(1000); // the next tick sees the fleet's usage
      expect((await closed).reason).toBe('quota_exceeded');
      expect((await h.surface.backend.getUser('bob'))?.quota).toMatchObject({ used: 1100, exceeded: true });
    } finally {
      await other.close();
      await h.cleanup();
    }
  });
});
