/**
 * Opening the history database file.
 *
 *   inspect header bytes ─ corrupt? ─► move file (+ -wal/-shm) aside
 *        │ ok / missing
 *   connect (WAL, synchronous=NORMAL, short busy timeout) ─► quick_check ─ fails? ─► move aside, connect fresh
 *        │
 *   migrations ─► (startup only) close sessions a crashed gateway left open, reason 'crash'
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { QuicgateError } from '../errors.js';
import { applyMigrations } from './migrations.js';
import type { HistoryStartupEvent } from './records.js';
import { openDatabase, type SqliteDatabase } from './sqlite.js';

export const HISTORY_FILE = 'history.sqlite';
const SIDE_FILES = ['-wal', '-shm', '-journal'] as const;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const HEADER_BYTES = 100;

export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
}

export interface OpenedDatabase {
  readonly db: SqliteDatabase;
  readonly identity: FileIdentity;
  readonly events: HistoryStartupEvent[];
}

export interface OpenDatabaseOptions {
  readonly file: string;
  readonly wallNowMs: number;
  readonly logger: Logger;
  readonly busyTimeoutMs: number;
  /** Full `PRAGMA quick_check` (startup, or after a corruption error); otherwise the header check only. */
  readonly quickCheck: boolean;
  /** Close sessions left open by a previous process (startup only: at a runtime reopen they may be ours). */
  readonly recoverCrashed: boolean;
  /** This gateway's id: rows written before ids existed get it; crash recovery closes its rows only. */
  readonly gatewayId: string;
}

type HeaderVerdict = { kind: 'missing' } | { kind: 'ok' } | { kind: 'corrupt'; reason: string };

/** Checks the 100-byte SQLite header: magic string and a valid page size. An empty file is a valid new db. */
export function inspectHeader(file: string): HeaderVerdict {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { kind: 'missing' };
    throw historyError(`cannot read ${file}`, err);
  }
  try {
    const header = Buffer.alloc(HEADER_BYTES);
    const n = readSync(fd, header, 0, HEADER_BYTES, 0);
    if (n === 0) return { kind: 'ok' };
    if (n < HEADER_BYTES) return { kind: 'corrupt', reason: `file is ${n} bytes, shorter than a SQLite header` };
    if (!header.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) {
      return { kind: 'corrupt', reason: 'not a SQLite database (bad header magic)' };
    }
    const pageSize = header.readUInt16BE(16);
    const validPageSize = pageSize === 1 || (pageSize >= 512 && pageSize <= 32768 && (pageSize & (pageSize - 1)) === 0);
    if (!validPageSize) return { kind: 'corrupt', reason: `invalid page size ${pageSize} in header` };
    return { kind: 'ok' };
  } finally {
    closeSync(fd);
  }
}

/** Renames the file and its side files to `<file>.<label>-<timestamp>[-wal|-shm]`; returns the new paths. */
export function moveAside(file: string, label: string, wallNowMs: number): string[] {
  const stamp = new Date(wallNowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let base = `${file}.${label}-${stamp}`;
  for (let n = 1; [base, ...SIDE_FILES.map((s) => base + s)].some((p) => existsSync(p)); n++) {
    base = `${file}.${label}-${stamp}-${n}`;
  }
  const moved: string[] = [];
  for (const suffix of ['', ...SIDE_FILES]) {
    if (!existsSync(file + suffix)) continue;
    try {
      renameSync(file + suffix, base + suffix);
      moved.push(base + suffix);
    } catch (err) {
      throw historyError(`cannot move ${file + suffix} aside`, err);
    }
  }
  return moved;
}

export function fileIdentity(file: string): FileIdentity {
  const st = statSync(file);
  return { dev: st.dev, ino: st.ino };
}

export function openHistoryDatabase(opts: OpenDatabaseOptions): OpenedDatabase {
  const { file, logger } = opts;
  const events: HistoryStartupEvent[] = [];
  const setAside = (reason: string): void => {
    const movedTo = moveAside(file, 'corrupt', opts.wallNowMs);
    events.push({ kind: 'corrupt_moved_aside', reason, movedTo });
    logger.error({ file, reason, movedTo }, 'history database is corrupt; moved it aside and starting a fresh one');
  };

  const header = inspectHeader(file);
  if (header.kind === 'corrupt') setAside(header.reason);
  if (header.kind === 'missing' && SIDE_FILES.some((s) => existsSync(file + s))) {
    // A -wal without its database would be replayed into the new file: keep it, but out of the way.
    const movedTo = moveAside(file, 'orphan', opts.wallNowMs);
    logger.warn({ file, movedTo }, 'history side files without a database moved aside');
  }

  let db: SqliteDatabase;
  try {
    db = connect(file, opts);
    const problem = opts.quickCheck && existsSync(file) ? integrityProblem(db) : null;
    if (problem !== null) {
      closeQuietly(db);
      throw new CorruptFile(problem);
    }
  } catch (err) {
    if (!(err instanceof CorruptFile) && !isCorruptionError(err)) throw err;
    setAside(err instanceof CorruptFile ? err.message : describeError(err));
    db = connect(file, opts);
  }
  const fresh = header.kind === 'missing' || events.length > 0;
  try {
    const migrated = applyMigrations(db, opts.wallNowMs, undefined, { gatewayId: opts.gatewayId });
    if (fresh) events.push({ kind: 'created', path: file });
    else if (migrated.from !== migrated.to) events.push({ kind: 'migrated', ...migrated });
    if (opts.recoverCrashed) {
      // The file is this gateway's alone: every open row is from an earlier life, whatever id it was written
      // under (the default id is the host name, which may have changed since).
      const recovered = closeOpenSessions(db, null, 'crash', null);
      if (recovered > 0) {
        events.push({ kind: 'crash_recovered', sessions: recovered });
        logger.warn({ sessions: recovered }, "history: closed sessions left open by a crash (reason 'crash')");
      }
    }
    return { db, identity: fileIdentity(file), events };
  } catch (err) {
    closeQuietly(db);
    throw err instanceof QuicgateError ? err : historyError(`cannot prepare ${file}`, err);
  }
}

/**
 * Ends the gateway's (null: every) open sessions with their last flushed counters, at their last flushed
 * time, or at endedAtMs when given and earlier (a gateway known dead before its last flush ended by then).
 * With startedByMs only rows started by then are closed: a late close never ends a restarted gateway's sessions.
 */
export function closeOpenSessions(db: SqliteDatabase, gatewayId: string | null, reason: 'crash', endedAtMs: number | null, startedByMs: number | null = null): number {
  return db
    .prepare(
      `UPDATE sessions SET status = 'closed', close_reason = @reason,
         ended_at = MIN(updated_at, COALESCE(@endedAt, updated_at)),
         duration_ms = MAX(0, MIN(updated_at, COALESCE(@endedAt, updated_at)) - started_at)
       WHERE status = 'open' AND (@gateway IS NULL OR gateway_id = @gateway) AND (@startedBy IS NULL OR started_at <= @startedBy)`,
    )
    .run({ reason, endedAt: endedAtMs, gateway: gatewayId, startedBy: startedByMs }).changes;
}

export function isCorruptionError(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== null && (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB'));
}

export function isBusyError(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== null && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

export function closeQuietly(db: SqliteDatabase): void {
  try {
    db.close();
  } catch {
    // closing a broken connection may fail; nothing more can be done with it
  }
}

export function describeError(err: unknown): string {
  const code = sqliteCode(err) ?? errnoCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code !== null && !message.includes(code) ? `${code}: ${message}` : message;
}

function connect(file: string, opts: OpenDatabaseOptions): SqliteDatabase {
  mkdirSync(path.dirname(file), { recursive: true });
  let db: SqliteDatabase;
  try {
    db = openDatabase(file, { timeoutMs: opts.busyTimeoutMs });
  } catch (err) {
    throw historyError(`cannot open ${file}`, err);
  }
  try {
    const mode = db.pragmaValue('journal_mode = WAL');
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, expected wal`);
    // WAL + NORMAL: commits do not fsync; a power cut may lose the last commits, never corrupt the file.
    db.pragma('synchronous = NORMAL');
    if (opts.logger.isLevelEnabled('debug')) {
      // node:sqlite on Node >= 22.13, better-sqlite3 on Node 20 (src/history/sqlite.ts)
      const { v: version } = db.prepare('SELECT sqlite_version() AS v').get() as { v: string };
      opts.logger.debug({ file, driver: db.driver, sqliteVersion: version }, 'history: SQLite connection open');
    }
    return db;
  } catch (err) {
    closeQuietly(db);
    if (isCorruptionError(err)) throw err;
    throw historyError(`cannot open ${file}`, err);
  }
}

class CorruptFile extends Error {}

function integrityProblem(db: SqliteDatabase): string | null {
  try {
    const rows = db.pragma('quick_check') as Array<{ quick_check: string }>;
    if (rows.length === 1 && rows[0]?.quick_check === 'ok') return null;
    return `quick_check: ${rows
      .slice(0, 3)
      .map((r) => r.quick_check)
      .join('; ')}`;
  } catch (err) {
    if (isCorruptionError(err)) return describeError(err);
    throw historyError('integrity check failed to run', err);
  }
}

function historyError(message: string, cause: unknown): QuicgateError {
  return new QuicgateError('QG_ERR_HISTORY', `${message}: ${describeError(cause)}`, { cause });
}

function sqliteCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null;
}

function errnoCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
}
