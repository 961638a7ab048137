/**
 * Writes one batch in one transaction (called by the store's flush, never on the forwarding path).
 *
 *   queued records in order (start → INSERT, end → UPDATE + traffic delta)
 *   → live sessions' counter snapshots (UPDATE + traffic delta since the last written counters)
 *   → traffic deltas summed per user and hour (UPSERT add) → quota increments (UPSERT add)
 *   → rejection counts per source, reason and hour (UPSERT add)
 *   → on commit only: remember what was written (LiveSessions) so deltas never count twice.
 */
import { newCounters, type TrafficCounters } from '../gateway/session.js';
import type { CounterSnapshot, RejectionCount, SessionEndRecord, SessionStartRecord } from './records.js';
import type { SqliteDatabase, SqliteStatement } from './sqlite.js';

export type QueuedRecord =
  | { readonly kind: 'start'; readonly record: SessionStartRecord }
  | { readonly kind: 'end'; readonly record: SessionEndRecord };

export interface QuotaIncrement {
  readonly user: string;
  readonly periodKey: string;
  readonly bytes: number;
}

export interface Batch {
  readonly records: readonly QueuedRecord[];
  /** Values copied at flush time. */
  readonly snapshots: readonly CounterSnapshot[];
  readonly quota: readonly QuotaIncrement[];
  readonly rejections: readonly RejectionCount[];
  /** Live sessions to insert again (after switching to a fresh file). */
  readonly reseed: readonly SessionStartRecord[];
  readonly wallNowMs: number;
}

const HOUR_MS = 3_600_000;

interface LiveEntry {
  readonly start: SessionStartRecord;
  readonly written: TrafficCounters;
}

/** Sessions whose start row is written and not yet ended, with the counters last written for them. */
export class LiveSessions {
  private readonly entries = new Map<string, LiveEntry>();

  get size(): number {
    return this.entries.size;
  }

  starts(): SessionStartRecord[] {
    return [...this.entries.values()].map((e) => e.start);
  }

  get(id: string): LiveEntry | undefined {
    return this.entries.get(id);
  }

  /** A copy of the entries, to put back with restore() when an enclosing transaction rolls back. */
  save(): ReadonlyMap<string, LiveEntry> {
    return new Map(this.entries);
  }

  restore(saved: ReadonlyMap<string, LiveEntry>): void {
    this.entries.clear();
    for (const [id, entry] of saved) this.entries.set(id, entry);
  }

  apply(changes: ReadonlyMap<string, LiveEntry | null>): void {
    for (const [id, entry] of changes) {
      if (entry === null) this.entries.delete(id);
      else this.entries.set(id, entry);
    }
  }
}

/** Prepared statements of one connection. */
export class BatchStatements {
  readonly insertSession: SqliteStatement;
  readonly updateCounters: SqliteStatement;
  readonly endSession: SqliteStatement;
  readonly addRejections: SqliteStatement;
  readonly addTraffic: SqliteStatement;
  readonly addQuota: SqliteStatement;

  constructor(readonly db: SqliteDatabase) {
    this.insertSession = db.prepare(
      // Not OR IGNORE: that would also swallow NOT NULL / CHECK violations; only a repeated id is expected.
      `INSERT INTO sessions (id, user, ipv4, ipv6, peer, transport, started_at, status, updated_at)
       VALUES (@id, @user, @ipv4, @ipv6, @peer, @transport, @startedAt, 'open', @startedAt)
       ON CONFLICT (id) DO NOTHING`,
    );
    this.updateCounters = db.prepare(
      `UPDATE sessions SET bytes_in = @bytesIn, packets_in = @packetsIn, bytes_out = @bytesOut,
         packets_out = @packetsOut, updated_at = @at
       WHERE id = @id AND status = 'open'`,
    );
    this.endSession = db.prepare(
      `UPDATE sessions SET status = 'closed', ended_at = @endedAt, duration_ms = MAX(0, @endedAt - started_at),
         bytes_in = @bytesIn, packets_in = @packetsIn, bytes_out = @bytesOut, packets_out = @packetsOut,
         close_reason = @reason, close_message = @message, updated_at = @endedAt
       WHERE id = @id AND status = 'open'`,
    );
    this.addRejections = db.prepare(
      `INSERT INTO rejection_counts (source, reason, hour_ms, user, count, first_at, last_at)
       VALUES (@source, @reason, @hourMs, @user, @count, @firstAt, @lastAt)
       ON CONFLICT (source, reason, hour_ms) DO UPDATE SET count = count + excluded.count,
         first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at),
         user = COALESCE(excluded.user, user)`,
    );
    this.addTraffic = db.prepare(
      `INSERT INTO traffic_hourly (user, hour_ms, bytes_in, bytes_out) VALUES (@user, @hourMs, @bytesIn, @bytesOut)
       ON CONFLICT (user, hour_ms) DO UPDATE SET bytes_in = bytes_in + excluded.bytes_in,
         bytes_out = bytes_out + excluded.bytes_out`,
    );
    this.addQuota = db.prepare(
      `INSERT INTO quota_usage (user, period_key, bytes, updated_at) VALUES (@user, @periodKey, @bytes, @at)
       ON CONFLICT (user, period_key) DO UPDATE SET bytes = bytes + excluded.bytes, updated_at = excluded.updated_at`,
    );
  }
}

/** Writes the batch atomically; LiveSessions changes only if the transaction commits. Throws on failure. */
export function writeBatch(st: BatchStatements, batch: Batch, live: LiveSessions): void {
  const staged = new Map<string, LiveEntry | null>();
  const lookup = (id: string): LiveEntry | undefined => {
    const s = staged.get(id);
    return s === null ? undefined : (s ?? live.get(id));
  };
  // Summed per user and hour first: one upsert per user instead of one per session.
  const traffic = new Map<string, { user: string; hourMs: number; bytesIn: number; bytesOut: number }>();
  const addTraffic = (entry: LiveEntry, now: TrafficCounters, atMs: number): void => {
    const bytesIn = Math.max(0, now.bytesIn - entry.written.bytesIn);
    const bytesOut = Math.max(0, now.bytesOut - entry.written.bytesOut);
    if (bytesIn === 0 && bytesOut === 0) return;
    const hourMs = Math.floor(atMs / HOUR_MS) * HOUR_MS;
    const key = `${entry.start.user}\u0000${hourMs}`;
    const sum = traffic.get(key);
    if (sum === undefined) traffic.set(key, { user: entry.start.user, hourMs, bytesIn, bytesOut });
    else {
      sum.bytesIn += bytesIn;
      sum.bytesOut += bytesOut;
    }
  };

  st.db.transaction(() => {
    for (const start of batch.reseed) {
      st.insertSession.run(start);
      if (lookup(start.id) === undefined) staged.set(start.id, { start, written: newCounters() });
    }
    for (const item of batch.records) {
      switch (item.kind) {
        case 'start': {
          const r = item.record;
          st.insertSession.run(r);
          if (lookup(r.id) === undefined) staged.set(r.id, { start: r, written: newCounters() });
          break;
        }
        case 'end': {
          const r = item.record;
          st.endSession.run({ ...r.counters, id: r.id, endedAt: r.endedAt, reason: r.reason, message: r.message });
          const entry = lookup(r.id);
          if (entry !== undefined) addTraffic(entry, r.counters, r.endedAt);
          staged.set(r.id, null);
          break;
        }
      }
    }
    for (const snap of batch.snapshots) {
      const entry = lookup(snap.id);
      if (entry === undefined) continue; // not written yet, or already ended
      st.updateCounters.run({ ...snap.counters, id: snap.id, at: batch.wallNowMs });
      addTraffic(entry, snap.counters, batch.wallNowMs);
      staged.set(snap.id, { start: entry.start, written: snap.counters });
    }
    for (const t of traffic.values()) st.addTraffic.run(t);
    for (const q of batch.quota) st.addQuota.run({ ...q, at: batch.wallNowMs });
    for (const r of batch.rejections) st.addRejections.run(r);
  }, 'immediate');
  live.apply(staged);
}
