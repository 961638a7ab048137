/**
 * Full ServerConfig / UserConfig values for unit tests, built directly (no loader): sensible defaults plus
 * the overrides a test cares about.
 */
import { hashPassword, type ScryptParams } from '../../src/config/password.js';
import type { ServerConfig, SessionLimits, UserConfig } from '../../src/config/types.js';

/** Cheap scrypt parameters so tests hash in microseconds; the format is the production one. */
export const TEST_SCRYPT: ScryptParams = { ln: 4, r: 8, p: 1 };

export function testPasswordHash(password: string): Promise<string> {
  return hashPassword(password, TEST_SCRYPT);
}

/** A well-formed hash whose key no password derives (random-looking constant bytes). */
export const NO_PASSWORD_HASH = `$scrypt$ln=4,r=8,p=1$${Buffer.alloc(16, 1).toString('base64')}$${Buffer.alloc(32, 2).toString('base64')}`;

export function userConfig(name: string, overrides: Partial<UserConfig> = {}): UserConfig {
  return {
    name,
    passwordHash: NO_PASSWORD_HASH,
    bandwidth: null,
    burst: null,
    maxSessions: null,
    staticAddresses: [],
    disabled: false,
    quota: null,
    ...overrides,
  };
}

export function sessionLimits(overrides: Partial<SessionLimits> = {}): SessionLimits {
  return {
    maxSessionsPerUser: 4,
    maxTotalSessions: 1000,
    idleTimeoutMs: 120_000,
    sessionTimeoutMs: null,
    atLimit: 'reject',
    ...overrides,
  };
}

export function serverConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return {
    source: '<test>',
    listen: '127.0.0.1',
    port: 4433,
    tls: { certFile: null, keyFile: null, names: [] },
    tunName: 'qg-test0',
    tunOffload: true,
    networks: {
      ipv4: { cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
      ipv6: { cidr: '2001:db8:1::/64', gateway: '2001:db8:1::1' },
    },
    mtu: 1400,
    dns: [],
    routes: ['0.0.0.0/0'],
    defaultBandwidth: null,
    limits: sessionLimits(),
    keepaliveIntervalMs: 15_000,
    shapingDelayMs: 50,
    shaping: 'fair',
    sendQueuePackets: 1024,
    allowClientToClient: false,
    transports: { h2: true, h3: 'off', quic: 'auto' },
    authAttempts: { perSourcePerMinute: 30 },
    connections: { handshakeTimeoutMs: 5000, maxPending: 1024, maxPendingPerSource: 32 },
    memory: { trimAfterFreedBytes: null },
    dataDir: '/nonexistent/quicgate-test',
    admin: { enabled: false, listen: '127.0.0.1', port: 0, token: null },
    history: { enabled: false, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null },
    fleet: null,
    gatewayId: 'gw-test',
    logLevel: 'error',
    usersFile: null,
    users: [],
    ...overrides,
  };
}
