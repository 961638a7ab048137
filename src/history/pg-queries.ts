/**
 * The history's statements on PostgreSQL: the batch ops (writer.ts plans them), the read queries of the admin
 * API and console (parsed and assembled by the same code as SQLite's: queries.ts), retention, quota rows and
 * closing a gateway's open sessions. Fleet-wide unless a gateway id is given.
 */
import type { Pool, PoolClient } from 'pg';
import { z } from 'zod';
import type { QuotaRow } from './engine.js';
import {
  hourRange,
  hourlyRows,
  hourlyWindow,
  likePattern,
  recentRejectionsQuery,
  recentSessionsQuery,
  rejectionRow,
  searchSessionsQuery,
  sessionRow,
  statsQuery,
  statsResult,
  statsWindow,
  userUsageResult,
  USER_USAGE_COLUMNS,
  type HourlyRow,
  type RecentRejectionsQuery,
  type RecentSessionsQuery,
  type SearchSessionsQuery,
  type StatsQuery,
} from './queries.js';
import type { HistoryStats, RejectionRow, SessionHistoryRow, UserUsage } from './records.js';
import { liveEntries, type OpenRow } from './resume.js';
import type { RetentionResult } from './retention.js';
import { DAY_MS, HOUR_MS, QUOTA_MIN_KEEP_MS } from './retention.js';
import type { BatchOp, LiveEntry } from './writer.js';

type Queryable = Pool | PoolClient;

/** Runs one planned op; named statements are prepared once per connection by pg. */
export async function runOp(client: PoolClient, gatewayId: string, op: BatchOp): Promise<void> {
  switch (op.op) {
    case 'insertSession': {
      const r = op.row;
      await client.query({
        name: 'qg_insert_session',
        text: `INSERT INTO sessions (id, gateway_id, "user", ipv4, ipv6, peer, transport, started_at, status, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $8) ON CONFLICT (id) DO NOTHING`,
        values: [r.id, gatewayId, r.user, r.ipv4, r.ipv6, r.peer, r.transport, r.startedAt],
      });
      return;
    }
    case 'updateCounters':
      await updateCountersMany(client, [op.row]);
      return;
    case 'endSession': {
      const r = op.row;
      await client.query({
        name: 'qg_end_session',
        text: `UPDATE sessions SET status = 'closed', ended_at = $2, duration_ms = GREATEST(0, $2 - started_at),
                 bytes_in = $3, packets_in = $4, bytes_out = $5, packets_out = $6, close_reason = $7, close_message = $8,
                 updated_at = $2
               WHERE id = $1 AND status = 'open'`,
        values: [r.id, r.endedAt, r.bytesIn, r.packetsIn, r.bytesOut, r.packetsOut, r.reason, r.message],
      });
      return;
    }
    case 'addTraffic': {
      const r = op.row;
      await client.query({
        name: 'qg_add_traffic',
        text: `INSERT INTO traffic_hourly ("user", hour_ms, gateway_id, bytes_in, bytes_out) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT ("user", hour_ms, gateway_id) DO UPDATE SET bytes_in = traffic_hourly.bytes_in + EXCLUDED.bytes_in,
                 bytes_out = traffic_hourly.bytes_out + EXCLUDED.bytes_out`,
        values: [r.user, r.hourMs, gatewayId, r.bytesIn, r.bytesOut],
      });
      return;
    }
    case 'addQuota': {
      const r = op.row;
      await client.query({
        name: 'qg_add_quota',
        text: `INSERT INTO quota_usage ("user", period_key, bytes, updated_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT ("user", period_key) DO UPDATE SET bytes = quota_usage.bytes + EXCLUDED.bytes,
                 updated_at = GREATEST(quota_usage.updated_at, EXCLUDED.updated_at)`,
        values: [r.user, r.periodKey, r.bytes, r.at],
      });
      return;
    }
    case 'addRejections': {
      const r = op.row;
      await client.query({
        name: 'qg_add_rejections',
        text: `INSERT INTO rejection_counts (source, reason, hour_ms, gateway_id, "user", count, first_at, last_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (source, reason, hour_ms, gateway_id) DO UPDATE SET count = rejection_counts.count + EXCLUDED.count,
                 first_at = LEAST(rejection_counts.first_at, EXCLUDED.first_at),
                 last_at = GREATEST(rejection_counts.last_at, EXCLUDED.last_at),
                 "user" = COALESCE(EXCLUDED."user", rejection_counts."user")`,
        values: [r.source, r.reason, r.hourMs, gatewayId, r.user, r.count, r.firstAt, r.lastAt],
      });
      return;
    }
  }
}

/** Many live sessions' counters in one statement (what the updateCounters op does, row by row, on SQLite). */
export async function updateCountersMany(client: PoolClient, rows: readonly Extract<BatchOp, { op: 'updateCounters' }>['row'][]): Promise<void> {
  await client.query({
    name: 'qg_update_counters_many',
    text: `UPDATE sessions AS s SET bytes_in = v.bytes_in, packets_in = v.packets_in, bytes_out = v.bytes_out,
             packets_out = v.packets_out, updated_at = v.at
           FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
             AS v(id, bytes_in, packets_in, bytes_out, packets_out, at)
           WHERE s.id = v.id AND s.status = 'open'`,
    values: [rows.map((r) => r.id), rows.map((r) => r.bytesIn), rows.map((r) => r.packetsIn), rows.map((r) => r.bytesOut), rows.map((r) => r.packetsOut), rows.map((r) => r.at)],
  });
}

const quotaRows = z.array(z.object({ user: z.string(), period_key: z.string(), bytes: z.number().int().nonnegative() }));

/** The fleet's stored usage of the period keys (exactly these keys). */
export async function quotaRowsOfKeys(db: Queryable, keys: readonly string[]): Promise<QuotaRow[]> {
  if (keys.length === 0) return [];
  const { rows } = await db.query('SELECT "user", period_key, bytes FROM quota_usage WHERE period_key = ANY($1::text[])', [keys]);
  return quotaRows.parse(rows).map((r) => ({ user: r.user, periodKey: r.period_key, bytes: r.bytes }));
}

/** Quota rows of the period key and later (a month key "2026-11" also covers its days). */
export async function quotaRowsFrom(db: Queryable, minKey: string): Promise<QuotaRow[]> {
  const { rows } = await db.query('SELECT "user", period_key, bytes FROM quota_usage WHERE period_key >= $1', [minKey]);
  return quotaRows.parse(rows).map((r) => ({ user: r.user, periodKey: r.period_key, bytes: r.bytes }));
}

/** See HistoryStore.closeOpenSessions; endedAtMs null: at their last flushed time. */
export async function closeOpenSessions(db: Queryable, gatewayId: string, reason: 'crash', endedAtMs: number | null, startedByMs: number | null = null): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE sessions SET status = 'closed', close_reason = $2,
       ended_at = LEAST(updated_at, COALESCE($3::bigint, updated_at)),
       duration_ms = GREATEST(0, LEAST(updated_at, COALESCE($3::bigint, updated_at)) - started_at)
     WHERE status = 'open' AND gateway_id = $1 AND ($4::bigint IS NULL OR started_at <= $4::bigint)`,
    [gatewayId, reason, endedAtMs, startedByMs],
  );
  return rowCount ?? 0;
}

/** This gateway's open sessions with their last written counters (what a restarted worker takes over). */
export async function openSessionsOf(db: Queryable, gatewayId: string): Promise<Map<string, LiveEntry>> {
  const { rows } = await db.query<OpenRow>(
    `SELECT id, "user", ipv4, ipv6, peer, transport, started_at AS "startedAt", bytes_in AS "bytesIn",
       packets_in AS "packetsIn", bytes_out AS "bytesOut", packets_out AS "packetsOut"
     FROM sessions WHERE status = 'open' AND gateway_id = $1`,
    [gatewayId],
  );
  return liveEntries(rows);
}

export async function recentSessions(db: Queryable, query: RecentSessionsQuery): Promise<SessionHistoryRow[]> {
  const q = recentSessionsQuery.parse(query);
  const { rows } = await db.query(
    `SELECT * FROM sessions
     WHERE ($1::text IS NULL OR "user" = $1) AND ($2::text IS NULL OR gateway_id = $2) AND started_at >= $3
     ORDER BY started_at DESC, id LIMIT $4`,
    [q.user ?? null, q.gatewayId ?? null, q.sinceMs ?? Number.MIN_SAFE_INTEGER, q.limit],
  );
  return z.array(sessionRow).parse(rows);
}

export async function searchSessions(db: Queryable, query: SearchSessionsQuery): Promise<SessionHistoryRow[]> {
  const q = searchSessionsQuery.parse(query);
  const like = (column: string): string => `${column} ILIKE $3 ESCAPE '\\'`;
  const { rows } = await db.query(
    `SELECT * FROM sessions
     WHERE started_at >= $1 AND ($2::text IS NULL OR gateway_id = $2) AND ($3::text IS NULL
       OR ${['"user"', 'id', 'ipv4', 'ipv6', 'peer', 'transport', 'close_reason', 'gateway_id'].map(like).join(' OR ')})
     ORDER BY started_at DESC, id LIMIT $4`,
    [q.sinceMs, q.gatewayId ?? null, likePattern(q.search), q.limit],
  );
  return z.array(sessionRow).parse(rows);
}

export async function hourlySeries(db: Queryable, windowHours: number, wallNowMs: number, gatewayId: string | null): Promise<HourlyRow[]> {
  const range = hourRange(hourlyWindow.parse(windowHours), wallNowMs);
  const params = [range.firstHour, gatewayId];
  const [started, traffic] = await Promise.all([
    db.query(
      `SELECT (started_at / ${HOUR_MS}) * ${HOUR_MS} AS hour_ms, COUNT(*) AS n FROM sessions
       WHERE started_at >= $1 AND ($2::text IS NULL OR gateway_id = $2) GROUP BY 1`,
      params,
    ),
    db.query(
      `SELECT hour_ms, SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out FROM traffic_hourly
       WHERE hour_ms >= $1 AND ($2::text IS NULL OR gateway_id = $2) GROUP BY hour_ms`,
      params,
    ),
  ]);
  return hourlyRows(range, started.rows, traffic.rows);
}

export async function recentRejections(db: Queryable, query: RecentRejectionsQuery): Promise<RejectionRow[]> {
  const q = recentRejectionsQuery.parse(query);
  const { rows } = await db.query(
    `SELECT MAX("user") AS "user", source, reason, hour_ms, SUM(count) AS count, MIN(first_at) AS first_at, MAX(last_at) AS last_at
     FROM rejection_counts WHERE last_at >= $1 AND ($2::text IS NULL OR gateway_id = $2)
     GROUP BY source, reason, hour_ms ORDER BY MAX(last_at) DESC, source, reason LIMIT $3`,
    [q.sinceMs ?? Number.MIN_SAFE_INTEGER, q.gatewayId ?? null, q.limit],
  );
  return z.array(rejectionRow).parse(rows);
}

export async function windowStats(db: Queryable, query: StatsQuery, wallNowMs: number): Promise<HistoryStats> {
  const q = statsQuery.parse(query);
  const { sinceMs, fromHour } = statsWindow(q.windowHours, wallNowMs);
  const gw = '($2::text IS NULL OR gateway_id = $2)';
  const gateway = q.gatewayId ?? null;
  const [started, traffic, top, rejections] = await Promise.all([
    db.query(`SELECT COUNT(*) AS n FROM sessions WHERE started_at >= $1 AND ${gw}`, [sinceMs, gateway]),
    db.query(
      `SELECT COALESCE(SUM(bytes_in), 0) AS bytes_in, COALESCE(SUM(bytes_out), 0) AS bytes_out FROM traffic_hourly WHERE hour_ms >= $1 AND ${gw}`,
      [fromHour, gateway],
    ),
    db.query(
      `SELECT "user", SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out FROM traffic_hourly
       WHERE hour_ms >= $1 AND ${gw} GROUP BY "user" ORDER BY SUM(bytes_in) + SUM(bytes_out) DESC, "user" LIMIT $3`,
      [fromHour, gateway, q.topUsers],
    ),
    db.query(`SELECT reason, SUM(count) AS n FROM rejection_counts WHERE hour_ms >= $1 AND ${gw} GROUP BY reason`, [fromHour, gateway]),
  ]);
  return statsResult(q, sinceMs, { started: started.rows[0], traffic: traffic.rows[0], top: top.rows, rejections: rejections.rows });
}

export async function userUsage(db: Queryable, user: string): Promise<UserUsage> {
  const { rows } = await db.query(`SELECT ${USER_USAGE_COLUMNS} FROM sessions WHERE "user" = $1`, [user]);
  return userUsageResult(user, rows[0]);
}

/** The same rules as SQLite's applyRetention (retention.ts), in one transaction. */
export async function applyRetention(client: PoolClient, retentionDays: number, wallNowMs: number): Promise<RetentionResult> {
  if (retentionDays <= 0) return { sessions: 0, rejections: 0, traffic: 0, quota: 0 };
  const cutoff = wallNowMs - retentionDays * DAY_MS;
  const quotaCutoff = Math.min(cutoff, wallNowMs - QUOTA_MIN_KEEP_MS);
  await client.query('BEGIN');
  try {
    const del = async (sql: string, values: unknown[]): Promise<number> => (await client.query(sql, values)).rowCount ?? 0;
    const result = {
      sessions: await del("DELETE FROM sessions WHERE status = 'closed' AND ended_at < $1", [cutoff]),
      rejections: await del('DELETE FROM rejection_counts WHERE hour_ms + $1 <= $2', [HOUR_MS, cutoff]),
      traffic: await del('DELETE FROM traffic_hourly WHERE hour_ms + $1 <= $2', [HOUR_MS, cutoff]),
      quota: await del('DELETE FROM quota_usage WHERE updated_at < $1', [quotaCutoff]),
    };
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
