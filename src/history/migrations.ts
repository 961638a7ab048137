/**
 * Schema migrations: an ordered list, each applied once in its own transaction and recorded in
 * schema_migrations. Append new entries; never edit a released one.
 */
import { QuicgateError } from '../errors.js';
import type { SqliteDatabase } from './sqlite.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  /** The statements; a function when they need this gateway's id (rows written before ids existed are ours). */
  readonly sql: string | ((ctx: MigrationContext) => string);
}

export interface MigrationContext {
  readonly gatewayId: string;
}

/** A SQL string literal (SQLite and PostgreSQL both double the quote). */
export function sqlLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'sessions and rejections',
    sql: `
      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        ipv4 TEXT,
        ipv6 TEXT,
        peer TEXT NOT NULL,
        transport TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        duration_ms INTEGER,
        bytes_in INTEGER NOT NULL DEFAULT 0,
        packets_in INTEGER NOT NULL DEFAULT 0,
        bytes_out INTEGER NOT NULL DEFAULT 0,
        packets_out INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        close_reason TEXT,
        close_message TEXT,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX sessions_user ON sessions (user, started_at);
      CREATE INDEX sessions_started_at ON sessions (started_at);
      CREATE INDEX sessions_status ON sessions (status);
      CREATE TABLE rejections (
        id INTEGER PRIMARY KEY,
        user TEXT,
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX rejections_at ON rejections (at);
      CREATE INDEX rejections_user ON rejections (user, at);
    `,
  },
  {
    version: 2,
    name: 'hourly traffic and quota usage',
    sql: `
      CREATE TABLE traffic_hourly (
        user TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        PRIMARY KEY (user, hour_ms)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX traffic_hourly_hour ON traffic_hourly (hour_ms);
      CREATE TABLE quota_usage (
        user TEXT NOT NULL,
        period_key TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (user, period_key)
      ) STRICT, WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    name: 'rejections counted per source, reason and hour',
    // One row per refusal let a flood of refusals fill the disk; now a flood costs one row per hour.
    sql: `
      CREATE TABLE rejection_counts (
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        user TEXT,
        count INTEGER NOT NULL CHECK (count > 0),
        first_at INTEGER NOT NULL,
        last_at INTEGER NOT NULL,
        PRIMARY KEY (source, reason, hour_ms)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX rejection_counts_hour ON rejection_counts (hour_ms);
      CREATE INDEX rejection_counts_last_at ON rejection_counts (last_at);
      INSERT INTO rejection_counts (source, reason, hour_ms, user, count, first_at, last_at)
        SELECT source, reason, (at / 3600000) * 3600000, MAX(user), COUNT(*), MIN(at), MAX(at)
        FROM rejections GROUP BY source, reason, (at / 3600000) * 3600000;
      DROP TABLE rejections;
    `,
  },
  {
    version: 4,
    name: 'gateway id on every row',
    // One file is one gateway's: the rows already in it are this gateway's.
    sql: ({ gatewayId }) => {
      const gw = sqlLiteral(gatewayId);
      return `
      ALTER TABLE sessions ADD COLUMN gateway_id TEXT NOT NULL DEFAULT '';
      UPDATE sessions SET gateway_id = ${gw};
      CREATE INDEX sessions_gateway ON sessions (gateway_id, status);
      CREATE TABLE traffic_hourly_v4 (
        user TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        gateway_id TEXT NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        PRIMARY KEY (user, hour_ms, gateway_id)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO traffic_hourly_v4 SELECT user, hour_ms, ${gw}, bytes_in, bytes_out FROM traffic_hourly;
      DROP TABLE traffic_hourly;
      ALTER TABLE traffic_hourly_v4 RENAME TO traffic_hourly;
      CREATE INDEX traffic_hourly_hour ON traffic_hourly (hour_ms);
      CREATE TABLE rejection_counts_v4 (
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        gateway_id TEXT NOT NULL,
        user TEXT,
        count INTEGER NOT NULL CHECK (count > 0),
        first_at INTEGER NOT NULL,
        last_at INTEGER NOT NULL,
        PRIMARY KEY (source, reason, hour_ms, gateway_id)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO rejection_counts_v4 SELECT source, reason, hour_ms, ${gw}, user, count, first_at, last_at FROM rejection_counts;
      DROP TABLE rejection_counts;
      ALTER TABLE rejection_counts_v4 RENAME TO rejection_counts;
      CREATE INDEX rejection_counts_hour ON rejection_counts (hour_ms);
      CREATE INDEX rejection_counts_last_at ON rejection_counts (last_at);
    `;
    },
  },
];

export interface MigrationResult {
  readonly from: number;
  readonly to: number;
}

export function schemaVersion(db: SqliteDatabase): number {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT',
  );
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
  return row.v ?? 0;
}

/** Applies every migration newer than the database's version, in order. Idempotent. */
export function applyMigrations(
  db: SqliteDatabase,
  wallNowMs: number,
  migrations: readonly Migration[] = MIGRATIONS,
  ctx: MigrationContext = { gatewayId: '' },
): MigrationResult {
  const from = schemaVersion(db);
  const latest = checkMigrations(migrations, from);
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of migrations) {
    if (m.version <= from) continue;
    db.transaction(() => {
      db.exec(migrationSql(m, ctx));
      record.run(m.version, m.name, wallNowMs);
    }, 'immediate');
  }
  return { from, to: Math.max(from, latest) };
}

/** Checks the list is in increasing order and the database not newer than it; returns the latest version. */
export function checkMigrations(migrations: readonly Migration[], from: number): number {
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.version <= migrations[i - 1]!.version) {
      throw new QuicgateError('QG_ERR_HISTORY', 'history migrations are not in increasing version order');
    }
  }
  const latest = migrations.at(-1)?.version ?? 0;
  if (from > latest) {
    throw new QuicgateError(
      'QG_ERR_HISTORY',
      `history database has schema version ${from}, newer than this quicgate knows (${latest})`,
      { details: { from, latest } },
    );
  }
  return latest;
}

export function migrationSql(m: Migration, ctx: MigrationContext): string {
  return typeof m.sql === 'string' ? m.sql : m.sql(ctx);
}
