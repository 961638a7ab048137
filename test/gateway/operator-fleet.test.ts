/**
 * Two real Gateways (memory TUN and transport) in one fleet through a real redis-server, each with its
 * operator surface: the admin API of one lists and kills the other's sessions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { FleetConfig } from '../../src/config/types.js';
import { attachOperatorSurface, openHistory, type OpenedHistory, type OperatorSurface } from '../../src/gateway/operator.js';
import { Gateway } from '../../src/gateway/server.js';
import { MemoryTun } from '../../src/tun/memory.js';
import { serverConfig, sessionLimits } from '../support/config-fixture.js';
import { captureLog } from '../support/log-capture.js';
import { MemoryListener } from '../support/memory-gateway.js';
import { startTestRedis, waitUntil, type TestRedis } from '../support/redis-server.js';
import { passwordUsers } from '../fleet/fleet-harness.js';
import { samples } from './operator-harness.js';

const TOKEN = 'operator-fleet-token-0123456789';

interface Member {
  readonly gateway: Gateway;
  readonly listener: MemoryListener;
  readonly surface: OperatorSurface;
  call(pathname: string, init?: RequestInit): Promise<Response>;
}

let redis: TestRedis;
const members: Member[] = [];
beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis.dispose();
});
afterEach(async () => {
  for (const m of members.splice(0)) await m.surface.stop();
});

async function member(id: string, fleet: FleetConfig, history?: Promise<OpenedHistory>): Promise<Member> {
  const log = captureLog('warn');
  const config = serverConfig({
    fleet,
    gatewayId: id,
    users: await passwordUsers(['alice']),
    limits: sessionLimits({ maxSessionsPerUser: 2 }),
    admin: { enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN },
  });
  let listener: MemoryListener | null = null;
  const gateway = await Gateway.start(config, {
    logger: log.logger,
    clock: systemClock,
    openTun: async (s) => new MemoryTun({ name: s.name, mtu: s.mtu }),
    listen: async ({ admission }) => (listener = new MemoryListener(admission)),
  });
  const surface = await attachOperatorSurface(gateway, {
    config,
    logger: log.logger,
    clock: systemClock,
    reload: async () => ({ bandwidthChanged: [], usersRemoved: [], sessionsClosed: 0, needRestart: [], changed: [] }),
    metrics: { defaultMetrics: false },
    ...(history === undefined ? {} : { history }),
  });
  const m: Member = {
    gateway,
    listener: listener!,
    surface,
    call: (pathname, init = {}) => fetch(`http://127.0.0.1:${surface.adminPort}${pathname}`, { ...init, headers: { Authorization: `Bearer ${TOKEN}` } }),
  };
  members.push(m);
  await waitUntil(() => gateway.fleetSessions?.liveness.leaseHeld === true, 10_000, `${id} holds its lease`);
  await gateway.fleetSessions?.subscribed;
  return m;
}

describe('admin API across the fleet', () => {
  it("lists every gateway's sessions with their gateway, filters by gateway, and kills a session on another gateway", async () => {
    const fleet: FleetConfig = { redisUrl: redis.url, keyPrefix: 'qgop:', leaseIntervalMs: 100, fallbackShare: 0.5, sessionLeaseMs: 1500, addressReserve: 16 };
    const a = await member('a', fleet);
    const b = await member('b', fleet);
    const onB = await b.listener.connect('alice', 'pw-alice');
    if ('refused' in onB) throw new Error(`refused: ${JSON.stringify(onB.refused)}`);
    // In a fleet the session opens once its tunnel addresses are claimed, after the connect answer.
    await waitUntil(() => b.gateway.sessions.size === 1, 2_000, 'session open on b');
    const session = b.gateway.sessions.list()[0]!;

    const list = (await (await a.call('/api/sessions')).json()) as { sessions: { id: string; gateway: string; user: string }[]; fleet: unknown };
    expect(list.sessions.map((s) => [s.id, s.gateway, s.user])).toEqual([[session.id, 'b', 'alice']]);
    expect(list.fleet).toEqual({ gateway: 'a', gateways: ['a', 'b'], complete: true });
    expect(((await (await a.call('/api/sessions?gateway=a')).json()) as { sessions: unknown[] }).sessions).toEqual([]);
    expect((await a.call('/api/sessions?gateway=no/such')).status).toBe(400);
    expect(await (await a.call(`/api/sessions/${session.id}`)).json()).toMatchObject({ id: session.id, gateway: 'b' });

    const killed = await a.call(`/api/sessions/${session.id}`, { method: 'DELETE' });
    expect(killed.status).toBe(200);
    expect(await killed.json()).toEqual({ id: session.id, closed: true, reason: 'admin_kill', gateway: 'b' });
    expect(session.state).toMatchObject({ kind: 'closed', reason: 'admin_kill' });
    expect((await a.call(`/api/sessions/${session.id}`, { method: 'DELETE' })).status).toBe(404);

    const metrics = samples(await (await b.call('/metrics')).text());
    expect(metrics.get('quicgate_fleet_sessions_degraded')).toBe(0);
    expect(metrics.get('quicgate_fleet_routed_kills_served_total')).toBe(1);
  });

  it('while Redis is down: lists say they are partial, kills of unknown sessions are 503, and the gateway still stops', async () => {
    const fleet: FleetConfig = { redisUrl: redis.url, keyPrefix: 'qgop2:', leaseIntervalMs: 100, fallbackShare: 0.5, sessionLeaseMs: 1500, addressReserve: 16 };
    const a = await member('a', fleet);
    const onA = await a.listener.connect('alice', 'pw-alice');
    if ('refused' in onA) throw new Error(`refused: ${JSON.stringify(onA.refused)}`);
    await redis.stop();
    try {
      await waitUntil(() => a.gateway.fleetSessions?.liveness.leaseHeld === false, 10_000, 'lease lost');
      const list = (await (await a.call('/api/sessions')).json()) as { sessions: { gateway: string }[]; fleet: { complete: boolean; error?: string } };
      expect(list.sessions.map((s) => s.gateway)).toEqual(['a']);
      expect(list.fleet.complete).toBe(false);
      expect(list.fleet.error).toEqual(expect.any(String));
      const kill = await a.call('/api/sessions/elsewhere-1', { method: 'DELETE' });
      expect(kill.status).toBe(503);
      expect(((await kill.json()) as { error: { code: string } }).error.code).toBe('QG_ERR_FLEET_UNAVAILABLE');
      // A second session of alice is admitted on local caps (max 2 per user), and counted as such.
      const second = await a.listener.connect('alice', 'pw-alice');
      expect('refused' in second).toBe(false);
      const metrics = samples(await (await a.call('/metrics')).text());
      expect(metrics.get('quicgate_fleet_sessions_degraded')).toBe(1);
      expect(metrics.get('quicgate_fleet_local_only_admissions_total')).toBe(1);
      const started = Date.now();
      await members.splice(0)[0]!.surface.stop();
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await redis.start();
    }
  });

  it("the gateway that finds another's lease expired closes that gateway's open history sessions as crash", async () => {
    const fleet: FleetConfig = { redisUrl: redis.url, keyPrefix: 'qgop3:', leaseIntervalMs: 100, fallbackShare: 0.5, sessionLeaseMs: 1500, addressReserve: 16 };
    const dataDir = mkdtempSync(join(tmpdir(), 'qg-fleet-history-'));
    try {
      const config = serverConfig({
        dataDir,
        history: { enabled: true, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null },
      });
      const opened = await openHistory(config, captureLog('warn').logger, systemClock);
      // The store's crash close (added with the fleet's history work): recorded here, so the wiring is what is tested.
      const calls: [string, string, number][] = [];
      Object.assign(opened.history!, {
        closeOpenSessions: async (gatewayId: string, reason: 'crash', endedAtMs: number) => (calls.push([gatewayId, reason, endedAtMs]), 1),
      });
      await member('a', fleet, Promise.resolve(opened));
      const b = await member('b', fleet);
      const startedAt = Date.now();
      // b crashes: its Redis connections drop, nothing is given up.
      await b.gateway.fleet!.redis.close();
      await waitUntil(() => calls.length > 0, 10_000, "a closes b's history sessions");
      expect(calls).toHaveLength(1);
      expect(calls[0]![0]).toBe('b');
      expect(calls[0]![1]).toBe('crash');
      expect(calls[0]![2]).toBeGreaterThanOrEqual(startedAt);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
