/**
 * A live session as the admin API shows it: one function for this gateway's own list and for the record it
 * publishes to the rest of the fleet (src/fleet/session-registry.ts), so both show the same fields.
 */
import type { SessionView } from '../admin/backend.js';
import type { Session } from './session.js';

export function sessionViewOf(s: Session, rate: { readonly in: number; readonly out: number }): SessionView {
  return {
    id: s.id,
    user: s.user,
    ipv4: s.ipv4,
    ipv6: s.ipv6,
    peer: s.peer,
    transport: s.transport,
    startedAt: new Date(s.startedAt).toISOString(),
    // lastActivity is monotonic; map it onto the wall clock through the session's start.
    lastActivityAt: new Date(s.startedAt + (s.lastActivity - s.startedMono)).toISOString(),
    bytesIn: s.counters.bytesIn,
    bytesOut: s.counters.bytesOut,
    packetsIn: s.counters.packetsIn,
    packetsOut: s.counters.packetsOut,
    rateIn: Math.round(rate.in),
    rateOut: Math.round(rate.out),
  };
}
