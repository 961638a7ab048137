/**
 * Every default value, and the one place where they are merged: validated file values (snake_case, from
 * schema.ts) in, plain typed config (camelCase, types.ts) out. docs/config.md lists the same values.
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { Address4, Address6 } from 'ip-address';
import type { ClientFile, ServerFile, UserEntry } from './schema.js';
import type { Bandwidth, ClientConfig, QuotaConfig, ServerConfig, UserConfig } from './types.js';

export const SERVER_DEFAULTS = {
  listen: '0.0.0.0',
  port: 4433,
  tunName: 'qg0',
  mtu: 1400,
  ipv4Network: '198.18.0.0/16',
  ipv6Network: '2001:db8:4711::/64',
  dns: [] as readonly string[],
  routes: [] as readonly string[],
  defaultBandwidth: null as Bandwidth,
  maxSessionsPerUser: 4,
  maxTotalSessions: 1000,
  idleTimeoutMs: 5 * 60_000,
  sessionTimeoutMs: null as number | null,
  atLimit: 'reject' as const,
  keepaliveIntervalMs: 15_000,
  shapingDelayMs: 50,
  shaping: 'fair' as const,
  sendQueuePackets: 1024,
  allowClientToClient: false,
  h2: true,
  /** The library's HTTP/3 when quicgate's own QUIC is off (both would take UDP listen.port). */
  h3WithoutQuic: 'auto' as const,
  quic: 'auto' as const,
  authAttemptsPerSourcePerMinute: 10,
  handshakeTimeoutMs: 5_000,
  maxPendingConnections: 1024,
  maxPendingConnectionsPerSource: 32,
  trimAfterFreedBytes: 16 * 1024 * 1024,
  adminListen: '127.0.0.1',
  adminPort: 9090,
  historyEnabled: true,
  historyRetentionDays: 90,
  historyFlushIntervalMs: 5_000,
  historyBatchSize: 500,
  historyQueueLimit: 100_000,
  historyBusyTimeoutMs: 1_000,
  historyRejectionRowsPerHour: 1_000,
  historyPostgresPoolSize: 4,
  historyPostgresConnectTimeoutMs: 5_000,
  historyPostgresQueryTimeoutMs: 30_000,
  fleetKeyPrefix: 'quicgate:',
  fleetLeaseIntervalMs: 100,
  fleetFallbackShare: 0.5,
  fleetSessionLeaseMs: 15_000,
  fleetAddressReserve: 16,
  logLevel: 'info' as const,
  /** Relative to the working directory, also when a config file is given but sets no data_dir. */
  dataDir: 'data',
} as const;

export const CLIENT_DEFAULTS = {
  transport: 'auto' as const,
  tunName: 'qgc0',
  setDns: false,
  reconnectInitialMs: 1_000,
  reconnectMaxMs: 60_000,
  reconnectMaxAttempts: null as number | null,
  deadAfterMissedKeepalives: 3,
  logLevel: 'info' as const,
} as const;

/** Label used as `source` when no file was given. */
export const DEFAULTS_SOURCE = '<defaults>';

/** The first host address of a network (e.g. 198.18.0.1 for 198.18.0.0/16, 2001:db8:4711::1 for /64). */
export function firstHost(cidr: string): string {
  const net = cidr.includes(':') ? new Address6(cidr) : new Address4(cidr);
  return net.startAddress().offset(1).correctForm();
}

export function resolveQuota(quota: UserEntry['quota']): QuotaConfig | null {
  if (quota === null || quota === undefined) return null;
  const action = quota.action ?? 'disconnect';
  return { bytes: quota.bytes, period: quota.period, action, throttleRate: action === 'throttle' ? (quota.throttle_rate ?? null) : null };
}

export function resolveUser(entry: UserEntry, defaultBandwidth: Bandwidth): UserConfig {
  return {
    name: entry.name,
    passwordHash: entry.password_hash,
    bandwidth: entry.bandwidth === undefined ? defaultBandwidth : entry.bandwidth,
    burst: entry.burst ?? null,
    maxSessions: entry.max_sessions ?? null,
    staticAddresses: entry.static_addresses ?? [],
    disabled: entry.disabled ?? false,
    quota: resolveQuota(entry.quota),
  };
}

export interface ServerResolveContext {
  /** Absolute path of the server file, or DEFAULTS_SOURCE. */
  readonly source: string;
  /** Directory that relative paths in the file are relative to. */
  readonly baseDir: string;
  /** Entries from `users:` or from the users file, in order. */
  readonly userEntries: readonly UserEntry[];
  readonly usersFile: string | null;
}

export function resolveServerConfig(file: ServerFile, ctx: ServerResolveContext): ServerConfig {
  const d = SERVER_DEFAULTS;
  const t = file.tunnel ?? {};
  const ipv4 = t.ipv4 === null ? null : (t.ipv4 ?? { network: d.ipv4Network, gateway: undefined });
  const ipv6 = t.ipv6 === null ? null : (t.ipv6 ?? { network: d.ipv6Network, gateway: undefined });
  const defaultBandwidth = file.default_bandwidth === undefined ? d.defaultBandwidth : file.default_bandwidth;
  const relative = (p: string): string => resolve(ctx.baseDir, p);
  const token = file.admin?.token ?? null;
  return {
    source: ctx.source,
    listen: file.listen?.address ?? d.listen,
    port: file.listen?.port ?? d.port,
    tls: {
      certFile: file.tls?.cert_file == null ? null : relative(file.tls.cert_file),
      keyFile: file.tls?.key_file == null ? null : relative(file.tls.key_file),
      names: file.tls?.names ?? [],
    },
    tunName: t.name ?? d.tunName,
    tunOffload: t.offload ?? true,
    networks: {
      ipv4: ipv4 && { cidr: ipv4.network, gateway: ipv4.gateway ?? firstHost(ipv4.network) },
      ipv6: ipv6 && { cidr: ipv6.network, gateway: ipv6.gateway ?? firstHost(ipv6.network) },
    },
    mtu: t.mtu ?? d.mtu,
    dns: t.dns ?? d.dns,
    routes: t.routes ?? d.routes,
    defaultBandwidth,
    limits: {
      maxSessionsPerUser: file.limits?.max_sessions_per_user ?? d.maxSessionsPerUser,
      maxTotalSessions: file.limits?.max_total_sessions ?? d.maxTotalSessions,
      idleTimeoutMs: file.limits?.idle_timeout ?? d.idleTimeoutMs,
      sessionTimeoutMs: file.limits?.session_timeout ?? d.sessionTimeoutMs,
      atLimit: file.limits?.at_limit ?? d.atLimit,
    },
    keepaliveIntervalMs: file.keepalive_interval ?? d.keepaliveIntervalMs,
    shapingDelayMs: file.shaping_delay ?? d.shapingDelayMs,
    shaping: file.shaping ?? d.shaping,
    sendQueuePackets: file.send_queue_packets ?? d.sendQueuePackets,
    allowClientToClient: file.allow_client_to_client ?? d.allowClientToClient,
    transports: {
      h2: file.transports?.h2 ?? d.h2,
      h3: file.transports?.h3 ?? ((file.transports?.quic ?? d.quic) === 'off' ? d.h3WithoutQuic : 'off'),
      quic: file.transports?.quic ?? d.quic,
    },
    authAttempts: { perSourcePerMinute: file.auth_attempts?.per_source_per_minute ?? d.authAttemptsPerSourcePerMinute },
    connections: {
      handshakeTimeoutMs: file.connections?.handshake_timeout ?? d.handshakeTimeoutMs,
      maxPending: file.connections?.max_pending ?? d.maxPendingConnections,
      maxPendingPerSource: file.connections?.max_pending_per_source ?? d.maxPendingConnectionsPerSource,
    },
    memory: { trimAfterFreedBytes: file.memory?.trim_after_freed === undefined ? d.trimAfterFreedBytes : file.memory.trim_after_freed },
    // data_dir from a file is relative to that file; the default is relative to the working directory.
    dataDir: file.data_dir === undefined ? resolve(d.dataDir) : relative(file.data_dir),
    admin: {
      // No token, no admin API: an open admin port would let anyone kill sessions.
      enabled: (file.admin?.enabled ?? true) && token !== null,
      listen: file.admin?.listen ?? d.adminListen,
      port: file.admin?.port ?? d.adminPort,
      token,
    },
    history: {
      enabled: file.history?.enabled ?? d.historyEnabled,
      retentionDays: file.history?.retention_days ?? d.historyRetentionDays,
      flushIntervalMs: file.history?.flush_interval ?? d.historyFlushIntervalMs,
      batchSize: file.history?.batch_size ?? d.historyBatchSize,
      queueLimit: file.history?.queue_limit ?? d.historyQueueLimit,
      busyTimeoutMs: file.history?.busy_timeout ?? d.historyBusyTimeoutMs,
      rejectionRowsPerHour: file.history?.rejection_rows_per_hour ?? d.historyRejectionRowsPerHour,
      backend: file.history?.backend ?? 'sqlite',
      postgres:
        file.history?.postgres === undefined
          ? null
          : {
              url: file.history.postgres.url,
              poolSize: file.history.postgres.pool_size ?? d.historyPostgresPoolSize,
              connectTimeoutMs: file.history.postgres.connect_timeout ?? d.historyPostgresConnectTimeoutMs,
              queryTimeoutMs: file.history.postgres.query_timeout ?? d.historyPostgresQueryTimeoutMs,
            },
    },
    fleet:
      file.fleet === undefined
        ? null
        : {
            redisUrl: file.fleet.redis_url,
            keyPrefix: file.fleet.key_prefix ?? d.fleetKeyPrefix,
            leaseIntervalMs: file.fleet.lease_interval ?? d.fleetLeaseIntervalMs,
            fallbackShare: file.fleet.fallback_share ?? d.fleetFallbackShare,
            sessionLeaseMs: file.fleet.session_lease ?? d.fleetSessionLeaseMs,
            addressReserve: file.fleet.address_reserve ?? d.fleetAddressReserve,
          },
    gatewayId: file.fleet?.gateway_id ?? hostname(),
    logLevel: file.log_level ?? d.logLevel,
    usersFile: ctx.usersFile,
    users: ctx.userEntries.map((u) => resolveUser(u, defaultBandwidth)),
  };
}

export interface ClientResolveContext {
  readonly source: string;
  /** Directory that relative paths (ca_file) are relative to. */
  readonly baseDir: string;
  /** Already read from `password` or `password_file`. */
  readonly password: string;
}

/** `file` must already carry the required fields (server, user); the loader checks that first. */
export function resolveClientConfig(
  file: ClientFile & { server: string; user: string },
  ctx: ClientResolveContext,
): ClientConfig {
  const d = CLIENT_DEFAULTS;
  const maxAttempts = file.reconnect?.max_attempts;
  return {
    source: ctx.source,
    server: file.server,
    user: file.user,
    password: ctx.password,
    transport: file.transport ?? d.transport,
    caFile: file.ca_file == null ? null : resolve(ctx.baseDir, file.ca_file),
    pinnedCertHashes: file.pinned_cert_hashes ?? [],
    tunName: file.tun_name ?? d.tunName,
    tunOffload: file.tun_offload ?? true,
    setDns: file.set_dns ?? d.setDns,
    reconnect: {
      initialMs: file.reconnect?.initial ?? d.reconnectInitialMs,
      maxMs: file.reconnect?.max ?? d.reconnectMaxMs,
      maxAttempts: maxAttempts === undefined || maxAttempts === 'unlimited' ? d.reconnectMaxAttempts : maxAttempts,
    },
    deadAfterMissedKeepalives: file.dead_after_missed_keepalives ?? d.deadAfterMissedKeepalives,
    logLevel: file.log_level ?? d.logLevel,
  };
}
