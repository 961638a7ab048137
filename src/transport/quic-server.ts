/**
 * The gateway's listener for quicgate's own QUIC transport: one native endpoint on UDP host:port.
 *
 * Flow: Initial -> QuicGuard.admit (source throttle, pending bounds) -> TLS handshake (ALPN quicgate/1) ->
 *   the client's control stream carries the connect line (quic-auth.ts) -> Admission -> refused: CONNECTION_CLOSE
 *   with REFUSAL_CLOSE_CODE and the refusal; accepted: QuicConnection (bytes after the line go to it) ->
 *   onConnection handlers. A connection that is not admitted within handshake_timeout is closed.
 */
import type { Logger } from 'pino';
import { SERVER_DEFAULTS } from '../config/defaults.js';
import type { ConnectionLimits } from '../config/types.js';
import { MAX_CONTROL_MESSAGE_BYTES } from './control.js';
import type { ConnectionGuardStats } from './connection-guard.js';
import { parseConnectLine } from './quic-auth.js';
import { QuicConnection } from './quic-connection.js';
import { QuicEndpointHost, type QuicSlotHandler } from './quic-endpoint.js';
import { QuicGuard } from './quic-guard.js';
import { QuicCloseKind, type NativeQuicAddon, type NativeQuicStats } from './quic-native.js';
import type { AcceptedConnection, Admission, Refusal, TunnelListener } from './types.js';
import { REFUSAL_CLOSE_CODE, encodeRefusal, sourceOf } from './wt-auth.js';
import type { SourceThrottle } from './wt-server.js';

/** The QUIC idle timeout: well above every keepalive interval, so only a dead path ends a connection by it. */
export const QUIC_IDLE_TIMEOUT_MS = 60_000;

export interface QuicListenerOptions {
  readonly addon: NativeQuicAddon;
  readonly host: string;
  readonly port: number;
  readonly cert: string;
  readonly key: string;
  readonly admission: Admission;
  readonly sendQueuePackets: number;
  readonly logger: Logger;
  readonly limits?: ConnectionLimits;
  readonly throttle?: SourceThrottle;
}

export interface QuicTunnelListener extends TunnelListener {
  readonly port: number;
  /** New handshakes use the new certificate; live connections are untouched. */
  updateCertificate(certPem: string, keyPem: string): void;
  connectionStats(): ConnectionGuardStats;
  quicStats(): NativeQuicStats;
}

export function createQuicListener(options: QuicListenerOptions): QuicTunnelListener {
  const logger = options.logger;
  const limits = options.limits ?? {
    handshakeTimeoutMs: SERVER_DEFAULTS.handshakeTimeoutMs,
    maxPending: SERVER_DEFAULTS.maxPendingConnections,
    maxPendingPerSource: SERVER_DEFAULTS.maxPendingConnectionsPerSource,
  };
  const throttle = options.throttle;
  const handlers: ((accepted: AcceptedConnection) => void)[] = [];
  const live = new Set<QuicConnection>();
  let closed = false;
  // Assigned right below; the guard's callbacks run only once the endpoint exists.
  let host: QuicEndpointHost;
  const refuse = (slot: number, refusal: Refusal): void => {
    guard.refused(slot);
    host.native.closeConnection(slot, REFUSAL_CLOSE_CODE, encodeRefusal(refusal));
  };
  const guard = new QuicGuard({
    ...limits,
    ...(throttle === undefined ? {} : { sourceBlocked: (address: string) => throttle.isBlocked(address) }),
    logger,
    expire: (slot) => host.native.closeConnection(slot, REFUSAL_CLOSE_CODE, encodeRefusal({ status: 408, code: 'QG_ERR_PROTOCOL', message: 'no connect request in time' })),
  });

  /** A connection between its Initial and its admission: collects the connect line. */
  class PendingConnection implements QuicSlotHandler {
    private bytes: Buffer | null = null;
    private remote = 'unknown';
    private deciding = false;

    constructor(private readonly slot: number) {}

    onHandshake(remote: string): void {
      this.remote = remote;
      guard.handshake(this.slot);
    }

    onStream(data: Buffer): void {
      this.bytes = this.bytes === null ? data : Buffer.concat([this.bytes, data]);
      if (this.deciding) return;
      const newline = this.bytes.indexOf(0x0a);
      if (newline < 0) {
        if (this.bytes.length > MAX_CONTROL_MESSAGE_BYTES) refuse(this.slot, { status: 400, code: 'QG_ERR_PROTOCOL', message: 'connect request too long' });
        return;
      }
      this.deciding = true;
      void this.decide(this.bytes.toString('utf8', 0, newline));
    }

    onDatagram(): void {}
    onWritable(): void {}
    onPath(remote: string): void {
      this.remote = remote;
    }

    onClose(kind: number): void {
      guard.gone(this.slot, kind === QuicCloseKind.handshakeTimeout);
    }

    private async decide(line: string): Promise<void> {
      const slot = this.slot;
      const parsed = parseConnectLine(line, this.remote);
      if (!parsed.ok) {
        const source = sourceOf(this.remote);
        if ((await throttle?.admit(source)) ?? true) logger.info({ source, peer: this.remote, status: parsed.status, reason: parsed.message }, 'malformed session request refused');
        if (guard.isPending(slot)) refuse(slot, { status: parsed.status, code: parsed.code, message: parsed.message });
        return;
      }
      let refusal: Refusal | null = null;
      let user = parsed.request.user;
      try {
        const result = await options.admission(parsed.request);
        if (result.ok) user = result.user;
        else refusal = { status: result.status, code: result.code, message: result.message };
      } catch (err) {
        logger.error({ err, peer: this.remote }, 'admission failed');
        refusal = { status: 503, code: 'QG_ERR_SERVER_LIMIT', message: 'admission failed' };
      }
      // Gone meanwhile (timed out, the client left, the listener closed): nothing to answer.
      if (!guard.isPending(slot) || closed) return;
      if (refusal !== null) {
        refuse(slot, refusal);
        return;
      }
      guard.admitted(slot);
      const connection = new QuicConnection({ host, slot, role: 'server', peer: this.remote, sendQueuePackets: options.sendQueuePackets, logger });
      live.add(connection);
      void connection.closed.then(() => live.delete(connection));
      const rest = this.bytes!.subarray(this.bytes!.indexOf(0x0a) + 1);
      if (rest.length > 0) connection.onStream(rest);
      const accepted: AcceptedConnection = { connection, request: { ...parsed.request, user } };
      if (handlers.length === 0) connection.close({ reason: 'server_shutdown', message: 'no handler' });
      for (const handler of handlers) handler(accepted);
    }
  }

  host = new QuicEndpointHost(options.addon, {
    server: true,
    host: options.host,
    port: options.port,
    certPem: options.cert,
    keyPem: options.key,
    handshakeTimeoutMs: limits.handshakeTimeoutMs,
    idleTimeoutMs: QUIC_IDLE_TIMEOUT_MS,
    onAccept: (source, slot) => {
      if (closed || !guard.admit(source, slot)) return false;
      host.attach(slot, new PendingConnection(slot));
      return true;
    },
  });
  const port = host.native.address().port;

  return {
    port,
    kinds: ['quic'],
    onConnection(handler) {
      handlers.push(handler);
    },
    connectionStats: () => guard.stats(live.size),
    quicStats: () => host.stats(),
    updateCertificate(certPem, keyPem) {
      host.native.updateCertificate(certPem, keyPem);
    },
    async close() {
      if (closed) return;
      closed = true;
      guard.close();
      // Live connections were closed by their owners (the gateway) before this; what is left is dropped.
      host.close();
    },
  };
}
