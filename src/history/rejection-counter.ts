/**
 * Rejections counted in memory per (source, reason, UTC hour) until the next write: a flood of refusals costs a
 * map update each and at most `rowsPerHour` rows per hour in the file (plus one "*" row per reason for every
 * further source), never a row per refusal, and never crowds session records out of the write queue.
 */
import type { RejectReason } from '../gateway/session.js';
import type { RejectionCount, RejectionRecord } from './records.js';

const HOUR_MS = 3_600_000;
/** The source of the row that counts refusals from sources beyond the hourly row limit. */
export const OTHER_SOURCES = '*';

interface Pending {
  readonly source: string;
  readonly reason: RejectReason;
  readonly hourMs: number;
  user: string | null;
  count: number;
  firstAt: number;
  lastAt: number;
}

export class RejectionCounter {
  private readonly pending = new Map<string, Pending>();
  /** (reason, source) pairs that have a row in the hour, for the current and the previous hour only. */
  private readonly rowsOf = new Map<number, Set<string>>();
  private latestHour = Number.NEGATIVE_INFINITY;
  private limitedHour = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly rowsPerHour: number,
    /** Called once per hour the limit is first reached in (for a log line). */
    private readonly onLimit: (hourMs: number) => void = () => undefined,
  ) {}

  /** Rows waiting to be written. */
  get size(): number {
    return this.pending.size;
  }

  /** Counts the refusal; false (nothing counted) when it needs a new pending row and `newRow` is false. */
  add(r: RejectionRecord, newRow = true): boolean {
    const hourMs = Math.floor(r.at / HOUR_MS) * HOUR_MS;
    const source = this.admitSource(hourMs, r.source, r.reason);
    const key = `${hourMs}\u0000${r.reason}\u0000${source}`;
    const entry = this.pending.get(key);
    if (entry === undefined) {
      if (!newRow) return false;
      this.pending.set(key, { source, reason: r.reason, hourMs, user: r.user, count: 1, firstAt: r.at, lastAt: r.at });
      return true;
    }
    entry.count++;
    if (r.user !== null) entry.user = r.user;
    entry.firstAt = Math.min(entry.firstAt, r.at);
    entry.lastAt = Math.max(entry.lastAt, r.at);
    return true;
  }

  /** Copies of the pending rows, for a write. */
  snapshot(): RejectionCount[] {
    return [...this.pending.values()].map((p) => ({ ...p }));
  }

  /** Forgets what a committed write held; counts added meanwhile stay pending. */
  written(rows: readonly RejectionCount[]): void {
    for (const r of rows) {
      const key = `${r.hourMs}\u0000${r.reason}\u0000${r.source}`;
      const entry = this.pending.get(key);
      if (entry === undefined) continue;
      entry.count -= r.count;
      if (entry.count <= 0) this.pending.delete(key);
    }
  }

  clear(): void {
    this.pending.clear();
  }

  /** The source as given, or OTHER_SOURCES once the hour has its share of rows (older hours: always). */
  private admitSource(hourMs: number, source: string, reason: RejectReason): string {
    if (hourMs > this.latestHour) {
      this.latestHour = hourMs;
      for (const h of this.rowsOf.keys()) if (h < hourMs - HOUR_MS) this.rowsOf.delete(h);
    }
    let rows = this.rowsOf.get(hourMs);
    if (rows === undefined) {
      if (hourMs < this.latestHour - HOUR_MS) return OTHER_SOURCES;
      rows = new Set();
      this.rowsOf.set(hourMs, rows);
    }
    const pair = `${reason}\u0000${source}`;
    if (rows.has(pair)) return source;
    if (rows.size < this.rowsPerHour) {
      rows.add(pair);
      return source;
    }
    if (this.limitedHour !== hourMs) {
      this.limitedHour = hourMs;
      this.onLimit(hourMs);
    }
    return OTHER_SOURCES;
  }
}
