/**
 * The `assign` control message a new session is sent: its addresses, the gateway's, MTU, DNS, routes and the
 * keepalive interval, and the session's resume secret (which the client presents to take the session over when
 * it reconnects). The MTU is the session's (transport/mtu.ts): the configured one, lowered to what one of
 * this session's datagrams carries whole.
 */
import type { ServerConfig } from '../config/types.js';
import type { AssignControl } from '../transport/control.js';
import { sessionMtu } from '../transport/mtu.js';
import type { Session } from './session.js';

export function buildAssignment(config: ServerConfig, session: Session, datagramBytes: number, resumeSecret: string): AssignControl {
  const v4 = config.networks.ipv4;
  const v6 = config.networks.ipv6;
  const carriesIpv6 = v6 !== null && v6 !== undefined && session.ipv6 !== null && session.ipv6 !== undefined;
  return {
    type: 'assign',
    sessionId: session.id,
    ipv4: v4 && session.ipv4 ? { address: session.ipv4, prefix: prefixOf(v4.cidr), gateway: v4.gateway } : null,
    ipv6: v6 && session.ipv6 ? { address: session.ipv6, prefix: prefixOf(v6.cidr), gateway: v6.gateway } : null,
    mtu: sessionMtu(config.mtu, datagramBytes, carriesIpv6),
    dns: [...config.dns],
    routes: [...config.routes],
    keepaliveMs: config.keepaliveIntervalMs,
    resumeSecret,
  };
}

function prefixOf(cidr: string): number {
  return Number(cidr.slice(cidr.lastIndexOf('/') + 1));
}
