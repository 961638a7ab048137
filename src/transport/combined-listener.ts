/**
 * Several tunnel listeners as one (the gateway takes one TunnelListener): quicgate's own QUIC on UDP and the
 * WebTransport listener (HTTP/2 on TCP, the library's HTTP/3 when it is on) side by side on the same port number.
 */
import { sumGuardStats, type ConnectionGuardStats } from './connection-guard.js';
import type { TunnelListener } from './types.js';

export function combineListeners(listeners: readonly TunnelListener[]): TunnelListener {
  return {
    kinds: listeners.flatMap((l) => l.kinds),
    onConnection(handler) {
      for (const listener of listeners) listener.onConnection(handler);
    },
    async close() {
      await Promise.all(listeners.map((l) => l.close()));
    },
    connectionStats() {
      return sumGuardStats(listeners.map((l) => l.connectionStats?.()).filter((s): s is ConnectionGuardStats => s !== undefined));
    },
  };
}
