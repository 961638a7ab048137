/**
 * Several "gateways" in one process against one real redis-server: each a SessionManager with its SessionFleet
 * and its own FleetRedis, as the Gateway wires them (src/gateway/server.ts). Real time (Redis keeps the leases).
 */
import type { Logger } from 'pino';
import { systemClock } from '../../src/clock.js';
import type { FleetConfig, ServerConfig, UserConfig } from '../../src/config/types.js';
import { FleetRedis } from '../../src/fleet/redis.js';
import { SessionFleet } from '../../src/fleet/session-fleet.js';
import type { EndReason, Session } from '../../src/gateway/session.js';
import { SessionManager } from '../../src/gateway/sessions.js';
import type { AdmissionResult, ConnectRequest } from '../../src/transport/types.js';
import { serverConfig, sessionLimits, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { FakeConnection } from '../support/fake-connection.js';
import { captureLog, type CapturedLog } from '../support/log-capture.js';
import { waitUntil } from '../support/redis-server.js';

export const LEASE_MS = 1_500;

export interface TestGateway {
  readonly id: string;
  readonly redis: FleetRedis;
  readonly fleet: SessionFleet;
  readonly sessions: SessionManager;
  readonly log: CapturedLog;
  readonly ended: { id: string; reason: EndReason }[];
  /** authenticate + open; the connection's peer port is unique per call. */
  connect(user: string): Promise<{ result: AdmissionResult; session: Session | null }>;
  /** A clean stop (lease given up). */
  stop(): Promise<void>;
  /** A crash: timers stop, the connections drop, nothing is given up. */
  crash(): Promise<void>;
}

let port = 30_000;
const hashes = new Map<string, string>();

export async function passwordUsers(names: readonly string[], overrides: Partial<UserConfig> = {}): Promise<UserConfig[]> {
  const users: UserConfig[] = [];
  for (const name of names) {
    let hash = hashes.get(name);
    if (hash === undefined) {
      hash = await testPasswordHash(`pw-${name}`);
      hashes.set(name, hash);
    }
    users.push(userConfig(name, { passwordHash: hash, ...overrides }));
  }
  return users;
}

export function fleetConfig(url: string, prefix: string): FleetConfig {
  return { redisUrl: url, keyPrefix: prefix, leaseIntervalMs: 100, fallbackShare: 0.5, sessionLeaseMs: LEASE_MS, addressReserve: 16 };
}

export async function startTestGateway(
  id: string,
  fleet: FleetConfig,
  config: Partial<ServerConfig>,
  options: { readonly killTimeoutMs?: number; readonly logger?: Logger } = {},
): Promise<TestGateway> {
  const log = captureLog('info');
  const cfg = serverConfig({ limits: sessionLimits(), ...config, fleet, gatewayId: id, authAttempts: { perSourcePerMinute: 100_000 } });
  const sessions = new SessionManager({ config: cfg, logger: log.logger, clock: systemClock });
  const redis = new FleetRedis(fleet, { maxRetryDelayMs: 100 });
  const sessionFleet = new SessionFleet({
    redis,
    config: fleet,
    gatewayId: id,
    sessions,
    clock: systemClock,
    logger: log.logger,
    reservationMs: 10_000,
    killTimeoutMs: options.killTimeoutMs ?? 2_000,
  });
  const ended: TestGateway['ended'] = [];
  sessions.onClosed((s, reason) => ended.push({ id: s.id, reason }));
  await redis.connect();
  sessionFleet.start();
  await sessionFleet.subscribed;
  await waitUntil(() => sessionFleet.liveness.leaseHeld, 5_000, `${id} holds its lease`);
  return {
    id,
    redis,
    fleet: sessionFleet,
    sessions,
    log,
    ended,
    async connect(user) {
      const request: ConnectRequest = {
        user,
        password: `pw-${user}`,
        sourceAddress: '192.0.2.10',
        peer: `192.0.2.10:${++port}`,
        previousAddresses: [],
        resume: null,
        clientVersion: 'test',
        transport: 'memory',
      };
      const result = await sessions.authenticate(request);
      if (!result.ok) return { result, session: null };
      return { result, session: sessions.open(new FakeConnection(request.peer), request) };
    },
    async stop() {
      sessions.closeAll();
      await sessionFleet.stop();
      await redis.close();
    },
    async crash() {
      // What a SIGKILL leaves: no release, no resign; only this process's timers and sockets go away.
      sessions.setSharedCaps(null);
      await redis.close();
      // With the connections gone the lease cannot be given up: it only stops being renewed.
      await sessionFleet.liveness.stop();
    },
  };
}
