/**
 * Read queries for the admin API and CLI. Rows coming out of the file are parsed with zod: the file is an
 * edge (older versions, manual edits), and these run on the admin path, not the forwarding path.
 */
import { z } from 'zod';
import { END_REASONS, REJECT_REASONS } from '../gateway/session.js';
import type { HistoryStats, RejectionRow, SessionHistoryRow, UserTraffic, UserUsage } from './records.js';
import type { SqliteDatabase } from './sqlite.js';

const HOUR_MS = 3_600_000;
const int = z.number().int();
const count = int.nonnegative();

/** Only this gateway's rows; absent or null: the whole fleet (all gateways writing to the database). */
const gatewayFilter = z.string().min(1).nullable().optional();

export const recentSessionsQuery = z.object({
  user: z.string().min(1).optional(),
  gatewayId: gatewayFilter,
  limit: int.min(1).max(10_000),
  sinceMs: int.optional(),
});
export type RecentSessionsQuery = z.input<typeof recentSessionsQuery>;

export const statsQuery = z.object({
  windowHours: int.min(1).max(24 * 366),
  topUsers: int.min(1).max(1000).default(10),
  gatewayId: gatewayFilter,
});
export type StatsQuery = z.input<typeof statsQuery>;

export const recentRejectionsQuery = z.object({ limit: int.min(1).max(10_000), sinceMs: int.optional(), gatewayId: gatewayFilter });
export type RecentRejectionsQuery = z.input<typeof recentRejectionsQuery>;

export const sessionRow = z
  .object({
    id: z.string(),
    gateway_id: z.string(),
    user: z.string(),
    ipv4: z.string().nullable(),
    ipv6: z.string().nullable(),
    peer: z.string(),
    transport: z.string(),
    started_at: int,
    ended_at: int.nullable(),
    duration_ms: int.nullable(),
    bytes_in: count,
    packets_in: count,
    bytes_out: count,
    packets_out: count,
    status: z.enum(['open', 'closed']),
    close_reason: z.enum(END_REASONS).nullable(),
    close_message: z.string().nullable(),
    updated_at: int,
  })
  .transform(
    (r): SessionHistoryRow => ({
      id: r.id,
      gatewayId: r.gateway_id,
      user: r.user,
      ipv4: r.ipv4,
      ipv6: r.ipv6,
      peer: r.peer,
      transport: r.transport,
      startedAt: r.started_at,
      endedAt: r.ended_at,
      durationMs: r.duration_ms,
      bytesIn: r.bytes_in,
      packetsIn: r.packets_in,
      bytesOut: r.bytes_out,
      packetsOut: r.packets_out,
      status: r.status,
      closeReason: r.close_reason,
      closeMessage: r.close_message,
      updatedAt: r.updated_at,
    }),
  );

export const rejectionRow = z
  .object({
    user: z.string().nullable(),
    source: z.string(),
    reason: z.enum(REJECT_REASONS),
    hour_ms: int,
    count: count.min(1),
    first_at: int,
    last_at: int,
  })
  .transform(
    (r): RejectionRow => ({
      user: r.user,
      source: r.source,
      reason: r.reason,
      hourMs: r.hour_ms,
      count: r.count,
      firstAt: r.first_at,
      at: r.last_at,
    }),
  );

export function recentSessions(db: SqliteDatabase, query: RecentSessionsQuery): SessionHistoryRow[] {
  const q = recentSessionsQuery.parse(query);
  const rows = db
    .prepare(
      `SELECT * FROM sessions
       WHERE (@user IS NULL OR user = @user) AND (@gateway IS NULL OR gateway_id = @gateway) AND started_at >= @since
       ORDER BY started_at DESC, id LIMIT @limit`,
    )
    .all({ user: q.user ?? null, gateway: q.gatewayId ?? null, since: q.sinceMs ?? Number.MIN_SAFE_INTEGER, limit: q.limit });
  return z.array(sessionRow).parse(rows);
}

export const searchSessionsQuery = z.object({
  sinceMs: int,
  /** Case-insensitive substring of user, id, addresses, peer, transport or close reason; null = all. */
  search: z.string().max(200).nullable(),
  limit: int.min(1).max(10_000),
  gatewayId: gatewayFilter,
});
export type SearchSessionsQuery = z.input<typeof searchSessionsQuery>;

/** Sessions started since `sinceMs` matching the search, newest first (the console's searchable list). */
export function searchSessions(db: SqliteDatabase, query: SearchSessionsQuery): SessionHistoryRow[] {
  const q = searchSessionsQuery.parse(query);
  const rows = db
    .prepare(
      `SELECT * FROM sessions
       WHERE started_at >= @since AND (@gateway IS NULL OR gateway_id = @gateway) AND (@pattern IS NULL
         OR user LIKE @pattern ESCAPE '\\' OR id LIKE @pattern ESCAPE '\\' OR ipv4 LIKE @pattern ESCAPE '\\'
         OR ipv6 LIKE @pattern ESCAPE '\\' OR peer LIKE @pattern ESCAPE '\\' OR transport LIKE @pattern ESCAPE '\\'
         OR close_reason LIKE @pattern ESCAPE '\\' OR gateway_id LIKE @pattern ESCAPE '\\')
       ORDER BY started_at DESC, id LIMIT @limit`,
    )
    .all({ since: q.sinceMs, gateway: q.gatewayId ?? null, pattern: likePattern(q.search), limit: q.limit });
  return z.array(sessionRow).parse(rows);
}

/** LIKE pattern for a substring search with "\\" as the escape character, so "%" and "_" are literal; null = all. */
export function likePattern(search: string | null): string | null {
  return search === null || search === '' ? null : `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export interface HourlyRow {
  /** Start of the UTC hour, wall ms. */
  readonly hourMs: number;
  readonly sessions: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export const hourlyWindow = int.min(1).max(24 * 366);

/** First and last UTC hour (wall ms) of a window of `hours` hours ending with the current one. */
export function hourRange(hours: number, wallNowMs: number): { firstHour: number; lastHour: number } {
  const lastHour = Math.floor(wallNowMs / HOUR_MS) * HOUR_MS;
  return { firstHour: lastHour - (hours - 1) * HOUR_MS, lastHour };
}

const startedPerHour = z.array(z.object({ hour_ms: int, n: count }));
const trafficPerHour = z.array(z.object({ hour_ms: int, bytes_in: count, bytes_out: count }));

/** Every hour of the range, zeros included, from the rows of sessions started and traffic per hour. */
export function hourlyRows(range: { firstHour: number; lastHour: number }, startedRows: unknown, trafficRows: unknown): HourlyRow[] {
  const started = startedPerHour.parse(startedRows);
  const traffic = trafficPerHour.parse(trafficRows);
  const byHour = new Map<number, { sessions: number; bytesIn: number; bytesOut: number }>();
  for (let h = range.firstHour; h <= range.lastHour; h += HOUR_MS) byHour.set(h, { sessions: 0, bytesIn: 0, bytesOut: 0 });
  for (const r of started) {
    const row = byHour.get(r.hour_ms);
    if (row !== undefined) row.sessions = r.n;
  }
  for (const r of traffic) {
    const row = byHour.get(r.hour_ms);
    if (row !== undefined) {
      row.bytesIn = r.bytes_in;
      row.bytesOut = r.bytes_out;
    }
  }
  return [...byHour].map(([hourMs, r]) => ({ hourMs, ...r }));
}

/** Per UTC hour of the window (every hour present, zeros included): sessions started and bytes each way. */
export function hourlySeries(db: SqliteDatabase, windowHours: number, wallNowMs: number, gatewayId: string | null = null): HourlyRow[] {
  const range = hourRange(hourlyWindow.parse(windowHours), wallNowMs);
  const params = { first: range.firstHour, gateway: gatewayId };
  const started = db
    .prepare(
      `SELECT (started_at / ${HOUR_MS}) * ${HOUR_MS} AS hour_ms, COUNT(*) AS n FROM sessions
       WHERE started_at >= @first AND (@gateway IS NULL OR gateway_id = @gateway) GROUP BY 1`,
    )
    .all(params);
  const traffic = db
    .prepare(
      `SELECT hour_ms, SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out FROM traffic_hourly
       WHERE hour_ms >= @first AND (@gateway IS NULL OR gateway_id = @gateway) GROUP BY hour_ms`,
    )
    .all(params);
  return hourlyRows(range, started, traffic);
}

export function recentRejections(db: SqliteDatabase, query: RecentRejectionsQuery): RejectionRow[] {
  const q = recentRejectionsQuery.parse(query);
  const rows = db
    .prepare(
      `SELECT MAX(user) AS user, source, reason, hour_ms, SUM(count) AS count, MIN(first_at) AS first_at, MAX(last_at) AS last_at
       FROM rejection_counts WHERE last_at >= @since AND (@gateway IS NULL OR gateway_id = @gateway)
       GROUP BY source, reason, hour_ms ORDER BY MAX(last_at) DESC, source, reason LIMIT @limit`,
    )
    .all({ since: q.sinceMs ?? Number.MIN_SAFE_INTEGER, gateway: q.gatewayId ?? null, limit: q.limit });
  return z.array(rejectionRow).parse(rows);
}

/** Start of a stats window and of the UTC hour that contains it. */
export function statsWindow(windowHours: number, wallNowMs: number): { sinceMs: number; fromHour: number } {
  const sinceMs = Math.floor(wallNowMs - windowHours * HOUR_MS);
  return { sinceMs, fromHour: Math.floor(sinceMs / HOUR_MS) * HOUR_MS };
}

/** The stats answer from the rows of its four queries. */
export function statsResult(
  q: z.output<typeof statsQuery>,
  sinceMs: number,
  rows: { readonly started: unknown; readonly traffic: unknown; readonly top: unknown; readonly rejections: unknown },
): HistoryStats {
  const started = z.object({ n: count }).parse(rows.started);
  const traffic = z.object({ bytes_in: count, bytes_out: count }).parse(rows.traffic);
  const top = z.array(z.object({ user: z.string(), bytes_in: count, bytes_out: count })).parse(rows.top);
  const rejections = z.array(z.object({ reason: z.enum(REJECT_REASONS), n: count })).parse(rows.rejections);
  const topUsers: UserTraffic[] = top.map((t) => ({ user: t.user, bytesIn: t.bytes_in, bytesOut: t.bytes_out }));
  return {
    windowHours: q.windowHours,
    sinceMs,
    sessionsStarted: started.n,
    bytesIn: traffic.bytes_in,
    bytesOut: traffic.bytes_out,
    topUsers,
    rejectionsByReason: Object.fromEntries(rejections.map((r) => [r.reason, r.n])),
  };
}

export function windowStats(db: SqliteDatabase, query: StatsQuery, wallNowMs: number): HistoryStats {
  const q = statsQuery.parse(query);
  const { sinceMs, fromHour } = statsWindow(q.windowHours, wallNowMs);
  const gw = '(@gateway IS NULL OR gateway_id = @gateway)';
  const p = { since: sinceMs, from: fromHour, gateway: q.gatewayId ?? null, top: q.topUsers };
  return statsResult(q, sinceMs, {
    started: db.prepare(`SELECT COUNT(*) AS n FROM sessions WHERE started_at >= @since AND ${gw}`).get(p),
    traffic: db
      .prepare(
        `SELECT COALESCE(SUM(bytes_in), 0) AS bytes_in, COALESCE(SUM(bytes_out), 0) AS bytes_out FROM traffic_hourly WHERE hour_ms >= @from AND ${gw}`,
      )
      .get(p),
    top: db
      .prepare(
        `SELECT user, SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out FROM traffic_hourly
         WHERE hour_ms >= @from AND ${gw} GROUP BY user ORDER BY SUM(bytes_in) + SUM(bytes_out) DESC, user LIMIT @top`,
      )
      .all(p),
    // Counted per whole UTC hour, like the traffic.
    rejections: db.prepare(`SELECT reason, SUM(count) AS n FROM rejection_counts WHERE hour_ms >= @from AND ${gw} GROUP BY reason`).all(p),
  });
}

export const usageRow = z.object({
  sessions: count,
  open_sessions: count,
  bytes_in: count,
  packets_in: count,
  bytes_out: count,
  packets_out: count,
  first_started_at: int.nullable(),
  last_started_at: int.nullable(),
});

/** The UserUsage answer from its row. */
export function userUsageResult(user: string, row: unknown): UserUsage {
  const r = usageRow.parse(row);
  return {
    user,
    sessions: r.sessions,
    openSessions: r.open_sessions,
    bytesIn: r.bytes_in,
    packetsIn: r.packets_in,
    bytesOut: r.bytes_out,
    packetsOut: r.packets_out,
    firstStartedAt: r.first_started_at,
    lastStartedAt: r.last_started_at,
  };
}

/** All-time totals of the user's stored sessions (open ones as of their last flush), fleet-wide. */
export function userUsage(db: SqliteDatabase, user: string): UserUsage {
  return userUsageResult(user, db.prepare(`SELECT ${USER_USAGE_COLUMNS} FROM sessions WHERE user = ?`).get(user));
}

/** The columns of the user usage row; the same SQL on SQLite and PostgreSQL. */
export const USER_USAGE_COLUMNS = `COUNT(*) AS sessions, COUNT(*) FILTER (WHERE status = 'open') AS open_sessions,
  COALESCE(SUM(bytes_in), 0) AS bytes_in, COALESCE(SUM(packets_in), 0) AS packets_in,
  COALESCE(SUM(bytes_out), 0) AS bytes_out, COALESCE(SUM(packets_out), 0) AS packets_out,
  MIN(started_at) AS first_started_at, MAX(started_at) AS last_started_at`;
