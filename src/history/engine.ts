/**
 * The synchronous half of the history, run inside the history worker thread (worker.ts), never on the event
 * loop that forwards packets: it owns the SQLite connection and everything that blocks on the disk.
 *
 *   write(batch): connection() (data dir there? file still the one we opened? else reopen / fresh file)
 *                 → writeBatch in ONE transaction (a record the schema refuses: one by one, dropped alone)
 *   failure → noteFailure(): corruption → quick_check at the next open; unknown state → drop the connection
 *   retention(), queries, quota rows: on the same connection, in message order.
 */
import { statSync } from 'node:fs';
import type { Logger } from 'pino';
import { QuicgateError } from '../errors.js';
import {
  closeQuietly,
  describeError,
  fileIdentity,
  isBusyError,
  isCorruptionError,
  openHistoryDatabase,
  type FileIdentity,
} from './db.js';
import type { HistoryStartupEvent } from './records.js';
import { adoptOpenSessions } from './resume.js';
import type { SqliteDatabase } from './sqlite.js';
import { BatchStatements, LiveSessions, singleParts, writeBatch, type Batch } from './writer.js';

export interface EngineOptions {
  readonly file: string;
  readonly dataDir: string;
  readonly busyTimeoutMs: number;
  readonly logger: Logger;
  /** This gateway's id, written into every row. */
  readonly gatewayId: string;
}

interface Connection {
  readonly db: SqliteDatabase;
  readonly identity: FileIdentity;
  readonly statements: BatchStatements;
}

export interface QuotaRow {
  readonly user: string;
  readonly periodKey: string;
  readonly bytes: number;
}

export class HistoryEngine {
  private conn: Connection | null = null;
  private lastIdentity: FileIdentity | null = null;
  private readonly live = new LiveSessions();
  private reseedLive = false;
  private needsQuickCheck = false;

  constructor(private readonly opts: EngineOptions) {}

  /** Startup open: quick_check, migrations, sessions left open by a crash closed. Throws QG_ERR_HISTORY. */
  open(wallNowMs: number, recoverCrashed = true): HistoryStartupEvent[] {
    const opened = openHistoryDatabase({
      file: this.opts.file,
      wallNowMs,
      logger: this.opts.logger,
      busyTimeoutMs: this.opts.busyTimeoutMs,
      quickCheck: true,
      recoverCrashed,
      gatewayId: this.opts.gatewayId,
    });
    this.conn = { ...opened, statements: new BatchStatements(opened.db, this.opts.gatewayId) };
    this.lastIdentity = opened.identity;
    return opened.events;
  }

  /** A restarted worker's open (see resume.ts): this gateway's sessions open in the file are this run's, taken over. */
  resume(wallNowMs: number): { events: HistoryStartupEvent[]; liveSessions: number } {
    const events = this.open(wallNowMs, false);
    return { events, liveSessions: adoptOpenSessions(this.db(wallNowMs), this.opts.gatewayId, this.live) };
  }

  /**
   * Writes the batch (one transaction; with a refused record, one per part). Returns the number of parts
   * the database refused (dropped). Throws on any other failure, having written nothing of the batch.
   */
  write(batch: Omit<Batch, 'reseed'>, wallNowMs: number): number {
    const conn = this.connection(wallNowMs);
    const full: Batch = { ...batch, reseed: this.reseedLive ? this.live.starts() : [] };
    let refused = 0;
    try {
      writeBatch(conn.statements, full, this.live);
    } catch (err) {
      if (!isDataError(err)) throw err;
      refused = this.writeIsolatingBadRecords(conn, full);
    }
    this.reseedLive = false;
    return refused;
  }

  /** After a failed write: decide what the next attempt starts from. */
  noteFailure(err: unknown): void {
    if (isCorruptionError(err)) this.needsQuickCheck = true;
    else if (!isBusyError(err) && this.conn !== null) {
      // Unknown state (I/O error, disk full, read-only): start over with a fresh connection next time.
      closeQuietly(this.conn.db);
      this.conn = null;
    }
  }

  /** The open connection for a query (reopening if there is none). */
  db(wallNowMs: number): SqliteDatabase {
    return (this.conn ?? this.connection(wallNowMs)).db;
  }

  /** Quota rows of the given period keys and later (a month key "2026-11" also covers its days). */
  quotaRowsFrom(minKey: string, wallNowMs: number): QuotaRow[] {
    const rows = this.db(wallNowMs)
      .prepare('SELECT user, period_key AS periodKey, bytes FROM quota_usage WHERE period_key >= ?')
      .all(minKey) as QuotaRow[];
    return rows.map((r) => ({ user: String(r.user), periodKey: String(r.periodKey), bytes: Number(r.bytes) }));
  }

  quotaRowsOf(key: string, wallNowMs: number): QuotaRow[] {
    const rows = this.db(wallNowMs).prepare('SELECT user, bytes FROM quota_usage WHERE period_key = ?').all(key) as Array<{
      user: string;
      bytes: number;
    }>;
    return rows.map((r) => ({ user: String(r.user), periodKey: key, bytes: Number(r.bytes) }));
  }

  close(): void {
    if (this.conn !== null) closeQuietly(this.conn.db);
    this.conn = null;
  }

  // A record the schema refuses must not block the queue forever: write one by one and drop the refused.
  private writeIsolatingBadRecords(conn: Connection, batch: Batch): number {
    let refused = 0;
    const writeAlone = (single: Batch): void => {
      try {
        writeBatch(conn.statements, single, this.live);
      } catch (err) {
        if (!isDataError(err)) throw err;
        refused++;
        this.opts.logger.error({ err: describeError(err), record: single }, 'history: dropping a record the database refuses');
      }
    };
    // All or nothing towards the caller (who forgets the batch only on success): the parts go into one outer
    // transaction, each alone in a savepoint; if that fails, what the parts noted as written is undone too.
    const saved = this.live.save();
    try {
      conn.db.transaction(() => {
        for (const part of singleParts(batch)) writeAlone(part);
      }, 'immediate');
    } catch (err) {
      this.live.restore(saved);
      throw err;
    }
    return refused;
  }

  /** The open connection if the file at our path is still the one it has open; otherwise reopen. */
  private connection(wallNowMs: number): Connection {
    const { dataDir, file } = this.opts;
    let isDirectory: boolean;
    try {
      isDirectory = statSync(dataDir).isDirectory();
    } catch (err) {
      throw new QuicgateError('QG_ERR_HISTORY', `data directory unavailable: ${describeError(err)}`, { cause: err });
    }
    if (!isDirectory) throw new QuicgateError('QG_ERR_HISTORY', `${dataDir} is not a directory`);
    let current: FileIdentity | null = null;
    try {
      current = fileIdentity(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const conn = this.conn;
    if (conn !== null && !this.needsQuickCheck && current !== null && sameFile(current, conn.identity)) return conn;

    if (conn !== null) {
      closeQuietly(conn.db);
      this.conn = null;
    }
    const opened = openHistoryDatabase({
      file,
      wallNowMs,
      logger: this.opts.logger,
      busyTimeoutMs: this.opts.busyTimeoutMs,
      quickCheck: this.needsQuickCheck,
      recoverCrashed: false,
      gatewayId: this.opts.gatewayId,
    });
    this.needsQuickCheck = false;
    this.conn = { ...opened, statements: new BatchStatements(opened.db, this.opts.gatewayId) };
    // The file may be another one (removed, replaced, moved aside as corrupt; a freed inode number can even
    // come back), so insert our live sessions again: ON CONFLICT DO NOTHING makes this harmless for the same file.
    this.reseedLive = true;
    if (current === null || this.lastIdentity === null || !sameFile(opened.identity, this.lastIdentity)) {
      this.opts.logger.warn(
        { file, reason: current === null ? 'file missing' : 'file replaced', events: opened.events },
        'history database file changed under us; continuing in the file now at the path',
      );
    }
    this.lastIdentity = opened.identity;
    return this.conn;
  }
}

function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

function isDataError(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG');
}
