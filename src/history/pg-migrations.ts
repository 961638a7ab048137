/**
 * The PostgreSQL schema of the history, versioned like the SQLite one (migrations.ts): an ordered list, each
 * applied once, recorded in schema_migrations. Several gateways may start at once against one database: the
 * whole check-and-apply runs in ONE transaction under a transaction-scoped advisory lock, so one of them
 * migrates and the others wait, then find the schema current. Append new entries; never edit a released one.
 *
 * Text that is compared or sorted (ids, users, period keys "2026-11" <= "2026-11-23") is COLLATE "C": the
 * byte order SQLite uses, whatever the database's locale.
 */
import type { PoolClient } from 'pg';
import { checkMigrations, migrationSql, type Migration, type MigrationContext, type MigrationResult } from './migrations.js';

/** pg_advisory_xact_lock key of the history migrations ("qgh1"), the same in every gateway. */
export const MIGRATION_LOCK_KEY = 0x71676831;

export const PG_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'sessions, hourly traffic, quota usage, rejection counts, per gateway',
    sql: `
      CREATE TABLE sessions (
        id text COLLATE "C" PRIMARY KEY,
        gateway_id text COLLATE "C" NOT NULL,
        "user" text COLLATE "C" NOT NULL,
        ipv4 text,
        ipv6 text,
        peer text NOT NULL,
        transport text NOT NULL,
        started_at bigint NOT NULL,
        ended_at bigint,
        duration_ms bigint,
        bytes_in bigint NOT NULL DEFAULT 0,
        packets_in bigint NOT NULL DEFAULT 0,
        bytes_out bigint NOT NULL DEFAULT 0,
        packets_out bigint NOT NULL DEFAULT 0,
        status text NOT NULL CHECK (status IN ('open', 'closed')),
        close_reason text,
        close_message text,
        updated_at bigint NOT NULL
      );
      CREATE INDEX sessions_user ON sessions ("user", started_at);
      CREATE INDEX sessions_started_at ON sessions (started_at);
      CREATE INDEX sessions_gateway_open ON sessions (gateway_id) WHERE status = 'open';
      CREATE TABLE traffic_hourly (
        "user" text COLLATE "C" NOT NULL,
        hour_ms bigint NOT NULL,
        gateway_id text COLLATE "C" NOT NULL,
        bytes_in bigint NOT NULL,
        bytes_out bigint NOT NULL,
        PRIMARY KEY ("user", hour_ms, gateway_id)
      );
      CREATE INDEX traffic_hourly_hour ON traffic_hourly (hour_ms);
      -- Fleet-wide: every gateway adds to the same row of a user and period.
      CREATE TABLE quota_usage (
        "user" text COLLATE "C" NOT NULL,
        period_key text COLLATE "C" NOT NULL,
        bytes bigint NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY ("user", period_key)
      );
      CREATE INDEX quota_usage_period ON quota_usage (period_key);
      CREATE TABLE rejection_counts (
        source text COLLATE "C" NOT NULL,
        reason text COLLATE "C" NOT NULL,
        hour_ms bigint NOT NULL,
        gateway_id text COLLATE "C" NOT NULL,
        "user" text COLLATE "C",
        count bigint NOT NULL CHECK (count > 0),
        first_at bigint NOT NULL,
        last_at bigint NOT NULL,
        PRIMARY KEY (source, reason, hour_ms, gateway_id)
      );
      CREATE INDEX rejection_counts_hour ON rejection_counts (hour_ms);
      CREATE INDEX rejection_counts_last_at ON rejection_counts (last_at);
    `,
  },
];

/** Applies every migration newer than the database's version, in one transaction under the advisory lock. */
export async function applyPgMigrations(
  client: PoolClient,
  wallNowMs: number,
  ctx: MigrationContext,
  migrations: readonly Migration[] = PG_MIGRATIONS,
): Promise<MigrationResult> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)',
    );
    const { rows } = await client.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations');
    const from = rows[0]?.v ?? 0;
    const latest = checkMigrations(migrations, from);
    for (const m of migrations) {
      if (m.version <= from) continue;
      await client.query(migrationSql(m, ctx));
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, wallNowMs]);
    }
    await client.query('COMMIT');
    return { from, to: Math.max(from, latest) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
