/**
 * Several tunnel listeners as one (the gateway takes one TunnelListener): quicgate's own QUIC on UDP and the
 * WebTransport listener (HTTP/2 on TCP, the library's HTTP/3 when it is on) side by side on the same port number.
 */
import type { ConnectionGuardStats, GuardCloseReason } from './connection-guard.js';
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
      const parts = listeners.map((l) => l.connectionStats?.()).filter((s): s is ConnectionGuardStats => s !== undefined);
      const closed = {} as Record<GuardCloseReason, number>;
      for (const part of parts) for (const [reason, n] of Object.entries(part.closed) as [GuardCloseReason, number][]) closed[reason] = (closed[reason] ?? 0) + n;
      return { pending: parts.reduce((a, s) => a + s.pending, 0), open: parts.reduce((a, s) => a + s.open, 0), closed };
    },
  };
}
