import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { inspectHeader } from '../../src/history/db.js';
import { MIGRATIONS } from '../../src/history/migrations.js';
import { openDatabase } from '../../src/history/sqlite.js';
import { FakeClock, openStore, rawRows, startRecord, tempDir } from './helpers/fixtures.js';

describe('opening the history file', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'history.sqlite');
  });
  afterEach(() => cleanup());

  it('creates the file in WAL mode with the schema, and re-opens it without changes', async () => {
    const clock = new FakeClock();
    const first = await openStore(dir, clock);
    expect(first.store.startupEvents).toEqual([{ kind: 'created', path: file }]);
    await first.store.close();

    const second = await openStore(dir, clock);
    expect(second.store.startupEvents).toEqual([]);
    await second.store.close();

    const db = openDatabase(file, { readonly: true });
    expect(db.pragmaValue('journal_mode')).toBe('wal');
    expect(db.prepare('SELECT version FROM schema_migrations ORDER BY version').all()).toEqual(
      MIGRATIONS.map((m) => ({ version: m.version })),
    );
    db.close();
  });

  it('migrates an older file at start', async () => {
    const db = openDatabase(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT');
    db.exec(MIGRATIONS[0]!.sql as string);
    db.prepare('INSERT INTO schema_migrations VALUES (1, ?, 0)').run(MIGRATIONS[0]!.name);
    db.close();

    const { store } = await openStore(dir, new FakeClock());
    expect(store.startupEvents).toEqual([{ kind: 'migrated', from: 1, to: MIGRATIONS.at(-1)!.version }]);
    expect(store.quotaUsage('alice', '2026-01')).toBe(0);
    await store.close();
  });

  it('moves a non-SQLite file aside (with its -wal/-shm), starts fresh and logs it', async () => {
    const garbage = Buffer.from('this is not a database at all; '.repeat(40));
    writeFileSync(file, garbage);
    writeFileSync(`${file}-wal`, 'stale wal');
    writeFileSync(`${file}-shm`, 'stale shm');
    expect(inspectHeader(file).kind).toBe('corrupt');

    const clock = new FakeClock(Date.UTC(2026, 10, 23, 8, 30, 0));
    const { store, lines } = await openStore(dir, clock);
    const base = `${file}.corrupt-20261123T083000Z`;
    expect(store.startupEvents).toEqual([
      { kind: 'corrupt_moved_aside', reason: 'not a SQLite database (bad header magic)', movedTo: [base, `${base}-wal`, `${base}-shm`] },
      { kind: 'created', path: file },
    ]);
    expect(readFileSync(base)).toEqual(garbage);
    expect(readFileSync(`${base}-wal`, 'utf8')).toBe('stale wal');
    expect(lines.some((l) => l.level === 50 && l.reason === 'not a SQLite database (bad header magic)')).toBe(true);

    store.recordStart(startRecord('s1', 'alice', clock.wallNow()));
    await store.flush();
    expect((await store.recentSessions({ limit: 10 })).map((r) => r.id)).toEqual(['s1']);
    await store.close();
  });

  it('moves a short file aside', async () => {
    writeFileSync(file, 'SQLite format 3\0short');
    const { store } = await openStore(dir, new FakeClock());
    expect(store.startupEvents[0]).toMatchObject({ kind: 'corrupt_moved_aside', reason: expect.stringMatching(/shorter/) });
    await store.close();
  });

  it('moves a truncated real database aside (found by quick_check) and keeps its bytes', async () => {
    const clock = new FakeClock();
    const first = await openStore(dir, clock, { config: { batchSize: 100_000 } });
    for (let i = 0; i < 3000; i++) first.store.recordStart(startRecord(`session-${i}`, `user-${i % 50}`, clock.wallNow() + i, i % 200));
    await first.store.close();
    const size = statSync(file).size;
    expect(size).toBeGreaterThan(100_000);
    truncateSync(file, Math.floor(size / 2));
    expect(inspectHeader(file).kind).toBe('ok');

    const second = await openStore(dir, clock);
    expect(second.store.startupEvents[0]).toMatchObject({ kind: 'corrupt_moved_aside', reason: expect.stringMatching(/quick_check|malformed/) });
    expect(second.store.startupEvents[1]).toEqual({ kind: 'created', path: file });
    expect((await second.store.recentSessions({ limit: 10 }))).toEqual([]);
    await second.store.close();
    const aside = readdirSync(dir).filter((n) => n.startsWith('history.sqlite.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(statSync(path.join(dir, aside[0]!)).size).toBe(Math.floor(size / 2));
  });

  it('moves side files without a database out of the way before creating one', async () => {
    writeFileSync(`${file}-wal`, 'orphan');
    const { store } = await openStore(dir, new FakeClock());
    expect(store.startupEvents).toEqual([{ kind: 'created', path: file }]);
    expect(readdirSync(dir).some((n) => n.startsWith('history.sqlite.orphan-') && n.endsWith('-wal'))).toBe(true);
    await store.close();
    expect(existsSync(file)).toBe(true);
    expect(rawRows(file, 'SELECT COUNT(*) AS n FROM sessions')).toEqual([{ n: 0 }]);
  });
});
