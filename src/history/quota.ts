/** Quota periods: UTC period keys and the stored usage per user and period. */
import { z } from 'zod';
import type { SqliteDatabase } from './sqlite.js';

export type QuotaPeriod = 'day' | 'month';

/** "2026-11-23" for a day, "2026-11" for a month, both in UTC. */
export function periodKey(period: QuotaPeriod, wallMs: number): string {
  const iso = new Date(wallMs).toISOString();
  return period === 'day' ? iso.slice(0, 10) : iso.slice(0, 7);
}

const usageRow = z.object({ bytes: z.number().int().nonnegative() });

/** Bytes stored for the user and period (0 when none). */
export function storedQuotaUsage(db: SqliteDatabase, user: string, key: string): number {
  const row: unknown = db.prepare('SELECT bytes FROM quota_usage WHERE user = ? AND period_key = ?').get(user, key);
  return row === undefined ? 0 : usageRow.parse(row).bytes;
}
