/**
 * The admin API's response shapes as zod schemas: the one description of what the API answers. The view
 * types in backend.ts are inferred from these, and openapi.ts derives its component schemas from them
 * (z.toJSONSchema over the registry below), so the OpenAPI document cannot drift from the code.
 */
import { z } from 'zod';
import { END_REASONS, REJECT_REASONS } from '../gateway/session.js';

/** Schemas registered here become `#/components/schemas/<id>` in the OpenAPI document. */
export const apiSchemas = z.registry<{ id: string; description?: string }>();

const count = z.number().int().nonnegative();
const bytes = count;
const rate = z.number().nonnegative().describe('Bytes per second.');
const isoTime = z.iso.datetime();
const answeringGateway = z.string().describe('The gateway that answered (fleet.gateway_id, else its host name).');
const historyScope = z
  .enum(['fleet', 'gateway', 'memory'])
  .describe(
    "fleet: the PostgreSQL history every gateway of the fleet writes (every gateway's rows, or those of the gateway ?gateway= names); " +
      "gateway: this gateway's own SQLite history (other gateways' rows are not in it); memory: the history is disabled or degraded, so this process's counters since it started.",
  );
const liveScope = z
  .enum(['fleet', 'gateway'])
  .describe("fleet: the live sessions of every gateway (config fleet, Redis answered); gateway: this gateway's only (no fleet, or Redis unreachable).");

/** Whose figures a user's view holds (also parsed by the CLI). */
export const userScopeSchema = z
  .object({ gateway: answeringGateway, sessions: liveScope.describe(`sessions, rateIn, rateOut. ${liveScope.description}`), usage: historyScope })
  .describe('Whose figures these are.');

/** Whose figures the stats hold (also parsed by the CLI). */
export const statsScopeSchema = z
  .object({
    gateway: answeringGateway,
    history: historyScope.describe(`sessionsInWindow, bytesInWindow, topUsers, rejections. ${historyScope.description}`),
    live: liveScope.describe(`activeSessions, activeUsers (?gateway= filters them too). ${liveScope.description}`),
  })
  .describe('Whose figures these are.');

export const errorCodeSchema = z.enum([
  'QG_ERR_ADMIN_UNAUTHORIZED',
  'QG_ERR_ADMIN_FORBIDDEN',
  'QG_ERR_ADMIN_BAD_REQUEST',
  'QG_ERR_ADMIN_NOT_FOUND',
  'QG_ERR_ADMIN_UNAVAILABLE',
  'QG_ERR_SESSION_NOT_FOUND',
  'QG_ERR_USER_NOT_FOUND',
  'QG_ERR_CONFIG_INVALID',
  'QG_ERR_RELOAD_FAILED',
  'QG_ERR_ADMIN_INTERNAL',
  'QG_ERR_FLEET_UNAVAILABLE',
  'QG_ERR_FLEET_UNREACHABLE',
  'QG_ERR_FLEET_TIMEOUT',
]);

export const errorSchema = z
  .object({
    error: z.object({
      code: errorCodeSchema,
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .register(apiSchemas, { id: 'Error' });

export const sessionViewSchema = z
  .object({
    id: z.string(),
    user: z.string(),
    ipv4: z.string().nullable().describe('Tunnel IPv4 address.'),
    ipv6: z.string().nullable().describe('Tunnel IPv6 address.'),
    peer: z.string().describe('Client address as "ip:port".'),
    transport: z.enum(['h3', 'h2', 'quic', 'memory']),
    startedAt: isoTime,
    lastActivityAt: isoTime,
    bytesIn: bytes.describe('Client to gateway.'),
    bytesOut: bytes.describe('Gateway to client.'),
    packetsIn: count,
    packetsOut: count,
    rateIn: rate.describe('Bytes per second over the last few seconds, client to gateway.'),
    rateOut: rate.describe('Bytes per second over the last few seconds, gateway to client.'),
    gateway: z
      .string()
      .optional()
      .describe("The gateway that owns the session (config fleet only). Another gateway's counters and rates are as of its last lease renewal."),
  })
  .register(apiSchemas, { id: 'Session' });

export const fleetListInfoSchema = z
  .object({
    gateway: z.string().describe('The gateway that answered.'),
    gateways: z.array(z.string()).describe('Gateways with a live lease whose sessions are listed.'),
    complete: z.boolean().describe("False when Redis could not be reached: only the answering gateway's sessions are listed."),
    error: z.string().optional(),
  })
  .register(apiSchemas, { id: 'FleetListInfo' });

export const sessionListSchema = z
  .object({
    sessions: z.array(sessionViewSchema),
    fleet: fleetListInfoSchema.optional().describe('Only with config fleet.'),
  })
  .register(apiSchemas, { id: 'SessionList' });

export const quotaViewSchema = z
  .object({
    bytes,
    period: z.enum(['day', 'month']),
    periodKey: z.string(),
    used: bytes,
    remaining: bytes,
    action: z.enum(['disconnect', 'throttle']),
    exceeded: z.boolean(),
  })
  .register(apiSchemas, { id: 'Quota' });

export const userViewSchema = z
  .object({
    name: z.string(),
    disabled: z.boolean(),
    bandwidth: count.nullable().describe('Limit in bytes per second; null = unlimited.'),
    burst: count.nullable(),
    rateIn: rate,
    rateOut: rate,
    maxSessions: count,
    sessions: z.array(sessionViewSchema),
    usage: z.object({ sessions: count, bytesIn: bytes, bytesOut: bytes }).describe('All time: history plus live sessions.'),
    quota: quotaViewSchema.nullable(),
    scope: userScopeSchema,
  })
  .register(apiSchemas, { id: 'User' });

const rejectionCounts = z.partialRecord(z.enum(REJECT_REASONS), count);

export const statsViewSchema = z
  .object({
    windowHours: count,
    activeSessions: count,
    activeUsers: count,
    sessionsInWindow: count,
    bytesInWindow: z.object({ in: bytes, out: bytes }),
    topUsers: z.array(z.object({ user: z.string(), bytes })),
    rejections: rejectionCounts.describe('Refused session requests in the window, by reason.'),
    scope: statsScopeSchema,
  })
  .register(apiSchemas, { id: 'Stats' });

export const healthViewSchema = z
  .object({
    status: z.enum(['ok', 'degraded']),
    uptimeSeconds: z.number().nonnegative(),
    checks: z.object({
      tun: z.enum(['ok', 'down']),
      listener: z.enum(['ok', 'down']),
      history: z.enum(['ok', 'degraded', 'disabled']),
      historyError: z.string().nullable().optional(),
    }),
  })
  .register(apiSchemas, { id: 'Health', description: 'Without a token only `status` is sent.' });

export const reloadResultSchema = z
  .object({
    bandwidthChanged: z.array(z.string()),
    usersRemoved: z.array(z.string()),
    sessionsClosed: count,
    needRestart: z.array(z.string()).describe('Settings that apply only after a restart.'),
    changed: z
      .array(
        z.object({
          key: z.string().describe('The key in the config file, e.g. shaping_delay.'),
          effect: z.enum(['live', 'new_sessions', 'restart']),
        }),
      )
      .describe('Every setting that differs from the running config, with how it took effect.'),
  })
  .register(apiSchemas, { id: 'ReloadResult' });

// ── added for the web console ────────────────────────────────────────────────────────────────────────

export const userSummarySchema = z
  .object({
    name: z.string(),
    disabled: z.boolean(),
    bandwidth: count.nullable().describe('Limit in bytes per second; null = unlimited.'),
    rateIn: rate,
    rateOut: rate,
    sessions: count.describe('Live sessions.'),
    maxSessions: count,
    quota: quotaViewSchema.nullable(),
  })
  .register(apiSchemas, { id: 'UserSummary' });

export const overviewViewSchema = z
  .object({
    at: isoTime.describe('When this snapshot was taken.'),
    sessions: z.array(sessionViewSchema),
    users: z.array(userSummarySchema).describe('Every configured user, with or without live sessions.'),
    gateway: z.object({
      id: answeringGateway,
      fleet: z.boolean().describe("Part of a fleet (config fleet): this snapshot is still this gateway's alone; GET /api/sessions and the history list the fleet."),
      historyBackend: z.enum(['sqlite', 'postgres']).describe('history.backend: postgres is shared by the fleet.'),
      status: z.enum(['ok', 'degraded']),
      uptimeSeconds: z.number().nonnegative(),
      history: z.enum(['ok', 'degraded', 'disabled']),
      historyError: z.string().nullable(),
      certificateNotAfter: isoTime.nullable().describe('Expiry of the server certificate the tunnel listener presents.'),
      sessions: count,
      maxSessions: count.describe('limits.max_total_sessions'),
      drops: z.record(z.string(), count).describe('Packets dropped since start, by reason.'),
    }),
  })
  .register(apiSchemas, { id: 'Overview' });

export const fleetViewSchema = z
  .object({
    enabled: z.boolean().describe('Whether this gateway is part of a fleet (config `fleet`).'),
    gatewayId: z.string().describe('fleet.gateway_id (the host name when not set).'),
    link: z.enum(['up', 'down']).nullable().describe('The Redis link; null alone.'),
    linkSince: isoTime.nullable().describe('When the link last went up or down.'),
    rate: z
      .object({
        state: z.enum(['shared', 'fallback']).describe('fallback: lease rounds fail, every user at fallback_share of their limit.'),
        users: count.describe('Connected limited users in the last lease round.'),
        roundsOk: count,
        roundsFailed: count,
        roundsSkipped: count.describe('Ticks skipped while the previous round was in flight.'),
        lastRoundMs: z.number().describe('Duration of the last round (-1 before the first).'),
      })
      .nullable(),
    addresses: z
      .object({
        held: z
          .array(z.object({ address: z.string(), user: z.string(), session: z.string() }))
          .describe("Tunnel addresses this gateway's sessions hold: what its host routes announce (docs/fleet.md, Addresses)."),
        reserve: count.describe('Address pairs claimed ahead for a Redis outage.'),
        claims: count,
        conflicts: count.describe('Claims another gateway had won; the next address was tried.'),
        fallbacks: count.describe('Sessions that got a reserve pair (Redis down, settling or slow).'),
        reserveEmpty: count.describe('Sessions refused: Redis unreachable and the reserve spent.'),
        renewConflicts: count.describe('Sessions ended because another gateway held their address at renewal.'),
      })
      .nullable()
      .describe('Fleet-wide tunnel addresses; null alone.'),
  })
  .register(apiSchemas, { id: 'Fleet' });

export const hourlyViewSchema = z
  .object({
    windowHours: count,
    available: z.boolean().describe('False when the history is disabled or degraded (hours is then empty).'),
    hours: z.array(
      z.object({
        hour: isoTime.describe('Start of the UTC hour.'),
        sessions: count.describe('Sessions started in this hour.'),
        bytesIn: bytes,
        bytesOut: bytes,
      }),
    ),
  })
  .register(apiSchemas, { id: 'HourlyHistory' });

export const pastSessionSchema = z
  .object({
    id: z.string(),
    user: z.string(),
    ipv4: z.string().nullable(),
    ipv6: z.string().nullable(),
    peer: z.string(),
    transport: z.string(),
    startedAt: isoTime,
    endedAt: isoTime.nullable().describe('Null while the session is still open.'),
    durationSeconds: z.number().nonnegative().nullable(),
    bytesIn: bytes,
    bytesOut: bytes,
    status: z.enum(['open', 'closed']),
    endReason: z.enum(END_REASONS).nullable(),
    endMessage: z.string().nullable(),
    gateway: z.string().describe('The gateway that carried the session (fleet.gateway_id, else its host name).'),
  })
  .register(apiSchemas, { id: 'PastSession' });

export const pastSessionsViewSchema = z
  .object({ available: z.boolean(), sessions: z.array(pastSessionSchema) })
  .register(apiSchemas, { id: 'PastSessions' });

export const userUpdateResultSchema = z
  .object({
    user: z.string(),
    file: z.string().describe('The users file that was edited (the source of truth).'),
    changes: z.array(z.string()).describe('What changed, e.g. "bandwidth 10 Mbit/s -> 5 Mbit/s"; empty when nothing did.'),
    reload: reloadResultSchema.nullable().describe('The reload that applied it; null when nothing changed.'),
  })
  .register(apiSchemas, { id: 'UserUpdateResult' });

export const consoleSessionSchema = z
  .object({
    csrfToken: z.string().describe('Send as X-CSRF-Token on every POST, PATCH and DELETE made with the cookie.'),
    expiresAt: isoTime,
  })
  .register(apiSchemas, { id: 'ConsoleSession' });
