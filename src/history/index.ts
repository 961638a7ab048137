/** Public surface of the session history. */
export { HistoryStore, type HistoryStoreOptions } from './store.js';
export { periodKey, type QuotaPeriod } from './quota.js';
export type { HourlyRow, RecentRejectionsQuery, RecentSessionsQuery, SearchSessionsQuery, StatsQuery } from './queries.js';
export type * from './records.js';
