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
import { QuicgateError } from '../errors.js';
import { detectHttp3 } from './http3.js';
import type { AcceptedConnection, Admission, ConnectRequest, TransportKind, TunnelListener } from './types.js';
import { CONTROL_STREAM_TIMEOUT_MS, ERROR_HEADER, MESSAGE_HEADER, TUNNEL_PATH, parseConnectRequest } from './wt-auth.js';
import { WebTransportConnection } from './wt-connection.js';
import { findHttp2SessionStream, forgetRequest, loadWebTransportLibrary, type WtBidiStream, type WtRequestEvent, type WtRequestResult, type WtServer, type WtServerSession } from './wt-lib.js';

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
  /**
   * false (transports.h2: false): no tunnel sessions over HTTP/2; every HTTP/2 CONNECT is refused (404). The TCP
   * port still serves TLS, where HTTP/3 clients fetch the certificate to verify it against their CA. Without
   * HTTP/3 as well, the listener refuses to start. Default true.
   */
  readonly http2?: boolean;
}

export interface WebTransportListener extends TunnelListener {
  readonly port: number;
  /** Why HTTP/3 is not served (undefined when it is, or when it was turned off). */
  readonly http3Unavailable: string | undefined;
  /** Swap the TLS certificate for new handshakes (no restart). */
  updateCertificate(certPem: string, keyPem: string): void;
}

interface Ticket {
  readonly request: ConnectRequest;
}

export async function createTunnelListener(options: TunnelListenerOptions): Promise<WebTransportListener> {
  const lib = await loadWebTransportLibrary();
  const logger = options.logger;
  const tickets = new Map<string, Ticket>();
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

  const http2Sessions = options.http2 ?? true;
  const requestCallback = (kind: 'h2' | 'h3') => async (event: WtRequestEvent): Promise<WtRequestResult> => {
    if (kind === 'h2' && !http2Sessions) {
      return { status: 404, path: TUNNEL_PATH, headers: { [ERROR_HEADER]: 'QG_ERR_TRANSPORT_UNAVAILABLE', [MESSAGE_HEADER]: encodeURIComponent('HTTP/2 is turned off on this gateway; use HTTP/3') } };
    }
    const parsed = parseConnectRequest(event, kind);
    if (!parsed.ok) {
      return { status: parsed.status, path: TUNNEL_PATH, headers: { [ERROR_HEADER]: parsed.code, [MESSAGE_HEADER]: encodeURIComponent(parsed.message) } };
    }
    try {
      const result = await options.admission(parsed.request);
      if (!result.ok) {
        return { status: result.status, path: TUNNEL_PATH, headers: { [ERROR_HEADER]: result.code, [MESSAGE_HEADER]: encodeURIComponent(result.message) } };
      }
      const id = randomBytes(12).toString('hex');
      tickets.set(id, { request: { ...parsed.request, user: result.user } });
      return { status: 200, path: TUNNEL_PATH, userData: { ticket: id } };
    } catch (err) {
      logger.error({ err, peer: parsed.request.peer }, 'admission failed');
      return { status: 503, path: TUNNEL_PATH, headers: { [ERROR_HEADER]: 'QG_ERR_SERVER_LIMIT', [MESSAGE_HEADER]: 'admission failed' } };
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
    const ticket = ticketId === undefined ? undefined : tickets.get(ticketId);
    if (ticketId !== undefined) tickets.delete(ticketId);
    forgetRequest(session);
    if (!ticket || closed) {
      closeQuietly(session, 'server_shutdown');
      return;
    }
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
      const accepted: AcceptedConnection = { connection, request: ticket.request };
      if (handlers.length === 0) connection.close({ reason: 'server_shutdown', message: 'no handler' });
      for (const handler of handlers) handler(accepted);
    } catch (err) {
      logger.info({ err, peer: ticket.request.peer, user: ticket.request.user }, 'session failed before its control stream opened');
      closeQuietly(session, 'error');
    }
  };

  const h2 = new lib.Http2Server(serverOptions(options.port));
  h2.setRequestCallback(requestCallback('h2'));
  void acceptSessions('h2', h2);
  h2.startServer();
  try {
    await h2.ready;
  } catch (err) {
    throw new QuicgateError('QG_ERR_LISTEN', `cannot listen on ${options.host}:${options.port}: ${String(err)}`, { cause: err });
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

  const kinds: TransportKind[] = servers.filter((s) => s.kind === 'h3' || http2Sessions).map((s) => s.kind);
  if (kinds.length === 0) {
    for (const { server } of servers) server.stopServer();
    throw new QuicgateError('QG_ERR_LISTEN', `transports.h2 is false and HTTP/3 is not served (${http3Unavailable ?? 'turned off'}): no transport left`);
  }
  return {
    port,
    kinds,
    http3Unavailable,
    onConnection(handler) {
      handlers.push(handler);
    },
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
    },
  };
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
