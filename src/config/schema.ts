/**
 * The shape of the YAML files (snake_case keys), validated with zod. Values come out converted to plain units
 * (bytes/s, bytes, ms, canonical addresses) but still snake_case and with absent keys left undefined: defaults
 * are applied in one place, src/config/defaults.ts. Every object is strict, so a misspelt key is an error.
 *
 * Cross-field rules (gateway inside its network, static addresses, unique names, ...) need the resolved
 * config and live in checkServerSemantics() at the end of this file.
 */
import { Address4, Address6 } from 'ip-address';
import { z } from 'zod';
import { isPasswordHash } from './password.js';
import type { ServerConfig, UserConfig } from './types.js';
import { formatDuration, parseDuration, parseRate, parseSize } from './units.js';

// ---- field types ---------------------------------------------------------------------------------------

/** Short description of a YAML value for "got ..." in messages. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/**
 * A field read from a YAML scalar by a parse function that throws (QuicgateError from units.ts, or Error) on
 * bad input; the error message becomes the issue message.
 */
function parsedField<T>(expected: string, parse: (value: string | number) => T) {
  return z.unknown().transform((value, ctx): T => {
    if (typeof value !== 'string' && typeof value !== 'number') {
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${describeValue(value)}` });
      return z.NEVER;
    }
    try {
      return parse(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
      return z.NEVER;
    }
  });
}

function fail(message: string): never {
  throw new Error(message);
}

/** A rate above zero such as "10 Mbit/s"; a bare YAML number is rejected by parseRate (bits or bytes?). */
function positiveRate(v: string | number): number {
  const bytesPerSecond = parseRate(String(v));
  return bytesPerSecond > 0 ? bytesPerSecond : fail(`expected a rate above zero, got ${describeValue(v)}`);
}

const rate = parsedField('a rate such as "10 Mbit/s"', positiveRate);

/** "unlimited" (null) or a rate above zero. */
const bandwidth = parsedField('"unlimited" or a rate such as "20 Mbit/s"', (v): number | null =>
  v === 'unlimited' ? null : positiveRate(v),
);

/** A size above zero such as "64 KiB"; a bare number is bytes. */
const size = parsedField('a size such as "64 KiB" or a whole number of bytes', (v) => {
  const bytes =
    typeof v === 'string' ? parseSize(v) : Number.isSafeInteger(v) && v >= 0 ? v : fail(`expected a whole number of bytes, got ${v}`);
  return bytes > 0 ? bytes : fail(`expected a size above zero, got ${describeValue(v)}`);
});

/** A duration such as "30s" or "1h30m"; a bare number is rejected by parseDuration (ms or s?). */
function duration(min: number, minText: string) {
  return parsedField('a duration such as "30s" or "1h30m"', (v) => {
    const ms = parseDuration(String(v));
    return ms >= min ? ms : fail(`expected a duration of at least ${minText}, got ${describeValue(v)}`);
  });
}

/** A string field turned into a canonical value by `parse`. */
function textField<T>(expected: string, parse: (text: string) => T) {
  return parsedField(expected, (v) => (typeof v === 'string' ? parse(v) : fail(`expected ${expected}, got ${describeValue(v)}`)));
}

type Family = 4 | 6;

/** A single IP address in canonical form; no prefix, no zone. */
function parseAddress(text: string, family: Family | null): { family: Family; canonical: string } {
  if (text.includes('/') || text.includes('%')) fail(`expected an IP address without prefix or zone, got ${describeValue(text)}`);
  if (family !== 6 && Address4.isValid(text)) return { family: 4, canonical: new Address4(text).correctForm() };
  if (family !== 4 && Address6.isValid(text)) return { family: 6, canonical: new Address6(text).correctForm() };
  const what = family === 4 ? 'an IPv4 address' : family === 6 ? 'an IPv6 address' : 'an IPv4 or IPv6 address';
  return fail(`expected ${what}, got ${describeValue(text)}`);
}

const MAX_POOL_PREFIX = { 4: 30, 6: 126 } as const;

/** A CIDR network with no host bits set, canonical form "addr/len". */
function parseCidr(text: string, family: Family | null, forPool: boolean): string {
  const slash = text.indexOf('/');
  const what = family === 4 ? 'an IPv4 network' : family === 6 ? 'an IPv6 network' : 'a network';
  if (slash < 0 || !/^\d{1,3}$/.test(text.slice(slash + 1))) fail(`expected ${what} in CIDR form such as "${family === 6 ? '2001:db8:4711::/64' : '198.18.0.0/16'}", got ${describeValue(text)}`);
  const addr = parseAddress(text.slice(0, slash), family);
  const prefix = Number(text.slice(slash + 1));
  const bits = addr.family === 4 ? 32 : 128;
  if (prefix > bits) fail(`prefix length /${prefix} is longer than ${bits} bits`);
  if (forPool && prefix > MAX_POOL_PREFIX[addr.family]) {
    fail(`expected a prefix of /${MAX_POOL_PREFIX[addr.family]} or shorter (room for the gateway and clients), got /${prefix}`);
  }
  const parsed = addr.family === 4 ? new Address4(`${addr.canonical}/${prefix}`) : new Address6(`${addr.canonical}/${prefix}`);
  const start = parsed.startAddress().correctForm();
  if (start !== addr.canonical) fail(`"${text}" has host bits set; the network is ${start}/${prefix}`);
  return `${start}/${prefix}`;
}

const ipAddress = textField('an IP address', (s) => parseAddress(s, null).canonical);
const ipv4Address = textField('an IPv4 address', (s) => parseAddress(s, 4).canonical);
const ipv6Address = textField('an IPv6 address', (s) => parseAddress(s, 6).canonical);
const ipv4Pool = textField('an IPv4 network such as "198.18.0.0/16"', (s) => parseCidr(s, 4, true));
const ipv6Pool = textField('an IPv6 network such as "2001:db8:4711::/64"', (s) => parseCidr(s, 6, true));
const route = textField('a network such as "0.0.0.0/0" or "2001:db8::/32"', (s) => parseCidr(s, null, false));

/** redis:// or rediss:// with a host; the URL is kept as written (ioredis parses it). */
/** A postgres:// URL; the message never repeats the text (it may carry a password). */
function postgresUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail('expected a URL such as "postgres://quicgate@10.0.0.6:5432/quicgate" (the text given is not a URL; not repeated, it may hold a password)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') fail(`expected a postgres:// or postgresql:// URL, got scheme "${url.protocol}"`);
  if (url.hostname === '' && !url.searchParams.has('host')) fail('expected a host in the postgres URL (or a ?host= socket directory)');
  return text;
}

function redisUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail(`expected a URL such as "redis://10.0.0.5:6379/0", got ${describeValue(text)}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') fail(`expected a redis:// or rediss:// URL, got ${describeValue(text)}`);
  if (url.hostname === '') fail(`expected a host in ${describeValue(text)}`);
  return text;
}

const port = z.number().int().min(1).max(65535);
const positiveInt = z.number().int().min(1);
const boolean = z.boolean();
const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error']);
const path = z.string().min(1);

/** Linux interface names: at most 15 bytes, no slash, no whitespace. */
export const interfaceName = z
  .string()
  .regex(/^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/, 'expected an interface name of 1 to 15 letters, digits, "_", "." or "-"');

/** User names end up in logs, metrics labels and history rows; keep them plain. */
export const userName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'expected a user name of 1 to 64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit');

const passwordHash = z
  .string()
  .refine(isPasswordHash, 'expected a scrypt hash "$scrypt$ln=..,r=..,p=..$salt$key" (create one with `quicgate users passwd`)');

// ---- users ---------------------------------------------------------------------------------------------

const QuotaSchema = z
  .strictObject({
    bytes: size,
    period: z.enum(['day', 'month']),
    action: z.enum(['disconnect', 'throttle']).optional(),
    throttle_rate: rate.optional(),
  })
  .superRefine((quota, ctx) => {
    const action = quota.action ?? 'disconnect';
    if (action === 'throttle' && quota.throttle_rate === undefined) {
      ctx.addIssue({ code: 'custom', path: ['throttle_rate'], message: 'required when action is throttle: expected a rate such as "1 Mbit/s"' });
    }
    if (action === 'disconnect' && quota.throttle_rate !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['throttle_rate'], message: 'only allowed when action is throttle' });
    }
  });

export const UserSchema = z.strictObject({
  name: userName,
  password_hash: passwordHash,
  bandwidth: bandwidth.optional(),
  burst: size.nullable().optional(),
  max_sessions: positiveInt.nullable().optional(),
  static_addresses: z.array(ipAddress).optional(),
  disabled: boolean.optional(),
  quota: QuotaSchema.nullable().optional(),
});
export type UserEntry = z.output<typeof UserSchema>;

export const UsersFileSchema = z.strictObject({ users: z.array(UserSchema) });
export type UsersFile = z.output<typeof UsersFileSchema>;

// ---- server --------------------------------------------------------------------------------------------

export const ServerFileSchema = z.strictObject({
  listen: z.strictObject({ address: ipAddress.optional(), port: port.optional() }).optional(),
  tls: z
    .strictObject({
      cert_file: path.nullable().optional(),
      key_file: path.nullable().optional(),
      names: z.array(z.string().min(1).max(253)).optional(),
    })
    .optional(),
  tunnel: z
    .strictObject({
      name: interfaceName.optional(),
      mtu: z.number().int().min(576).max(9000).optional(),
      offload: boolean.optional(),
      ipv4: z.strictObject({ network: ipv4Pool, gateway: ipv4Address.optional() }).nullable().optional(),
      ipv6: z.strictObject({ network: ipv6Pool, gateway: ipv6Address.optional() }).nullable().optional(),
      dns: z.array(ipAddress).optional(),
      routes: z.array(route).optional(),
    })
    .optional(),
  default_bandwidth: bandwidth.optional(),
  limits: z
    .strictObject({
      max_sessions_per_user: positiveInt.optional(),
      max_total_sessions: positiveInt.optional(),
      idle_timeout: duration(1000, '1s').optional(),
      session_timeout: duration(1000, '1s').nullable().optional(),
      at_limit: z.enum(['reject', 'replace_oldest']).optional(),
    })
    .optional(),
  keepalive_interval: duration(100, '100ms').optional(),
  shaping_delay: duration(1, '1ms').optional(),
  shaping: z.enum(['fair', 'fifo']).optional(),
  send_queue_packets: positiveInt.optional(),
  allow_client_to_client: boolean.optional(),
  transports: z.strictObject({ h2: boolean.optional(), h3: z.enum(['auto', 'off']).optional(), quic: z.enum(['auto', 'off']).optional() }).optional(),
  auth_attempts: z.strictObject({ per_source_per_minute: positiveInt.optional() }).optional(),
  connections: z
    .strictObject({
      handshake_timeout: duration(500, '500ms').optional(),
      max_pending: positiveInt.optional(),
      max_pending_per_source: positiveInt.optional(),
    })
    .optional(),
  memory: z.strictObject({ trim_after_freed: size.nullable().optional() }).optional(),
  admin: z
    .strictObject({
      enabled: boolean.optional(),
      listen: ipAddress.optional(),
      port: port.optional(),
      token: z.string().min(16, 'expected a token of at least 16 characters').nullable().optional(),
    })
    .superRefine((admin, ctx) => {
      if (admin.enabled === true && (admin.token ?? null) === null) {
        ctx.addIssue({ code: 'custom', path: ['token'], message: 'required when admin.enabled is true: expected a token of at least 16 characters' });
      }
    })
    .optional(),
  history: z
    .strictObject({
      enabled: boolean.optional(),
      retention_days: z.number().int().min(0).optional(),
      flush_interval: duration(100, '100ms').optional(),
      batch_size: positiveInt.optional(),
      queue_limit: positiveInt.optional(),
      busy_timeout: duration(1, '1ms').optional(),
      rejection_rows_per_hour: positiveInt.optional(),
      backend: z.enum(['sqlite', 'postgres']).optional(),
      postgres: z
        .strictObject({
          url: textField('a URL such as "postgres://quicgate@10.0.0.6:5432/quicgate"', postgresUrl),
          pool_size: z.number().int().min(1).max(100).optional(),
          connect_timeout: duration(1, '1ms').optional(),
          query_timeout: duration(1, '1ms').optional(),
        })
        .optional(),
    })
    .superRefine((h, ctx) => {
      if (h.backend === 'postgres' && h.postgres === undefined) {
        ctx.addIssue({ code: 'custom', path: ['postgres'], message: 'required when history.backend is postgres: expected a mapping with url' });
      }
    })
    .optional(),
  fleet: z
    .strictObject({
      gateway_id: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'expected 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit')
        .optional(),
      redis_url: textField('a URL such as "redis://10.0.0.5:6379/0"', redisUrl),
      key_prefix: z.string().min(1).max(64).optional(),
      lease_interval: duration(1, '1ms').refine((ms) => ms >= 20 && ms <= 1000, 'expected between 20ms and 1s').optional(),
      fallback_share: z.number().gt(0).max(1).optional(),
      session_lease: duration(1000, '1s').optional(),
      address_reserve: z.number().int().min(0).max(4096).optional(),
    })
    .optional(),
  log_level: logLevel.optional(),
  data_dir: path.optional(),
  users_file: path.optional(),
  users: z.array(UserSchema).optional(),
});
export type ServerFile = z.output<typeof ServerFileSchema>;

/**
 * How a change to each server setting takes effect on reload (SIGHUP or POST /api/reload), next to the schema:
 *   live          applied to the running gateway and its sessions at once
 *   new_sessions  applied to sessions opened after the reload (what their assignment carries)
 *   restart       kept at the running value until a restart; a change is reported, never silently dropped
 *   none          not a setting (bookkeeping of the loader)
 * Typed over every field of ServerConfig, so a new setting cannot be added without deciding this.
 * `key` is the name in the YAML file, as reload answers and logs report it.
 */
export type ReloadEffect = 'live' | 'new_sessions' | 'restart' | 'none';

export const RELOAD_EFFECTS: { readonly [K in keyof ServerConfig]: { readonly key: string; readonly effect: ReloadEffect } } = {
  source: { key: '(config file)', effect: 'none' },
  listen: { key: 'listen.address', effect: 'restart' },
  port: { key: 'listen.port', effect: 'restart' },
  tls: { key: 'tls', effect: 'restart' },
  tunName: { key: 'tunnel.name', effect: 'restart' },
  tunOffload: { key: 'tunnel.offload', effect: 'restart' },
  networks: { key: 'tunnel.ipv4/tunnel.ipv6', effect: 'restart' },
  mtu: { key: 'tunnel.mtu', effect: 'restart' },
  dns: { key: 'tunnel.dns', effect: 'new_sessions' },
  routes: { key: 'tunnel.routes', effect: 'new_sessions' },
  defaultBandwidth: { key: 'default_bandwidth', effect: 'live' },
  limits: { key: 'limits', effect: 'live' },
  keepaliveIntervalMs: { key: 'keepalive_interval', effect: 'new_sessions' },
  // The shaping queues are sized and timed with it when a session first shapes; a restart sizes them anew.
  shapingDelayMs: { key: 'shaping_delay', effect: 'restart' },
  // Every live user's scheduler switches at its next packet (registry.setShaping).
  shaping: { key: 'shaping', effect: 'live' },
  // Each connection's send queue is made with it when the transport accepts the session.
  sendQueuePackets: { key: 'send_queue_packets', effect: 'restart' },
  allowClientToClient: { key: 'allow_client_to_client', effect: 'live' },
  transports: { key: 'transports', effect: 'restart' },
  // The connection guard is made with these bounds when the listener starts.
  connections: { key: 'connections', effect: 'restart' },
  // The allocator trimmer is started with it (src/gateway/allocator-trim.ts).
  memory: { key: 'memory', effect: 'restart' },
  authAttempts: { key: 'auth_attempts', effect: 'live' },
  dataDir: { key: 'data_dir', effect: 'restart' },
  admin: { key: 'admin', effect: 'restart' },
  history: { key: 'history', effect: 'restart' },
  logLevel: { key: 'log_level', effect: 'live' },
  // The Redis connection and the lease loops are made once at start.
  fleet: { key: 'fleet', effect: 'restart' },
  gatewayId: { key: 'fleet.gateway_id', effect: 'restart' },
  usersFile: { key: 'users_file', effect: 'live' },
  users: { key: 'users', effect: 'live' },
};

// ---- client --------------------------------------------------------------------------------------------

const serverUrl = textField('a URL such as "https://vpn.example.net:4433/"', (text) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail(`expected a URL such as "https://vpn.example.net:4433/", got ${describeValue(text)}`);
  }
  if (url.protocol !== 'https:') fail(`expected an https:// URL, got ${describeValue(text)}`);
  if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
    fail(`expected only https://host:port/ (no user, path, query or fragment), got ${describeValue(text)}`);
  }
  return `https://${url.hostname}:${url.port || '443'}/`;
});

/** SHA-256 certificate hash in hex, colons allowed ("AB:CD:..."); output lowercase without colons. */
const certHash = textField('a SHA-256 hash as 64 hex digits', (text) => {
  const hex = text.replaceAll(':', '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : fail(`expected a SHA-256 hash as 64 hex digits, got ${describeValue(text)}`);
});

/** "unlimited" or a whole number of attempts (0 = never reconnect). */
const attempts = parsedField('"unlimited" or a whole number', (v): number | 'unlimited' =>
  v === 'unlimited' || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) ? v : fail(`expected "unlimited" or a whole number >= 0, got ${describeValue(v)}`),
);

export const ClientFileSchema = z.strictObject({
  server: serverUrl.optional(),
  user: userName.optional(),
  password: z.string().min(1).optional(),
  password_file: path.optional(),
  transport: z.enum(['auto', 'quic', 'h3', 'h2']).optional(),
  ca_file: path.nullable().optional(),
  pinned_cert_hashes: z.array(certHash).optional(),
  tun_name: interfaceName.optional(),
  tun_offload: boolean.optional(),
  set_dns: boolean.optional(),
  reconnect: z
    .strictObject({
      initial: duration(1, '1ms').optional(),
      max: duration(1, '1ms').optional(),
      max_attempts: attempts.optional(),
    })
    .optional(),
  dead_after_missed_keepalives: z.number().int().min(1).max(100).optional(),
  log_level: logLevel.optional(),
});
export type ClientFile = z.output<typeof ClientFileSchema>;

// ---- schema introspection for messages -----------------------------------------------------------------

/** The keys a strict object accepts at `path` in `schema`, for "unknown key ... did you mean" messages. */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let current: z.ZodType | undefined = unwrap(schema);
  for (const segment of path) {
    if (current instanceof z.ZodObject && typeof segment === 'string') current = current.shape[segment] as z.ZodType | undefined;
    else if (current instanceof z.ZodArray && typeof segment === 'number') current = current.element as z.ZodType;
    else return [];
    current = current === undefined ? undefined : unwrap(current);
  }
  return current instanceof z.ZodObject ? Object.keys(current.shape) : [];
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s: z.ZodType = schema;
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodPipe) s = s.in as z.ZodType;
    else return s;
  }
}

// ---- semantics -----------------------------------------------------------------------------------------

export interface SemanticIssue {
  /** File the value came from (a user may come from the users file). */
  readonly file: string;
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** Where each user of `config.users` was written: file and index in that file's `users:` list. */
export interface UserOrigin {
  readonly file: string;
  readonly index: number;
}

interface Pool {
  readonly family: Family;
  readonly key: 'ipv4' | 'ipv6';
  readonly network: Address4 | Address6;
  readonly gateway: string;
}

function pools(config: ServerConfig): Pool[] {
  const out: Pool[] = [];
  if (config.networks.ipv4) out.push({ family: 4, key: 'ipv4', network: new Address4(config.networks.ipv4.cidr), gateway: config.networks.ipv4.gateway });
  if (config.networks.ipv6) out.push({ family: 6, key: 'ipv6', network: new Address6(config.networks.ipv6.cidr), gateway: config.networks.ipv6.gateway });
  return out;
}

function familyOf(address: string): Family {
  return address.includes(':') ? 6 : 4;
}

/** Why `address` cannot be handed to a client of `pool`, or null when it can. */
function unusableInPool(address: string, pool: Pool): string | null {
  const host = pool.family === 4 ? new Address4(address) : new Address6(address);
  if (!host.isInSubnet(pool.network)) return `outside the tunnel network ${pool.network.address}`;
  if (address === pool.gateway) return `the gateway address of ${pool.network.address}`;
  if (address === pool.network.startAddress().correctForm()) return `the network address of ${pool.network.address}`;
  if (pool.family === 4 && address === pool.network.endAddress().correctForm()) return `the broadcast address of ${pool.network.address}`;
  return null;
}

function addressesOverlap(a: string, b: string): boolean {
  return a === b || a === '0.0.0.0' || b === '0.0.0.0' || a === '::' || b === '::';
}

/** Rules that span fields or files; run on the resolved config. Returns every problem found. */
export function checkServerSemantics(config: ServerConfig, origins: readonly UserOrigin[]): SemanticIssue[] {
  const issues: SemanticIssue[] = [];
  const file = config.source;
  const add = (path: (string | number)[], message: string, at = file): void => void issues.push({ file: at, path, message });
  const poolList = pools(config);

  if (poolList.length === 0) add(['tunnel'], 'expected at least one tunnel network: tunnel.ipv4 and tunnel.ipv6 are both off');
  for (const pool of poolList) {
    const problem = unusableInPool(pool.gateway, { ...pool, gateway: '' });
    if (problem) add(['tunnel', pool.key, 'gateway'], `gateway ${pool.gateway} is ${problem}; expected a host address inside it`);
  }
  if (config.networks.ipv6 && config.mtu < 1280) add(['tunnel', 'mtu'], `expected at least 1280 when IPv6 is on (RFC 8200), got ${config.mtu}`);
  config.routes.forEach((r, i) => {
    if (!poolList.some((p) => p.family === familyOf(r))) {
      add(['tunnel', 'routes', i], `route ${r} is IPv${familyOf(r)} but the tunnel has no IPv${familyOf(r)} network`);
    }
  });
  if (!config.transports.h2 && config.transports.h3 === 'off' && config.transports.quic === 'off') add(['transports'], 'expected at least one transport: h2 is false, h3 and quic are off');
  // Both would bind UDP listen.port: the library's HTTP/3 server and quicgate's own QUIC endpoint cannot share it.
  if (config.transports.h3 === 'auto' && config.transports.quic === 'auto') add(['transports', 'h3'], `expected h3 off while quic is auto (both use UDP port ${config.port}); set transports.quic: off to serve the library's HTTP/3`);
  if (config.tls.certFile === null && config.tls.keyFile !== null) add(['tls', 'cert_file'], 'expected cert_file together with key_file');
  if (config.tls.certFile !== null && config.tls.keyFile === null) add(['tls', 'key_file'], 'expected key_file together with cert_file');
  if (config.limits.idleTimeoutMs <= config.keepaliveIntervalMs) {
    const [idle, keepalive] = [formatDuration(config.limits.idleTimeoutMs), formatDuration(config.keepaliveIntervalMs)];
    add(['limits', 'idle_timeout'], `expected more than keepalive_interval (${keepalive}), got ${idle}`);
  }
  if (config.admin.port === config.port && addressesOverlap(config.admin.listen, config.listen)) {
    add(['admin', 'port'], `port ${config.admin.port} is already used by listen.port`);
  }

  const byName = new Map<string, number>();
  const byAddress = new Map<string, string>();
  config.users.forEach((user: UserConfig, i) => {
    const origin = origins[i] ?? { file, index: i };
    const at = (rest: (string | number)[]): (string | number)[] => ['users', origin.index, ...rest];
    const key = user.name.toLowerCase();
    const first = byName.get(key);
    if (first !== undefined) {
      const other = origins[first] ?? { file, index: first };
      add(at(['name']), `duplicate user name "${user.name}" (also users[${other.index}]); names must be unique, ignoring case`, origin.file);
    } else byName.set(key, i);
    user.staticAddresses.forEach((address, j) => {
      const pool = poolList.find((p) => p.family === familyOf(address));
      const problem = pool ? unusableInPool(address, pool) : `IPv${familyOf(address)} but the tunnel has no IPv${familyOf(address)} network`;
      if (problem) {
        add(at(['static_addresses', j]), `static address ${address} is ${problem}; expected a free host address inside the tunnel network`, origin.file);
        return;
      }
      const owner = byAddress.get(address);
      if (owner !== undefined) add(at(['static_addresses', j]), `static address ${address} is already reserved for user "${owner}"`, origin.file);
      else byAddress.set(address, user.name);
    });
  });
  return issues;
}
