/**
 * Plain typed configuration values, produced once by the loader (src/config/load.ts) from YAML validated with
 * zod. The core works on these only: every rate is bytes per second, every size bytes, every duration
 * milliseconds, every address a canonical string.
 */

export type AtLimitPolicy = 'reject' | 'replace_oldest';

/** Bytes per second; null means unlimited. */
export type Bandwidth = number | null;

export interface TunnelNetworks {
  /** e.g. "198.18.0.0/16"; the gateway takes the first usable address unless `ipv4_gateway` says otherwise. */
  readonly ipv4: { readonly cidr: string; readonly gateway: string } | null;
  readonly ipv6: { readonly cidr: string; readonly gateway: string } | null;
}

export interface SessionLimits {
  readonly maxSessionsPerUser: number;
  readonly maxTotalSessions: number;
  readonly idleTimeoutMs: number;
  /** Maximum lifetime of a session; null means no limit. */
  readonly sessionTimeoutMs: number | null;
  readonly atLimit: AtLimitPolicy;
}

export interface QuotaConfig {
  readonly bytes: number;
  readonly period: 'day' | 'month';
  /** What happens when spent: disconnect and refuse, or throttle to `throttleRate` (bytes/s). */
  readonly action: 'disconnect' | 'throttle';
  readonly throttleRate: number | null;
}

export interface UserConfig {
  readonly name: string;
  /** Self-describing scrypt hash, see src/config/password.ts. */
  readonly passwordHash: string;
  /** Resolved by the loader: the user's own limit, else the server default; null = unlimited. */
  readonly bandwidth: Bandwidth;
  /** Bucket depth in bytes; null means the default (see bucket.defaultBurst). */
  readonly burst: number | null;
  /** Own session limit; null means the server default. */
  readonly maxSessions: number | null;
  /** Addresses reserved for this user alone (canonical strings, IPv4 and/or IPv6). */
  readonly staticAddresses: readonly string[];
  readonly disabled: boolean;
  readonly quota: QuotaConfig | null;
}

export interface TlsConfig {
  /** PEM paths; null means use (and renew) the generated CA and certificate in the data directory. */
  readonly certFile: string | null;
  readonly keyFile: string | null;
  /** Extra DNS names / IP addresses for the generated server certificate (public names of the gateway). */
  readonly names: readonly string[];
}

export interface AdminConfig {
  readonly enabled: boolean;
  readonly listen: string;
  readonly port: number;
  /** Bearer token; null means no token and therefore no admin API. */
  readonly token: string | null;
}

export interface HistoryConfig {
  readonly enabled: boolean;
  /** Days to keep rows; 0 keeps forever. */
  readonly retentionDays: number;
  readonly flushIntervalMs: number;
  readonly batchSize: number;
  /** Records held in memory for the writer thread at most; beyond it new ones are dropped and counted. */
  readonly queueLimit: number;
  /** How long a write waits for another connection's lock (in the writer thread, never the event loop). */
  readonly busyTimeoutMs: number;
  /** Rejection rows per UTC hour at most; refusals from further sources are counted under source "*". */
  readonly rejectionRowsPerHour: number;
  /** Where the history lives: SQLite in data_dir (the embedded default) or a PostgreSQL shared by the fleet. */
  readonly backend: 'sqlite' | 'postgres';
  /** Set when history.postgres is configured (required for backend postgres). */
  readonly postgres: HistoryPostgresConfig | null;
}

/** Config `history.postgres`. */
export interface HistoryPostgresConfig {
  /** postgres:// URL as written; may hold a password: log it only through redactUrl (src/history/pg-url.ts). */
  readonly url: string;
  /** Connections at most (writes use one at a time; queries of the admin API the others). */
  readonly poolSize: number;
  /** How long connecting may take before the attempt counts as failed (ms). */
  readonly connectTimeoutMs: number;
  /** A statement not answered within this counts as failed (client side; ms). */
  readonly queryTimeoutMs: number;
}

export interface ServerConfig {
  /** Absolute path of the file this came from, or "<defaults>". */
  readonly source: string;
  readonly listen: string;
  readonly port: number;
  readonly tls: TlsConfig;
  readonly tunName: string;
  /** Coalesce flows into GSO super-packets on TUN writes (virtio-net header; see native/src/gro.h). */
  readonly tunOffload: boolean;
  readonly networks: TunnelNetworks;
  readonly mtu: number;
  readonly dns: readonly string[];
  /** CIDRs pushed to clients to route through the tunnel. */
  readonly routes: readonly string[];
  readonly defaultBandwidth: Bandwidth;
  readonly limits: SessionLimits;
  readonly keepaliveIntervalMs: number;
  /** Longest a packet may wait in the shaping queue before it is dropped. */
  readonly shapingDelayMs: number;
  /** Inside a user's limit: fair per flow (fq_codel), or fifo per session and direction (the old way, for A/B runs). */
  readonly shaping: 'fair' | 'fifo';
  /** Per-session send queue bound, in packets. */
  readonly sendQueuePackets: number;
  readonly allowClientToClient: boolean;
  readonly transports: { readonly h2: boolean; readonly h3: 'auto' | 'off'; readonly quic: 'auto' | 'off' };
  readonly authAttempts: { readonly perSourcePerMinute: number };
  readonly connections: ConnectionLimits;
  /** Give freed C-allocator memory back after this many bytes were freed (src/gateway/allocator-trim.ts); null: never. */
  readonly memory: { readonly trimAfterFreedBytes: number | null };
  readonly dataDir: string;
  readonly admin: AdminConfig;
  readonly history: HistoryConfig;
  /** Shared state with other gateways through Redis (docs/fleet.md); null: this gateway alone (the default). */
  readonly fleet: FleetConfig | null;
  /** This gateway's name in the fleet and in history rows: fleet.gateway_id, else the host name. */
  readonly gatewayId: string;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Path of the users file, if users live in their own file. */
  readonly usersFile: string | null;
  readonly users: readonly UserConfig[];
}

/** Config `fleet`: what several gateways behind one name share through one Redis. */
export interface FleetConfig {
  /** redis:// or rediss:// URL, as written. */
  readonly redisUrl: string;
  /** Prefix of every Redis key and channel, so several fleets can share one Redis. */
  readonly keyPrefix: string;
  /** How often each gateway renews its rate leases (ms). */
  readonly leaseIntervalMs: number;
  /** Share of each user's limit (0..1] this gateway enforces alone while Redis is unreachable. */
  readonly fallbackShare: number;
  /** Lifetime of this gateway's session leases (ms): a crashed gateway's sessions stop counting after it. */
  readonly sessionLeaseMs: number;
  /** Address pairs claimed ahead, handed out while Redis is unreachable (docs/fleet.md, Tunnel addresses). */
  readonly addressReserve: number;
}

/** Bounds on tunnel connections that carry no authenticated session (yet). */
export interface ConnectionLimits {
  /** From TCP accept to an admitted session (TLS and CONNECT); also how long a connection may stay without one. */
  readonly handshakeTimeoutMs: number;
  /** Not-yet-authenticated connections in total; more are reset at accept. */
  readonly maxPending: number;
  /** ... per source address (IPv4, IPv6 /64). */
  readonly maxPendingPerSource: number;
}

export interface ClientConfig {
  readonly source: string;
  /** https://host:port/ of the gateway. */
  readonly server: string;
  readonly user: string;
  readonly password: string;
  readonly transport: 'auto' | 'quic' | 'h3' | 'h2';
  /** PEM path of the CA to trust, or null. */
  readonly caFile: string | null;
  /** SHA-256 hashes (hex) of server certificates to pin, for certificates valid 14 days or less. */
  readonly pinnedCertHashes: readonly string[];
  readonly tunName: string;
  /** Same as the server's tunnel.offload, for the client's TUN. */
  readonly tunOffload: boolean;
  readonly setDns: boolean;
  readonly reconnect: { readonly initialMs: number; readonly maxMs: number; readonly maxAttempts: number | null };
  /** How many keepalive intervals without an answer mean the path is dead. */
  readonly deadAfterMissedKeepalives: number;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
