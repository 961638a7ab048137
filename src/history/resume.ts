/**
 * What a restarted history worker takes over (worker-backend.ts restarts it; engine.ts resume() calls this;
 * on PostgreSQL pg-backend.ts resume() reads the same rows with pg-queries.ts openSessionsOf).
 * The first open of a run closed every session an earlier process left open (reason 'crash'), and only this
 * process writes the file, so this gateway's rows still open now are this run's live sessions: they must not
 * be closed as crashed. They become the engine's live sessions again, with the counters last written for
 * them, so that the next snapshots and ends add only the traffic since (never twice, never lost).
 */
import type { SessionStartRecord } from './records.js';
import type { SqliteDatabase } from './sqlite.js';
import type { LiveEntry, LiveSessions } from './writer.js';

/** An open session row as the SQLite and PostgreSQL queries select it (the columns' aliases). */
export interface OpenRow {
  id: string;
  user: string;
  ipv4: string | null;
  ipv6: string | null;
  peer: string;
  transport: string;
  startedAt: number;
  bytesIn: number;
  packetsIn: number;
  bytesOut: number;
  packetsOut: number;
}

/** Puts the file's open sessions of this gateway into `live`; returns how many. */
export function adoptOpenSessions(db: SqliteDatabase, gatewayId: string, live: LiveSessions): number {
  const rows = db
    .prepare(
      `SELECT id, user, ipv4, ipv6, peer, transport, started_at AS startedAt, bytes_in AS bytesIn,
         packets_in AS packetsIn, bytes_out AS bytesOut, packets_out AS packetsOut
       FROM sessions WHERE status = 'open' AND gateway_id = ?`,
    )
    .all(gatewayId) as unknown as OpenRow[];
  const entries = liveEntries(rows);
  live.apply(entries);
  return entries.size;
}

/** The rows as live sessions, each with the counters last written for it. */
export function liveEntries(rows: readonly OpenRow[]): Map<string, LiveEntry> {
  const entries = new Map<string, LiveEntry>();
  for (const r of rows) {
    const start: SessionStartRecord = {
      id: String(r.id),
      user: String(r.user),
      ipv4: r.ipv4 === null ? null : String(r.ipv4),
      ipv6: r.ipv6 === null ? null : String(r.ipv6),
      peer: String(r.peer),
      transport: String(r.transport),
      startedAt: Number(r.startedAt),
    };
    const written = { bytesIn: Number(r.bytesIn), packetsIn: Number(r.packetsIn), bytesOut: Number(r.bytesOut), packetsOut: Number(r.packetsOut) };
    entries.set(start.id, { start, written });
  }
  return entries;
}
