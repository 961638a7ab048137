/**
 * The boundary to @fails-components/webtransport (1.6.8, pinned exactly): narrow types for the parts we use, a
 * lazy loader (so that code which never opens a WebTransport session never loads it), and every reach into its
 * internals (the HTTP/2 stream under a session, the node:http2 server, the capsule parser the HTTP/2 fast path
 * takes over; tests fail when they change). Behaviour that only exists through patches/ is marked "patched";
 * docs/webtransport-patch.md says why each patch hunk is there.
 */
import { Socket as DgramSocket, type RemoteInfo } from 'node:dgram';
import { Duplex } from 'node:stream';
import { Server as TlsServer } from 'node:tls';
import type { ReadableStream, WritableStream } from 'node:stream/web';

export interface WtCloseInfo {
  readonly closeCode?: number;
  readonly reason?: string;
}

export interface WtBidiStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

export interface WtDatagrams {
  readonly readable: ReadableStream<Uint8Array>;
  createWritable(): WritableStream<Uint8Array>;
  readonly maxDatagramSize: number;
}

/** What a server session (HttpWTSession) and a client WebTransport have in common. */
export interface WtSession {
  readonly ready: Promise<void>;
  readonly closed: Promise<WtCloseInfo>;
  readonly datagrams: WtDatagrams;
  readonly incomingBidirectionalStreams: ReadableStream<WtBidiStream>;
  createBidirectionalStream(): Promise<WtBidiStream>;
  close(info?: { closeCode?: number; reason?: string }): void;
}

export interface WtServerSession extends WtSession {
  readonly peerAddress: string | undefined;
  readonly userData: unknown;
}

export interface WtClient extends WtSession {
  /** The library's session object behind the WebTransport facade. */
  readonly sessionint: unknown;
}

export interface WtHash {
  readonly algorithm: 'sha-256';
  readonly value: Uint8Array;
}

export interface WtClientOptions {
  readonly forceReliable?: boolean;
  readonly requireUnreliable?: boolean;
  readonly serverCertificateHashes?: readonly WtHash[];
  /** patched: PEM CA(s) for the HTTP/2 client's TLS verification. */
  readonly ca?: string;
  /** patched: extra request headers of the HTTP/2 CONNECT request. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly quicConnectTimeout?: number;
  readonly webTransportConnectTimeout?: number;
}

export interface WtRequestEvent {
  readonly header: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** patched: "address:port" of the peer. */
  readonly peerAddress?: string;
}

export interface WtRequestResult {
  readonly status: number;
  readonly path: string;
  readonly userData?: unknown;
  /** patched: extra response headers of a refusal (HTTP/2). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface WtServerOptions {
  readonly port: number;
  readonly host: string;
  readonly secret: string;
  readonly cert: string;
  readonly privKey: string;
  readonly defaultDatagramsReadableMode?: 'bytes';
  /** HTTP/3: options for the node:dgram socket the library creates (its documented quicheNodeSocketOptions). */
  readonly quicheNodeSocketOptions?: { readonly recvBufferSize?: number; readonly sendBufferSize?: number };
}

export interface WtServer {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<unknown>;
  startServer(): void;
  stopServer(): void;
  address(): { port: number; host: string } | null;
  setRequestCallback(callback: (event: WtRequestEvent) => Promise<WtRequestResult>): void;
  sessionStream(path: string): ReadableStream<WtServerSession>;
  updateCert(cert: string, privKey: string, http2only: boolean): void;
}

export interface WtLibrary {
  readonly Http2Server: new (options: WtServerOptions) => WtServer;
  readonly Http3Server: new (options: WtServerOptions) => WtServer;
  readonly WebTransport: new (url: string, options: WtClientOptions) => WtClient;
  readonly quicheLoaded: Promise<unknown>;
}

/** What a refused session's error carries (patched: status and headers of the HTTP response). */
export interface WtHandshakeError {
  readonly status: number | undefined;
  readonly headers: Readonly<Record<string, unknown>> | undefined;
  /** The underlying connect error, e.g. a TLS verification failure (patched). */
  readonly cause: unknown;
}

let loading: Promise<WtLibrary> | undefined;

export function loadWebTransportLibrary(): Promise<WtLibrary> {
  loading ??= import('@fails-components/webtransport').then((mod: unknown) => {
    const lib = mod as Partial<Record<keyof WtLibrary, unknown>>;
    if (
      typeof lib.Http2Server !== 'function' ||
      typeof lib.Http3Server !== 'function' ||
      typeof lib.WebTransport !== 'function' ||
      !(lib.quicheLoaded instanceof Promise)
    ) {
      throw new Error('@fails-components/webtransport does not export the expected API');
    }
    return mod as WtLibrary;
  });
  return loading;
}

export function readHandshakeError(err: unknown): WtHandshakeError {
  if (typeof err !== 'object' || err === null) return { status: undefined, headers: undefined, cause: undefined };
  const fields = err as { status?: unknown; headers?: unknown; cause?: unknown };
  const status = typeof fields.status === 'number' ? fields.status : typeof fields.status === 'string' ? Number(fields.status) : undefined;
  const headers = typeof fields.headers === 'object' && fields.headers !== null ? (fields.headers as Record<string, unknown>) : undefined;
  return { status: Number.isFinite(status) ? status : undefined, headers, cause: fields.cause };
}

/**
 * The HTTP/2 stream that carries an HTTP/2 WebTransport session, found through the library's internals
 * (session.objint.stream). The datagram writer has no backpressure (it queues without bound when HTTP/2 is
 * blocked), so the sender watches this stream's writableNeedDrain / 'drain' instead. Null on HTTP/3 or when
 * the internals changed; the caller then falls back to the writer's own readiness.
 */
export function findHttp2SessionStream(session: unknown): Duplex | null {
  if (typeof session !== 'object' || session === null) return null;
  const objint = (session as { objint?: unknown }).objint;
  if (typeof objint !== 'object' || objint === null) return null;
  const stream = (objint as { stream?: unknown }).stream;
  return stream instanceof Duplex ? stream : null;
}

/**
 * A server session keeps the CONNECT request's headers (the client's credentials among them) and our userData
 * for its whole life; nothing reads them once the ticket is taken. Dropping both frees about 1 KiB per idle
 * session and keeps no password in the heap past the handshake.
 */
export function forgetRequest(session: WtServerSession): void {
  const fields = session as unknown as { header?: unknown; userData?: unknown };
  fields.header = undefined;
  fields.userData = undefined;
}

/**
 * The node:http2 secure server (a tls.Server) under the library's Http2Server: `transportInt.serverInt`
 * (internals of @fails-components/webtransport 1.6.8, pinned; test/transport/connection-guard.test.ts fails
 * when they change). Set synchronously by startServer(), before the server listens. Null when not found.
 */
export function findNodeHttp2Server(server: WtServer): TlsServer | null {
  const transportInt = (server as unknown as { transportInt?: { serverInt?: unknown } }).transportInt;
  const serverInt = transportInt?.serverInt;
  return serverInt instanceof TlsServer ? serverInt : null;
}

/**
 * The node:dgram socket under the library's Http3Server: `transportInt.socket.socketInt` (internals of
 * @fails-components/webtransport 1.6.8 with its http3-quiche module 1.6.8, pinned; the socket is made after a
 * DNS lookup, so it is there once the server is ready). test/transport/h3-connection-guard.test.ts fails when
 * they change. Null when not found.
 */
export function findHttp3Socket(server: WtServer): DgramSocket | null {
  const transportInt = (server as unknown as { transportInt?: { socket?: { socketInt?: unknown } } }).transportInt;
  const socket = transportInt?.socket?.socketInt;
  return socket instanceof DgramSocket ? socket : null;
}

/**
 * Puts `gate` in front of the library's one 'message' listener on that socket (the module's serversocket.js:
 * each datagram goes to QUICHE through cobj.recvPaket): a datagram for which `gate` returns false never reaches
 * QUICHE. False (nothing changed) when the socket has not exactly one 'message' listener.
 */
export function gateHttp3Datagrams(socket: DgramSocket, gate: (msg: Buffer, rinfo: RemoteInfo) => boolean): boolean {
  const listeners = socket.listeners('message') as ((msg: Buffer, rinfo: RemoteInfo) => void)[];
  if (listeners.length !== 1) return false;
  const deliver = listeners[0]!;
  socket.removeListener('message', deliver);
  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    if (gate(msg, rinfo)) deliver.call(socket, msg, rinfo);
  });
  return true;
}

/** The library's HTTP/2 session object (Http2WebTransportSession) behind a server session or a client WebTransport. */
export interface Http2SessionInternals {
  stream?: unknown;
  jsobj?: { onDatagramReceived?: (args: { datagram: Uint8Array }) => void };
  capsParser?: unknown;
}

export function http2SessionInternals(session: unknown): Http2SessionInternals | null {
  if (typeof session !== 'object' || session === null) return null;
  const s = session as { objint?: unknown; sessionint?: { objint?: unknown } };
  const objint = s.objint ?? s.sessionint?.objint;
  return typeof objint === 'object' && objint !== null ? (objint as Http2SessionInternals) : null;
}

/** The parts of the library's Http2CapsuleParser (1.6.8) the diversion below relies on. */
interface LibraryCapsuleParser {
  parseData(data: Buffer): void;
  stream: unknown;
  /** 's' at a capsule start; 'c' inside a capsule's payload. */
  mode: unknown;
  /** Bytes of a capsule start held for the next chunk. */
  saveddata: unknown;
}

function isLibraryCapsuleParser(value: unknown): value is LibraryCapsuleParser {
  return typeof value === 'object' && value !== null && typeof (value as { parseData?: unknown }).parseData === 'function' && 'mode' in value;
}

/**
 * Routes the chunks of the HTTP/2 stream under an HTTP/2 session to `onChunk` instead of the library's capsule
 * parser (internals of @fails-components/webtransport 1.6.8, pinned; test/transport/wt-capsule-reader.test.ts
 * fails when they change): the parser's one 'readable' listener (stream.read(), which concatenates what is
 * buffered) gives way to a 'data' listener, and the hand-over waits for a capsule boundary of the library's
 * parser so that no capsule is cut in two. Returns the library parser's own parseData, for the capsules
 * `onChunk` hands back whole; null (nothing changed) when the internals are not as expected.
 */
export function divertHttp2Capsules(session: unknown, stream: Duplex, onChunk: (chunk: Buffer) => void): ((capsule: Buffer) => void) | null {
  const parser = http2SessionInternals(session)?.capsParser;
  if (!isLibraryCapsuleParser(parser) || parser.stream !== stream) return null;
  const readable = stream.listeners('readable');
  if (readable.length !== 1) return null;
  const libraryParse = parser.parseData.bind(parser);
  const atBoundary = (): boolean => parser.mode === 's' && parser.saveddata === undefined;
  let diverted = atBoundary();
  const route = (chunk: Buffer): void => {
    if (diverted) {
      onChunk(chunk);
      return;
    }
    libraryParse(chunk);
    diverted = atBoundary();
  };
  parser.parseData = route;
  stream.removeListener('readable', readable[0] as (...args: unknown[]) => void);
  stream.on('data', route);
  return libraryParse;
}
