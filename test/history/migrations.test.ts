import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isQuicgateError } from '../../src/errors.js';
import { MIGRATIONS, applyMigrations, schemaVersion, type Migration } from '../../src/history/migrations.js';
import { openDatabase, type SqliteDatabase } from '../../src/history/sqlite.js';

describe('applyMigrations', () => {
  let db: SqliteDatabase;
  beforeEach(() => {
    db = openDatabase(':memory:');
  });
  afterEach(() => db.close());

  const tables = (): string[] =>
    (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map(
      (r) => r.name,
    );

  it('applies every migration in order and records each version', () => {
    const result = applyMigrations(db, 1234);
    const latest = MIGRATIONS.at(-1)!.version;
    expect(result).toEqual({ from: 0, to: latest });
    expect(tables()).toEqual(['quota_usage', 'rejection_counts', 'schema_migrations', 'sessions', 'traffic_hourly']);
    const rows = db.prepare('SELECT version, applied_at FROM schema_migrations ORDER BY version').all();
    expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version, applied_at: 1234 })));
    const indexes = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>).map((r) => r.name);
    expect(indexes).toEqual(expect.arrayContaining(['sessions_user', 'sessions_started_at', 'sessions_status', 'rejection_counts_hour']));
  });

  it('is idempotent: a second run changes nothing', () => {
    applyMigrations(db, 1);
    const latest = schemaVersion(db);
    expect(applyMigrations(db, 2)).toEqual({ from: latest, to: latest });
    expect(db.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get()).toEqual({ n: MIGRATIONS.length });
  });

  it('upgrades an older schema by applying only the newer migrations', () => {
    applyMigrations(db, 1, MIGRATIONS.slice(0, 1));
    expect(schemaVersion(db)).toBe(1);
    expect(tables()).not.toContain('quota_usage');
    expect(applyMigrations(db, 2)).toEqual({ from: 1, to: MIGRATIONS.at(-1)!.version });
    expect(tables()).toContain('quota_usage');
  });

  it('version 3 folds the rejection rows of older files into counts per source, reason and hour', () => {
    applyMigrations(db, 1, MIGRATIONS.slice(0, 2));
    const HOUR = 3_600_000;
    const insert = db.prepare('INSERT INTO rejections (user, source, reason, at) VALUES (?, ?, ?, ?)');
    insert.run('eve', '192.0.2.66', 'auth_failed', 10 * HOUR + 5);
    insert.run('mallory', '192.0.2.66', 'auth_failed', 10 * HOUR + 900);
    insert.run(null, '192.0.2.66', 'throttled', 10 * HOUR + 1000);
    insert.run('eve', '192.0.2.66', 'auth_failed', 11 * HOUR);
    expect(applyMigrations(db, 3, MIGRATIONS.slice(0, 3))).toEqual({ from: 2, to: 3 });
    expect(tables()).not.toContain('rejections');
    expect(db.prepare('SELECT source, reason, hour_ms, user, count, first_at, last_at FROM rejection_counts ORDER BY hour_ms, reason').all()).toEqual([
      { source: '192.0.2.66', reason: 'auth_failed', hour_ms: 10 * HOUR, user: 'mallory', count: 2, first_at: 10 * HOUR + 5, last_at: 10 * HOUR + 900 },
      { source: '192.0.2.66', reason: 'throttled', hour_ms: 10 * HOUR, user: null, count: 1, first_at: 10 * HOUR + 1000, last_at: 10 * HOUR + 1000 },
      { source: '192.0.2.66', reason: 'auth_failed', hour_ms: 11 * HOUR, user: 'eve', count: 1, first_at: 11 * HOUR, last_at: 11 * HOUR },
    ]);
  });

  it('version 4 gives every row of the file this gateway\'s id and keeps the rows', () => {
    applyMigrations(db, 1, MIGRATIONS.slice(0, 3));
    db.prepare(
      `INSERT INTO sessions (id, user, peer, transport, started_at, status, updated_at) VALUES ('s1', 'alice', '192.0.2.1:1', 'h2', 5, 'open', 9)`,
    ).run();
    db.prepare('INSERT INTO traffic_hourly VALUES (?, ?, ?, ?)').run('alice', 0, 100, 200);
    db.prepare('INSERT INTO rejection_counts VALUES (?, ?, ?, ?, ?, ?, ?)').run('192.0.2.9', 'auth_failed', 0, 'eve', 3, 1, 2);
    expect(applyMigrations(db, 4, MIGRATIONS, { gatewayId: "gw-o'neil" })).toEqual({ from: 3, to: 4 });
    expect(db.prepare('SELECT id, gateway_id FROM sessions').all()).toEqual([{ id: 's1', gateway_id: "gw-o'neil" }]);
    expect(db.prepare('SELECT * FROM traffic_hourly').all()).toEqual([{ user: 'alice', hour_ms: 0, gateway_id: "gw-o'neil", bytes_in: 100, bytes_out: 200 }]);
    expect(db.prepare('SELECT gateway_id, count FROM rejection_counts').all()).toEqual([{ gateway_id: "gw-o'neil", count: 3 }]);
  });

  it('rolls a failing migration back and keeps the earlier ones', () => {
    const broken: Migration[] = [
      ...MIGRATIONS,
      { version: 99, name: 'broken', sql: 'CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);' },
    ];
    expect(() => applyMigrations(db, 1, broken)).toThrow(/nowhere/);
    expect(schemaVersion(db)).toBe(MIGRATIONS.at(-1)!.version);
    expect(tables()).not.toContain('half');
  });

  it('refuses a database newer than it knows, and an unordered list', () => {
    applyMigrations(db, 1, [...MIGRATIONS, { version: 50, name: 'future', sql: 'SELECT 1' }]);
    let caught: unknown;
    try {
      applyMigrations(db, 1);
    } catch (err) {
      caught = err;
    }
    expect(isQuicgateError(caught, 'QG_ERR_HISTORY')).toBe(true);

    const unordered = [MIGRATIONS[1]!, MIGRATIONS[0]!];
    const other = openDatabase(':memory:');
    expect(() => applyMigrations(other, 1, unordered)).toThrow(/increasing/);
    other.close();
  });
});
