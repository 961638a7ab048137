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

export const recentSessionsQuery = z.object({
  user: z.string().min(1).optional(),
  limit: int.min(1).max(10_000),
  sinceMs: int.optional(),
});
export type RecentSessionsQuery = z.input<typeof recentSessionsQuery>;

export const statsQuery = z.object({
  windowHours: int.min(1).max(24 * 366),
  topUsers: int.min(1).max(1000).default(10),
});
export type StatsQuery = z.input<typeof statsQuery>;

export const recentRejectionsQuery = z.object({ limit: int.min(1).max(10_000), sinceMs: int.optional() });
export type RecentRejectionsQuery = z.input<typeof recentRejectionsQuery>;

const sessionRow = z
  .object({
    id: z.string(),
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

const rejectionRow = z
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
       WHERE (@user IS NULL OR user = @user) AND started_at >= @since
       ORDER BY started_at DESC, id LIMIT @limit`,
    )
    .all({ user: q.user ?? null, since: q.sinceMs ?? Number.MIN_SAFE_INTEGER, limit: q.limit });
  return z.array(sessionRow).parse(rows);
}

export const searchSessionsQuery = z.object({
  sinceMs: int,
  /** Case-insensitive substring of user, id, addresses, peer, transport or close reason; null = all. */
  search: z.string().max(200).nullable(),
  limit: int.min(1).max(10_000),
});
export type SearchSessionsQuery = z.input<typeof searchSessionsQuery>;

/** Sessions started since `sinceMs` matching the search, newest first (the console's searchable list). */
export function searchSessions(db: SqliteDatabase, query: SearchSessionsQuery): SessionHistoryRow[] {
  const q = searchSessionsQuery.parse(query);
  // LIKE with an escape character, so "%" and "_" in the search are literal.
  const pattern = q.search === null || q.search === '' ? null : `%${q.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const rows = db
    .prepare(
      `SELECT * FROM sessions
       WHERE started_at >= @since AND (@pattern IS NULL
         OR user LIKE @pattern ESCAPE '\\' OR id LIKE @pattern ESCAPE '\\' OR ipv4 LIKE @pattern ESCAPE '\\'
         OR ipv6 LIKE @pattern ESCAPE '\\' OR peer LIKE @pattern ESCAPE '\\' OR transport LIKE @pattern ESCAPE '\\'
         OR close_reason LIKE @pattern ESCAPE '\\')
       ORDER BY started_at DESC, id LIMIT @limit`,
    )
    .all({ since: q.sinceMs, pattern, limit: q.limit });
  return z.array(sessionRow).parse(rows);
}

export interface HourlyRow {
  /** Start of the UTC hour, wall ms. */
  readonly hourMs: number;
  readonly sessions: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** Per UTC hour of the window (every hour present, zeros included): sessions started and bytes each way. */
export function hourlySeries(db: SqliteDatabase, windowHours: number, wallNowMs: number): HourlyRow[] {
  const hours = int.min(1).max(24 * 366).parse(windowHours);
  const lastHour = Math.floor(wallNowMs / HOUR_MS) * HOUR_MS;
  const firstHour = lastHour - (hours - 1) * HOUR_MS;
  const started = z.array(z.object({ hour_ms: int, n: count })).parse(
    db
      .prepare(`SELECT (started_at / ${HOUR_MS}) * ${HOUR_MS} AS hour_ms, COUNT(*) AS n FROM sessions WHERE started_at >= ? GROUP BY 1`)
      .all(firstHour),
  );
  const traffic = z.array(z.object({ hour_ms: int, bytes_in: count, bytes_out: count })).parse(
    db
      .prepare('SELECT hour_ms, SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out FROM traffic_hourly WHERE hour_ms >= ? GROUP BY hour_ms')
      .all(firstHour),
  );
  const byHour = new Map<number, { sessions: number; bytesIn: number; bytesOut: number }>();
  for (let h = firstHour; h <= lastHour; h += HOUR_MS) byHour.set(h, { sessions: 0, bytesIn: 0, bytesOut: 0 });
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

export function recentRejections(db: SqliteDatabase, query: RecentRejectionsQuery): RejectionRow[] {
  const q = recentRejectionsQuery.parse(query);
  const rows = db
    .prepare(
      `SELECT user, source, reason, hour_ms, count, first_at, last_at FROM rejection_counts
       WHERE last_at >= ? ORDER BY last_at DESC, source, reason LIMIT ?`,
    )
    .all(q.sinceMs ?? Number.MIN_SAFE_INTEGER, q.limit);
  return z.array(rejectionRow).parse(rows);
}

export function windowStats(db: SqliteDatabase, query: StatsQuery, wallNowMs: number): HistoryStats {
  const q = statsQuery.parse(query);
  const sinceMs = Math.floor(wallNowMs - q.windowHours * HOUR_MS);
  const fromHour = Math.floor(sinceMs / HOUR_MS) * HOUR_MS;

  const started = z
    .object({ n: count })
    .parse(db.prepare('SELECT COUNT(*) AS n FROM sessions WHERE started_at >= ?').get(sinceMs));
  const traffic = z
    .object({ bytes_in: count, bytes_out: count })
    .parse(
      db
        .prepare(
          'SELECT COALESCE(SUM(bytes_in), 0) AS bytes_in, COALESCE(SUM(bytes_out), 0) AS bytes_out FROM traffic_hourly WHERE hour_ms >= ?',
        )
        .get(fromHour),
    );
  const top = z.array(z.object({ user: z.string(), bytes_in: count, bytes_out: count })).parse(
    db
      .prepare(
        `SELECT user, SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out FROM traffic_hourly
         WHERE hour_ms >= ? GROUP BY user ORDER BY SUM(bytes_in) + SUM(bytes_out) DESC, user LIMIT ?`,
      )
      .all(fromHour, q.topUsers),
  );
  // Counted per whole UTC hour, like the traffic.
  const rejections = z.array(z.object({ reason: z.enum(REJECT_REASONS), n: count })).parse(
    db.prepare('SELECT reason, SUM(count) AS n FROM rejection_counts WHERE hour_ms >= ? GROUP BY reason').all(fromHour),
  );
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

const usageRow = z.object({
  sessions: count,
  open_sessions: count,
  bytes_in: count,
  packets_in: count,
  bytes_out: count,
  packets_out: count,
  first_started_at: int.nullable(),
  last_started_at: int.nullable(),
});

/** All-time totals of the user's stored sessions (open ones as of their last flush). */
export function userUsage(db: SqliteDatabase, user: string): UserUsage {
  const r = usageRow.parse(
    db
      .prepare(
        `SELECT COUNT(*) AS sessions, COALESCE(SUM(status = 'open'), 0) AS open_sessions,
           COALESCE(SUM(bytes_in), 0) AS bytes_in, COALESCE(SUM(packets_in), 0) AS packets_in,
           COALESCE(SUM(bytes_out), 0) AS bytes_out, COALESCE(SUM(packets_out), 0) AS packets_out,
           MIN(started_at) AS first_started_at, MAX(started_at) AS last_started_at
         FROM sessions WHERE user = ?`,
      )
      .get(user),
  );
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
