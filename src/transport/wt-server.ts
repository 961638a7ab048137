/**
 * The gateway's tunnel listener: WebTransport over HTTP/2 always, plus HTTP/3 on the same port number (UDP)
 * when the optional QUIC module loads.
 *
 * Flow: CONNECT request -> request callback: parse credentials (headers on HTTP/2, `qg` query on HTTP/3,
 *   see wt-auth.ts) -> Admission -> refuse with status + x-quicgate-error/-message headers, or accept with a
 *   ticket in userData -> session arrives on sessionStream -> wait for the client's control stream ->
 *   WebTransportConnection -> onConnection handler.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { SERVER_DEFAULTS } from '../config/defaults.js';
import type { ConnectionLimits } from '../config/types.js';
import { QuicgateError } from '../errors.js';
import { ConnectionGuard, type ConnectionGuardStats } from './connection-guard.js';
import { detectHttp3 } from './http3.js';
import { listenError } from './listen-error.js';
import { TicketStore } from './tickets.js';
import type { AcceptedConnection, Admission, ConnectRequest, TransportKind, TunnelListener } from './types.js';
import { CONTROL_STREAM_TIMEOUT_MS, ERROR_HEADER, MESSAGE_HEADER, TUNNEL_PATH, parseConnectRequest, sourceOf } from './wt-auth.js';
import { WebTransportConnection } from './wt-connection.js';
import { findHttp2SessionStream, findNodeHttp2Server, forgetRequest, loadWebTransportLibrary, type WtBidiStream, type WtRequestEvent, type WtRequestResult, type WtServer, type WtServerSession } from './wt-lib.js';

export interface TunnelListenerOptions {
  readonly host: string;
  /** 0 picks a free port (HTTP/3 then uses the same number). */
  readonly port: number;
  readonly cert: string;
  readonly key: string;
  readonly admission: Admission;
  readonly sendQueuePackets: number;
  readonly logger: Logger;
  readonly http3: 'auto' | 'off';
  /** Bounds on connections without an authenticated session (connection-guard.ts); the config defaults if absent. */
  readonly limits?: ConnectionLimits;
  /** The per-source attempt throttle: malformed requests spend its budget; blocked sources are dropped at accept. */
  readonly throttle?: SourceThrottle;
}

const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: SERVER_DEFAULTS.handshakeTimeoutMs,
  maxPending: SERVER_DEFAULTS.maxPendingConnections,
  maxPendingPerSource: SERVER_DEFAULTS.maxPendingConnectionsPerSource,
};

export interface SourceThrottle {
  /** Counts an attempt; false when the source is throttled. */
  admit(sourceAddress: string): Promise<boolean>;
  isBlocked(sourceAddress: string): boolean;
}

export interface WebTransportListener extends TunnelListener {
  readonly port: number;
  /** Why HTTP/3 is not served (undefined when it is, or when it was turned off). */
  readonly http3Unavailable: string | undefined;
  /** Swap the TLS certificate for new handshakes (no restart). */
  updateCertificate(certPem: string, keyPem: string): void;
  /** Connections without a session, and what the guard closed (HTTP/2). */
  connectionStats(): ConnectionGuardStats;
}

interface Ticket {
  readonly request: ConnectRequest;
}

export async function createTunnelListener(options: TunnelListenerOptions): Promise<WebTransportListener> {
  const lib = await loadWebTransportLibrary();
  const logger = options.logger;
  const throttle = options.throttle;
  const limits = options.limits ?? DEFAULT_CONNECTION_LIMITS;
  const guard = new ConnectionGuard({ ...limits, sourceBlocked: throttle && ((address) => throttle.isBlocked(address)), logger });
  // The guard watches the HTTP/2 (TCP) connections only; an HTTP/3 peer's "address:port" is a UDP one.
  const guardFor = (kind: TransportKind): ConnectionGuard | undefined => (kind === 'h2' ? guard : undefined);
  // A ticket not taken within the handshake deadline is dropped with the password it holds.
  const tickets = new TicketStore<Ticket>({ ttlMs: limits.handshakeTimeoutMs, max: limits.maxPending, expire: (t) => guardFor(t.request.transport)?.released(t.request.peer) });
  const handlers: ((accepted: AcceptedConnection) => void)[] = [];
  const servers: { kind: 'h2' | 'h3'; server: WtServer }[] = [];
  let closed = false;

  const serverOptions = (port: number) => ({
    port,
    host: options.host,
    // The library requires a secret (HTTP/3 retry tokens); nothing persists it.
    secret: randomBytes(32).toString('hex'),
    cert: options.cert,
    privKey: options.key,
  });

  const requestCallback = (kind: 'h2' | 'h3') => async (event: WtRequestEvent): Promise<WtRequestResult> => {
    const peer = event.peerAddress ?? 'unknown';
    const parsed = parseConnectRequest(event, kind);
    if (!parsed.ok) {
      // Spends the source's attempt budget; logged while within it (a flood is logged once, by the throttle).
      const source = sourceOf(peer);
      if ((await throttle?.admit(source)) ?? true) logger.info({ source, peer, status: parsed.status, reason: parsed.message }, 'malformed session request refused');
      guardFor(kind)?.refused(peer);
      return refusal(parsed.status, parsed.code, parsed.message);
    }
    try {
      const result = await options.admission(parsed.request);
      if (!result.ok) {
        guardFor(kind)?.refused(peer);
        return refusal(result.status, result.code, result.message);
      }
      guardFor(kind)?.admitted(peer);
      const id = tickets.issue({ request: { ...parsed.request, user: result.user } });
      return { status: 200, path: TUNNEL_PATH, userData: { ticket: id } };
    } catch (err) {
      logger.error({ err, peer: parsed.request.peer }, 'admission failed');
      guardFor(kind)?.refused(peer);
      return refusal(503, 'QG_ERR_SERVER_LIMIT', 'admission failed');
    }
  };

  const acceptSessions = async (kind: 'h2' | 'h3', server: WtServer): Promise<void> => {
    const reader = server.sessionStream(TUNNEL_PATH).getReader();
    for (;;) {
      let next;
      try {
        next = await reader.read();
      } catch {
        return;
      }
      if (next.done) return;
      void openConnection(kind, next.value);
    }
  };

  const openConnection = async (kind: 'h2' | 'h3', session: WtServerSession): Promise<void> => {
    session.closed.then(undefined, () => {});
    const ticketId = readTicket(session.userData);
    const ticket = ticketId === undefined ? undefined : tickets.take(ticketId);
    forgetRequest(session);
    if (!ticket || closed) {
      if (ticket) guardFor(kind)?.released(ticket.request.peer);
      closeQuietly(session, 'server_shutdown');
      return;
    }
    const peer = ticket.request.peer;
    try {
      await session.ready;
      const controlStream = await firstStream(session);
      const connection = WebTransportConnection.open({
        kind,
        role: 'server',
        peer: ticket.request.peer,
        session,
        controlStream,
        drainStream: kind === 'h2' ? findHttp2SessionStream(session) : null,
        sendQueuePackets: options.sendQueuePackets,
        logger,
      });
      void connection.closed.then(() => guardFor(kind)?.released(peer));
      const accepted: AcceptedConnection = { connection, request: ticket.request };
      if (handlers.length === 0) connection.close({ reason: 'server_shutdown', message: 'no handler' });
      for (const handler of handlers) handler(accepted);
    } catch (err) {
      logger.info({ err, peer, user: ticket.request.user }, 'session failed before its control stream opened');
      guardFor(kind)?.released(peer);
      closeQuietly(session, 'error');
    }
  };

  const h2 = new lib.Http2Server(serverOptions(options.port));
  h2.setRequestCallback(requestCallback('h2'));
  void acceptSessions('h2', h2);
  h2.startServer();
  const nodeServer = findNodeHttp2Server(h2);
  if (nodeServer === null) throw new QuicgateError('QG_ERR_LISTEN', 'the WebTransport library has no node:http2 server where expected (internals changed)');
  guard.attach(nodeServer);
  try {
    await h2.ready;
  } catch (err) {
    throw listenError('the tunnel listener (HTTP/2)', 'TCP', options.host, options.port, err);
  }
  const port = h2.address()?.port ?? options.port;
  servers.push({ kind: 'h2', server: h2 });

  let http3Unavailable: string | undefined;
  if (options.http3 === 'auto') {
    const support = await detectHttp3();
    if (support.available) {
      try {
        await lib.quicheLoaded;
        const h3 = new lib.Http3Server(serverOptions(port));
        h3.setRequestCallback(requestCallback('h3'));
        void acceptSessions('h3', h3);
        h3.startServer();
        await h3.ready;
        servers.push({ kind: 'h3', server: h3 });
      } catch (err) {
        http3Unavailable = `HTTP/3 server failed to start: ${String(err)}`;
      }
    } else {
      http3Unavailable = support.reason;
    }
  }

  const kinds: TransportKind[] = servers.map((s) => s.kind);
  return {
    port,
    kinds,
    http3Unavailable,
    onConnection(handler) {
      handlers.push(handler);
    },
    connectionStats: () => guard.stats(),
    updateCertificate(certPem, keyPem) {
      for (const { server } of servers) server.updateCert(certPem, keyPem, false);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const { server } of servers) {
        try {
          server.stopServer();
        } catch (err) {
          logger.debug({ err }, 'stopServer failed');
        }
      }
      tickets.clear();
      guard.close();
    },
  };
}

function refusal(status: number, code: string, message: string): WtRequestResult {
  return { status, path: TUNNEL_PATH, headers: { [ERROR_HEADER]: code, [MESSAGE_HEADER]: encodeURIComponent(message) } };
}

function readTicket(userData: unknown): string | undefined {
  if (typeof userData !== 'object' || userData === null) return undefined;
  const ticket = (userData as { ticket?: unknown }).ticket;
  return typeof ticket === 'string' ? ticket : undefined;
}

/** The client's control stream: the first bidirectional stream it opens, within CONTROL_STREAM_TIMEOUT_MS. */
async function firstStream(session: WtServerSession): Promise<WtBidiStream> {
  const reader = session.incomingBidirectionalStreams.getReader();
  let timer: NodeJS.Timeout | undefined;
  try {
    const next = await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new QuicgateError('QG_ERR_PROTOCOL', 'no control stream in time')), CONTROL_STREAM_TIMEOUT_MS);
      }),
    ]);
    if (next.done) throw new QuicgateError('QG_ERR_PROTOCOL', 'session closed before its control stream opened');
    return next.value;
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

function closeQuietly(session: WtServerSession, reason: string): void {
  try {
    session.close({ closeCode: 0, reason });
  } catch {
    // already closed
  }
}
