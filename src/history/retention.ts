/** Retention: deletes history older than `retentionDays` (0 keeps everything). */
import type { SqliteDatabase } from './sqlite.js';

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;
// A month-period quota row may go unwritten for up to a month and still be the current period's usage.
export const QUOTA_MIN_KEEP_MS = 32 * DAY_MS;

export interface RetentionResult {
  readonly sessions: number;
  readonly rejections: number;
  readonly traffic: number;
  readonly quota: number;
}

/** Deletes closed sessions that ended before the cutoff, older rejections, traffic hours and spent quota rows. */
export function applyRetention(db: SqliteDatabase, retentionDays: number, wallNowMs: number): RetentionResult {
  if (retentionDays <= 0) return { sessions: 0, rejections: 0, traffic: 0, quota: 0 };
  const cutoff = wallNowMs - retentionDays * DAY_MS;
  const quotaCutoff = Math.min(cutoff, wallNowMs - QUOTA_MIN_KEEP_MS);
  return db.transaction(
    () => ({
      sessions: db.prepare("DELETE FROM sessions WHERE status = 'closed' AND ended_at < ?").run(cutoff).changes,
      rejections: db.prepare('DELETE FROM rejection_counts WHERE hour_ms + ? <= ?').run(HOUR_MS, cutoff).changes,
      traffic: db.prepare('DELETE FROM traffic_hourly WHERE hour_ms + ? <= ?').run(HOUR_MS, cutoff).changes,
      quota: db.prepare('DELETE FROM quota_usage WHERE updated_at < ?').run(quotaCutoff).changes,
    }),
    'immediate',
  );
}
