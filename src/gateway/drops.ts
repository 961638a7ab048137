/**
 * Drop counters of the forwarding path: plain numbers incremented in place (no metrics library per packet);
 * metrics and the admin API read them on demand.
 */
/** aqm: dropped by the shaping scheduler's CoDel from a flow whose queue stood above its target (user-scheduler.ts). */
export const DROP_REASONS = ['rate_limit', 'queue_full', 'spoofed', 'no_route', 'malformed', 'client_to_client', 'aqm'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type DropCounters = Record<DropReason, number>;

export function newDropCounters(): DropCounters {
  return { rate_limit: 0, queue_full: 0, spoofed: 0, no_route: 0, malformed: 0, client_to_client: 0, aqm: 0 };
}
