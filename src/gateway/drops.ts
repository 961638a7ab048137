/**
 * Drop counters of the forwarding path: plain numbers incremented in place (no metrics library per packet);
 * metrics and the admin API read them on demand.
 *
 * A full queue is counted by where it was full, so a bench or an operator sees where packets die:
 *   queue_full       the session and direction's own shaping bound (shaper.ts ShapingQueue.hasRoom)
 *   store_full       the user's scheduler's packet store had no room (user-scheduler.ts, packet-store.ts)
 *   send_queue_full  the tunnel connection refused the packet: its send queue was full (outbound.ts)
 *   tun_full         the TUN device refused the write (inbound.ts, tun/writer.ts)
 * aqm: dropped by the shaping scheduler's CoDel from a flow whose queue stood above its target (user-scheduler.ts).
 */
export const DROP_REASONS = [
  'rate_limit',
  'queue_full',
  'store_full',
  'send_queue_full',
  'tun_full',
  'spoofed',
  'no_route',
  'malformed',
  'client_to_client',
  'aqm',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type DropCounters = Record<DropReason, number>;

export function newDropCounters(): DropCounters {
  return {
    rate_limit: 0,
    queue_full: 0,
    store_full: 0,
    send_queue_full: 0,
    tun_full: 0,
    spoofed: 0,
    no_route: 0,
    malformed: 0,
    client_to_client: 0,
    aqm: 0,
  };
}
