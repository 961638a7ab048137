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

export interface LiveEntry {
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

/** One statement of a batch, with its parameters (the same plan runs on SQLite and on PostgreSQL). */
export type BatchOp =
  | { readonly op: 'insertSession'; readonly row: SessionStartRecord }
  | { readonly op: 'endSession'; readonly row: EndRow }
  | { readonly op: 'updateCounters'; readonly row: TrafficCounters & { readonly id: string; readonly at: number } }
  | { readonly op: 'addTraffic'; readonly row: TrafficRow }
  | { readonly op: 'addQuota'; readonly row: QuotaIncrement & { readonly at: number } }
  | { readonly op: 'addRejections'; readonly row: RejectionCount };

export type EndRow = TrafficCounters & { readonly id: string; readonly endedAt: number; readonly reason: SessionEndRecord['reason']; readonly message: string | null };
export interface TrafficRow {
  readonly user: string;
  readonly hourMs: number;
  bytesIn: number;
  bytesOut: number;
}

export interface BatchPlan {
  readonly ops: readonly BatchOp[];
  /** What LiveSessions becomes once the ops are committed (apply it then, and only then). */
  readonly staged: ReadonlyMap<string, LiveEntry | null>;
}

/** Prepared statements of one SQLite connection; every row carries this gateway's id. */
export class BatchStatements {
  private readonly statements: Readonly<Record<BatchOp['op'], SqliteStatement>>;

  constructor(
    readonly db: SqliteDatabase,
    private readonly gatewayId: string,
  ) {
    this.statements = {
      insertSession: db.prepare(
        // Not OR IGNORE: that would also swallow NOT NULL / CHECK violations; only a repeated id is expected.
        `INSERT INTO sessions (id, gateway_id, user, ipv4, ipv6, peer, transport, started_at, status, updated_at)
         VALUES (@id, @gateway, @user, @ipv4, @ipv6, @peer, @transport, @startedAt, 'open', @startedAt)
         ON CONFLICT (id) DO NOTHING`,
      ),
      updateCounters: db.prepare(
        `UPDATE sessions SET bytes_in = @bytesIn, packets_in = @packetsIn, bytes_out = @bytesOut,
           packets_out = @packetsOut, updated_at = @at
         WHERE id = @id AND status = 'open'`,
      ),
      endSession: db.prepare(
        `UPDATE sessions SET status = 'closed', ended_at = @endedAt, duration_ms = MAX(0, @endedAt - started_at),
           bytes_in = @bytesIn, packets_in = @packetsIn, bytes_out = @bytesOut, packets_out = @packetsOut,
           close_reason = @reason, close_message = @message, updated_at = @endedAt
         WHERE id = @id AND status = 'open'`,
      ),
      addRejections: db.prepare(
        `INSERT INTO rejection_counts (source, reason, hour_ms, gateway_id, user, count, first_at, last_at)
         VALUES (@source, @reason, @hourMs, @gateway, @user, @count, @firstAt, @lastAt)
         ON CONFLICT (source, reason, hour_ms, gateway_id) DO UPDATE SET count = count + excluded.count,
           first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at),
           user = COALESCE(excluded.user, user)`,
      ),
      addTraffic: db.prepare(
        `INSERT INTO traffic_hourly (user, hour_ms, gateway_id, bytes_in, bytes_out) VALUES (@user, @hourMs, @gateway, @bytesIn, @bytesOut)
         ON CONFLICT (user, hour_ms, gateway_id) DO UPDATE SET bytes_in = bytes_in + excluded.bytes_in,
           bytes_out = bytes_out + excluded.bytes_out`,
      ),
      addQuota: db.prepare(
        `INSERT INTO quota_usage (user, period_key, bytes, updated_at) VALUES (@user, @periodKey, @bytes, @at)
         ON CONFLICT (user, period_key) DO UPDATE SET bytes = bytes + excluded.bytes, updated_at = excluded.updated_at`,
      ),
    };
  }

  run(op: BatchOp): void {
    this.statements[op.op].run({ ...op.row, gateway: this.gatewayId });
  }
}

/**
 * The statements of a batch in order, and what the live sessions become when they commit. Pure: the caller
 * runs the ops in one transaction and applies `staged` to LiveSessions only after the commit.
 */
export function planBatch(batch: Batch, live: LiveSessions): BatchPlan {
  const ops: BatchOp[] = [];
  const staged = new Map<string, LiveEntry | null>();
  const lookup = (id: string): LiveEntry | undefined => {
    const s = staged.get(id);
    return s === null ? undefined : (s ?? live.get(id));
  };
  // Summed per user and hour first: one upsert per user instead of one per session.
  const traffic = new Map<string, TrafficRow>();
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
  const insert = (start: SessionStartRecord): void => {
    ops.push({ op: 'insertSession', row: start });
    if (lookup(start.id) === undefined) staged.set(start.id, { start, written: newCounters() });
  };

  for (const start of batch.reseed) insert(start);
  for (const item of batch.records) {
    if (item.kind === 'start') {
      insert(item.record);
      continue;
    }
    const r = item.record;
    ops.push({ op: 'endSession', row: { ...r.counters, id: r.id, endedAt: r.endedAt, reason: r.reason, message: r.message } });
    const entry = lookup(r.id);
    if (entry !== undefined) addTraffic(entry, r.counters, r.endedAt);
    staged.set(r.id, null);
  }
  for (const snap of batch.snapshots) {
    const entry = lookup(snap.id);
    if (entry === undefined) continue; // not written yet, or already ended
    ops.push({ op: 'updateCounters', row: { ...snap.counters, id: snap.id, at: batch.wallNowMs } });
    addTraffic(entry, snap.counters, batch.wallNowMs);
    staged.set(snap.id, { start: entry.start, written: snap.counters });
  }
  for (const t of traffic.values()) ops.push({ op: 'addTraffic', row: t });
  // In one order on every gateway: two transactions adding to the same fleet-wide rows cannot deadlock.
  const quota = [...batch.quota].sort((a, b) => (a.user === b.user ? cmp(a.periodKey, b.periodKey) : cmp(a.user, b.user)));
  for (const q of quota) ops.push({ op: 'addQuota', row: { ...q, at: batch.wallNowMs } });
  for (const r of batch.rejections) ops.push({ op: 'addRejections', row: r });
  return { ops, staged };
}

/** Writes the batch atomically on SQLite; LiveSessions changes only if the transaction commits. Throws on failure. */
export function writeBatch(st: BatchStatements, batch: Batch, live: LiveSessions): void {
  const plan = planBatch(batch, live);
  st.db.transaction(() => {
    for (const op of plan.ops) st.run(op);
  }, 'immediate');
  live.apply(plan.staged);
}

/** The batch split into parts of one record each (to find the one a database refuses). */
export function singleParts(batch: Batch): Batch[] {
  const empty = { records: [], snapshots: [], quota: [], rejections: [], reseed: [], wallNowMs: batch.wallNowMs };
  return [
    ...batch.reseed.map((start) => ({ ...empty, reseed: [start] })),
    ...batch.records.map((record) => ({ ...empty, records: [record] })),
    ...batch.snapshots.map((snapshot) => ({ ...empty, snapshots: [snapshot] })),
    ...batch.quota.map((q) => ({ ...empty, quota: [q] })),
    ...batch.rejections.map((r) => ({ ...empty, rejections: [r] })),
  ];
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
