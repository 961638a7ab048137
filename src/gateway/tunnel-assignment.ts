/**
 * The `assign` control message a new session is sent: its addresses, the gateway's, MTU, DNS, routes and the
 * keepalive interval, and the session's resume secret (which the client presents to take the session over when
 * it reconnects).
 */
import type { ServerConfig } from '../config/types.js';
import type { AssignControl } from '../transport/control.js';
import type { Session } from './session.js';

export function buildAssignment(config: ServerConfig, session: Session, resumeSecret: string): AssignControl {
  const v4 = config.networks.ipv4;
  const v6 = config.networks.ipv6;
  return {
    type: 'assign',
    sessionId: session.id,
    ipv4: v4 && session.ipv4 ? { address: session.ipv4, prefix: prefixOf(v4.cidr), gateway: v4.gateway } : null,
    ipv6: v6 && session.ipv6 ? { address: session.ipv6, prefix: prefixOf(v6.cidr), gateway: v6.gateway } : null,
    mtu: config.mtu,
    dns: [...config.dns],
    routes: [...config.routes],
    keepaliveMs: config.keepaliveIntervalMs,
    resumeSecret,
  };
}

function prefixOf(cidr: string): number {
  return Number(cidr.slice(cidr.lastIndexOf('/') + 1));
}
