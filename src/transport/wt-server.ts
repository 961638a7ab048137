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
import { ConnectionGuard, sumGuardStats, type ConnectionGuardStats } from './connection-guard.js';
import { H3ConnectionGuard } from './h3-connection-guard.js';
import { H3SessionGuard, type H3GuardReason, type H3Pending } from './h3-session-guard.js';
import { detectHttp3 } from './http3.js';
import { listenError } from './listen-error.js';
import { TicketStore } from './tickets.js';
import type { AcceptedConnection, Admission, ConnectRequest, Refusal, TransportKind, TunnelListener } from './types.js';
import { CONTROL_STREAM_TIMEOUT_MS, ERROR_HEADER, MESSAGE_HEADER, REFUSAL_CLOSE_CODE, TUNNEL_PATH, encodeRefusal, parseConnectRequest, sourceOf } from './wt-auth.js';
import { WebTransportConnection } from './wt-connection.js';
import { findHttp2SessionStream, findHttp3Socket, findNodeHttp2Server, forgetRequest, gateHttp3Datagrams, loadWebTransportLibrary, type WtBidiStream, type WtRequestEvent, type WtRequestResult, type WtServer, type WtServerSession } from './wt-lib.js';

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
  /**
   * false (transports.h2: false): no tunnel sessions over HTTP/2; every HTTP/2 CONNECT is refused (404). The TCP
   * port still serves TLS, where HTTP/3 clients fetch the certificate to verify it against their CA. Without
   * HTTP/3 as well, the listener refuses to start. Default true.
   */
  readonly http2?: boolean;
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

/**
 * Every client's QUIC packets arrive on the one UDP socket of the HTTP/3 listener: with the kernel's default
 * receive buffer (208 KiB) one client's burst or flood overflows it between two event-loop turns and the
 * kernel drops other clients' packets too. 4 MiB is rmem_max on common distributions; the kernel caps the
 * request at rmem_max/wmem_max where those are lower.
 */
const H3_SOCKET_BUFFERS = { recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 4 * 1024 * 1024 } as const;

export interface WebTransportListener extends TunnelListener {
  readonly port: number;
  /** Why HTTP/3 is not served (undefined when it is, or when it was turned off). */
  readonly http3Unavailable: string | undefined;
  /**
   * Swap the TLS certificate. HTTP/2: for new handshakes, live sessions untouched. HTTP/3: the library's
   * native server cannot change its certificate (its updateCert is a no-op there, measured), so the HTTP/3
   * listener is restarted on the same port with the new one: its live sessions are closed with
   * `server_shutdown` (retry: clients reconnect at once and keep their addresses). Without this, clients that
   * pin the renewed certificate fail on HTTP/3 and the old certificate expires under the listener.
   */
  updateCertificate(certPem: string, keyPem: string): Promise<void>;
  /** Connections without a session, and what the guards closed (HTTP/2 and the library's HTTP/3 together). */
  connectionStats(): ConnectionGuardStats;
}

interface Ticket {
  readonly request: ConnectRequest;
  /** HTTP/3: the session request's entry in the session guard, until its tunnel is up. */
  readonly pending: H3Pending | null;
}

export async function createTunnelListener(options: TunnelListenerOptions): Promise<WebTransportListener> {
  const lib = await loadWebTransportLibrary();
  const logger = options.logger;
  const throttle = options.throttle;
  const limits = options.limits ?? DEFAULT_CONNECTION_LIMITS;
  const guard = new ConnectionGuard({ ...limits, sourceBlocked: throttle && ((address) => throttle.isBlocked(address)), logger });
  // HTTP/3 has no per-connection hook: its QUIC connections are bounded by their datagrams until they send a
  // session request (h3-connection-guard.ts), the session requests by h3-session-guard.ts.
  const h3ConnectionGuard = new H3ConnectionGuard({ ...limits, sourceBlocked: throttle && ((address) => throttle.isBlocked(address)), logger });
  const h3Guard = new H3SessionGuard({ ...limits, sourceBlocked: throttle && ((address) => throttle.isBlocked(address)), logger });
  // The guard watches the HTTP/2 (TCP) connections only; an HTTP/3 peer's "address:port" is a UDP one.
  const guardFor = (kind: TransportKind): ConnectionGuard | undefined => (kind === 'h2' ? guard : undefined);
  // A ticket not taken within the handshake deadline is dropped with the password it holds.
  const tickets = new TicketStore<Ticket>({
    ttlMs: limits.handshakeTimeoutMs,
    max: limits.maxPending,
    expire: (t) => {
      guardFor(t.request.transport)?.released(t.request.peer);
      t.pending?.ended();
    },
  });
  const handlers: ((accepted: AcceptedConnection) => void)[] = [];
  const servers: { kind: 'h2' | 'h3'; server: WtServer }[] = [];
  /** Open HTTP/3 connections: closed by a listener restart (updateCertificate). */
  const h3Connections = new Set<WebTransportConnection>();
  let closed = false;

  let cert = options.cert;
  let key = options.key;
  const serverOptions = (port: number) => ({
    port,
    host: options.host,
    // The library requires a secret (HTTP/3 retry tokens); nothing persists it.
    secret: randomBytes(32).toString('hex'),
    cert,
    privKey: key,
  });

  const http2Sessions = options.http2 ?? true;
  const requestCallback = (kind: 'h2' | 'h3') => async (event: WtRequestEvent): Promise<WtRequestResult> => {
    const peer = event.peerAddress ?? 'unknown';
    if (kind === 'h2' && !http2Sessions) {
      return { status: 404, path: TUNNEL_PATH, headers: { [ERROR_HEADER]: 'QG_ERR_TRANSPORT_UNAVAILABLE', [MESSAGE_HEADER]: encodeURIComponent('HTTP/2 is turned off on this gateway; use HTTP/3') } };
    }
    let pending: H3Pending | null = null;
    if (kind === 'h3') {
      h3ConnectionGuard.sessionRequest(peer);
      const begun = h3Guard.begin(sourceOf(peer));
      if (typeof begun === 'string') return refuse(kind, h3GuardRefusal(begun));
      pending = begun;
    }
    const answer = await answerRequest(kind, event, peer, pending);
    if (readTicket(answer.userData) === undefined) pending?.ended();
    return answer;
  };

  const answerRequest = async (kind: 'h2' | 'h3', event: WtRequestEvent, peer: string, pending: H3Pending | null): Promise<WtRequestResult> => {
    const parsed = parseConnectRequest(event, kind);
    if (!parsed.ok) {
      // Spends the source's attempt budget; logged while within it (a flood is logged once, by the throttle).
      const source = sourceOf(peer);
      if ((await throttle?.admit(source)) ?? true) logger.info({ source, peer, status: parsed.status, reason: parsed.message }, 'malformed session request refused');
      guardFor(kind)?.refused(peer);
      return refuse(kind, { status: parsed.status, code: parsed.code, message: parsed.message });
    }
    try {
      const result = await options.admission(parsed.request);
      if (!result.ok) {
        guardFor(kind)?.refused(peer);
        return refuse(kind, { status: result.status, code: result.code, message: result.message });
      }
      if (pending?.expired === true) return refuse(kind, h3GuardRefusal('connect_timeout'));
      guardFor(kind)?.admitted(peer);
      const id = tickets.issue({ request: { ...parsed.request, user: result.user }, pending });
      return { status: 200, path: TUNNEL_PATH, userData: { ticket: id } };
    } catch (err) {
      logger.error({ err, peer: parsed.request.peer }, 'admission failed');
      guardFor(kind)?.refused(peer);
      return refuse(kind, { status: 503, code: 'QG_ERR_SERVER_LIMIT', message: 'admission failed' });
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
    const refusal = readRefusal(session.userData);
    if (refusal !== undefined) {
      forgetRequest(session);
      closeRefused(session, refusal);
      return;
    }
    const ticketId = readTicket(session.userData);
    const ticket = ticketId === undefined ? undefined : tickets.take(ticketId);
    forgetRequest(session);
    if (!ticket || closed) {
      if (ticket) guardFor(kind)?.released(ticket.request.peer);
      ticket?.pending?.ended();
      closeQuietly(session, 'server_shutdown');
      return;
    }
    const peer = ticket.request.peer;
    ticket.pending?.attach(() => closeQuietly(session, 'handshake_timeout'));
    try {
      await session.ready;
      const controlStream = await firstStream(session);
      if (ticket.pending?.expired === true) throw new QuicgateError('QG_ERR_PROTOCOL', 'no control stream within the handshake timeout');
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
      if (kind === 'h3') {
        h3Connections.add(connection);
        void connection.closed.then(() => h3Connections.delete(connection));
      }
      ticket.pending?.established();
      const accepted: AcceptedConnection = { connection, request: ticket.request };
      if (handlers.length === 0) connection.close({ reason: 'server_shutdown', message: 'no handler' });
      for (const handler of handlers) handler(accepted);
    } catch (err) {
      logger.info({ err, peer, user: ticket.request.user }, 'session failed before its control stream opened');
      guardFor(kind)?.released(peer);
      ticket.pending?.ended();
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

  const startH3 = async (): Promise<WtServer> => {
    await lib.quicheLoaded;
    const h3 = new lib.Http3Server({ ...serverOptions(port), quicheNodeSocketOptions: H3_SOCKET_BUFFERS });
    h3.setRequestCallback(requestCallback('h3'));
    void acceptSessions('h3', h3);
    h3.startServer();
    await h3.ready;
    const socket = findHttp3Socket(h3);
    if (socket === null || !gateHttp3Datagrams(socket, (msg, rinfo) => h3ConnectionGuard.onDatagram(msg, rinfo.address, rinfo.port))) {
      h3.stopServer();
      throw new QuicgateError('QG_ERR_LISTEN', 'the WebTransport library has no UDP socket with one datagram listener where expected (internals changed)');
    }
    return h3;
  };

  let http3Unavailable: string | undefined;
  if (options.http3 === 'auto') {
    const support = await detectHttp3();
    if (support.available) {
      try {
        servers.push({ kind: 'h3', server: await startH3() });
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
    connectionStats: () => {
      const { cut, ...h3Connections } = h3ConnectionGuard.stats();
      return { ...sumGuardStats([guard.stats(), h3Connections]), h3: h3Guard.stats(), h3Cut: cut };
    },
    async updateCertificate(certPem, keyPem) {
      cert = certPem;
      key = keyPem;
      for (const { kind, server } of servers) if (kind === 'h2') server.updateCert(certPem, keyPem, false);
      const index = servers.findIndex((s) => s.kind === 'h3');
      if (index < 0 || closed) return;
      const live = [...h3Connections];
      for (const connection of live) connection.close({ reason: 'server_shutdown', message: 'HTTP/3 listener restarts with the renewed certificate' });
      await Promise.all(live.map((c) => c.closed));
      try {
        servers[index]!.server.stopServer();
        // The old QUICHE and its connections are gone with it.
        h3ConnectionGuard.close();
        servers[index] = { kind: 'h3', server: await startH3() };
        logger.info({ closedSessions: live.length }, 'HTTP/3 listener restarted with the renewed certificate');
      } catch (err) {
        servers.splice(index, 1);
        logger.error({ err }, 'HTTP/3 listener failed to restart with the renewed certificate; serving HTTP/2 only');
      }
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
      h3ConnectionGuard.close();
    },
  };
}

/**
 * The answer to a refused CONNECT. HTTP/2: the status and x-quicgate-* headers. HTTP/3: the native client
 * would see neither, so the CONNECT is accepted with the refusal in userData, and openConnection closes the
 * session at once with it (wt-auth.ts encodeRefusal); nothing is set up for it.
 */
function refuse(kind: 'h2' | 'h3', refusal: Refusal): WtRequestResult {
  if (kind === 'h3') return { status: 200, path: TUNNEL_PATH, userData: { refusal } };
  return { status: refusal.status, path: TUNNEL_PATH, headers: { [ERROR_HEADER]: refusal.code, [MESSAGE_HEADER]: encodeURIComponent(refusal.message) } };
}

/** What an HTTP/3 client is told when the session guard refuses its request. */
function h3GuardRefusal(reason: H3GuardReason): Refusal {
  if (reason === 'source_blocked') return { status: 429, code: 'QG_ERR_THROTTLED', message: 'too many attempts from this address; try again later' };
  if (reason === 'connect_timeout') return { status: 503, code: 'QG_ERR_SERVER_LIMIT', message: 'the session was not set up within the handshake timeout' };
  return { status: 503, code: 'QG_ERR_SERVER_LIMIT', message: 'too many sessions being set up; try again later' };
}

function readRefusal(userData: unknown): Refusal | undefined {
  if (typeof userData !== 'object' || userData === null) return undefined;
  const refusal = (userData as { refusal?: Refusal }).refusal;
  return typeof refusal === 'object' && refusal !== null ? refusal : undefined;
}

/** Close a refused HTTP/3 session once it is up (a close before that would not reach the client). */
function closeRefused(session: WtServerSession, refusal: Refusal): void {
  session.ready.then(
    () => {
      try {
        session.close({ closeCode: REFUSAL_CLOSE_CODE, reason: encodeRefusal(refusal) });
      } catch {
        // already closed
      }
    },
    () => {},
  );
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
