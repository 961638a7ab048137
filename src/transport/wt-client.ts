/**
 * The client side: open a WebTransport session to the gateway, authenticated at open, and wrap it as a
 * TunnelConnection.
 *
 * Flow: transport choice (auto, the default: quicgate's own QUIC (quic-client.ts) when its addon loads; when
 *   that is silent for AUTO_H3_ATTEMPT_MS (UDP blocked) HTTP/2 at once; when the gateway answered but refused
 *   the QUIC handshake (an older gateway, or one serving the library's HTTP/3 instead) HTTP/3, then HTTP/2;
 *   tried afresh at every reconnect; quic / h3: that transport or QG_ERR_TRANSPORT_UNAVAILABLE /
 *   QG_ERR_CONNECT_FAILED; h2: HTTP/2 with forceReliable) -> new WebTransport (credentials, TLS
 *   verification) -> ready (refusal -> QG_ERR_REJECTED with the status and reason) -> open the control
 *   stream -> WebTransportConnection. On HTTP/3 a refusal arrives as the session's close right after ready
 *   (wt-auth.ts): the connection's `closed` then carries it (`refused`) and the client maps it the same way.
 * TLS is always verified: by `caPem`, by `pinnedCertHashes`, else by the system CAs. HTTP/3 verifies by hash
 *   only, so with a CA the client first fetches the leaf over TLS on the TCP port, verifies it against the CA
 *   and pins its hash for the QUIC handshake (needs a certificate valid <= 14 days, as ours are).
 */
import { createHash } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import type { Logger } from 'pino';
import { QuicgateError } from '../errors.js';
import { detectHttp3 } from './http3.js';
import { connectQuic } from './quic-client.js';
import { detectQuic } from './quic-native.js';
import type { ResumeClaim, TunnelConnection } from './types.js';
import { ERROR_HEADER, MESSAGE_HEADER, credentialHeaders, credentialPath, decodeRefusal, rejectedError, TUNNEL_PATH, type Credentials } from './wt-auth.js';
import { WebTransportConnection } from './wt-connection.js';
import { findHttp2SessionStream, loadWebTransportLibrary, readHandshakeError, type WtClient, type WtClientOptions, type WtHash, type WtLibrary } from './wt-lib.js';

export type TransportChoice = 'auto' | 'quic' | 'h3' | 'h2';

export interface ConnectTunnelOptions {
  /** https://host:port of the gateway (any path is replaced). */
  readonly url: string;
  readonly user: string;
  readonly password: string;
  readonly previousAddresses: readonly string[];
  /** The session to resume (from its assignment), null on a first connect. */
  readonly resume?: ResumeClaim | null;
  readonly transport: TransportChoice;
  /** PEM of the CA that signed the gateway certificate. */
  readonly caPem?: string;
  /** SHA-256 of accepted server certificates (hex, colons allowed); certificates must be valid <= 14 days. */
  readonly pinnedCertHashes?: readonly string[];
  readonly sendQueuePackets: number;
  readonly logger: Logger;
  readonly connectTimeoutMs: number;
  readonly clientVersion?: string;
}

const DEFAULT_CLIENT_VERSION = 'quicgate/0.1.0';
/**
 * `auto`: how long the HTTP/3 attempt may take before HTTP/2 is tried. Blocked UDP shows only as silence, so
 * this bounds the fallback: a session on HTTP/2 within 3 s (HTTP/3 setup takes ~25-100 ms when UDP passes).
 */
export const AUTO_H3_ATTEMPT_MS = 2000;
/** TLS errors of node and the patched pin check: a verification failure, not a network one. */
const TLS_ERROR_CODES = new Set([
  'ERR_WT_CERT_HASH_MISMATCH',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export async function connectTunnel(options: ConnectTunnelOptions): Promise<TunnelConnection> {
  const target = parseGatewayUrl(options.url);
  const pins = (options.pinnedCertHashes ?? []).map(parsePin);
  const credentials: Credentials = {
    user: options.user,
    password: options.password,
    previousAddresses: options.previousAddresses,
    resume: options.resume ?? null,
    clientVersion: options.clientVersion ?? DEFAULT_CLIENT_VERSION,
  };
  let udpSilent = false;
  if (options.transport === 'quic' || options.transport === 'auto') {
    const quic = detectQuic();
    if (!quic.available && options.transport === 'quic') throw new QuicgateError('QG_ERR_TRANSPORT_UNAVAILABLE', `native QUIC is not available: ${quic.reason}`);
    if (quic.available) {
      try {
        const timeoutMs = options.transport === 'auto' ? Math.min(options.connectTimeoutMs, AUTO_H3_ATTEMPT_MS) : options.connectTimeoutMs;
        return await connectQuic({ host: target.host, port: target.port, credentials, ...(options.caPem === undefined ? {} : { caPem: options.caPem }), pins: pins.map((p) => p.value), connectTimeoutMs: timeoutMs, sendQueuePackets: options.sendQueuePackets, logger: options.logger });
      } catch (err) {
        if (options.transport === 'quic' || isRefusal(err)) throw err;
        udpSilent = err instanceof QuicgateError && err.details?.silent === true;
        options.logger.info({ err }, udpSilent ? 'QUIC got no answer, falling back to HTTP/2' : 'QUIC connect failed, trying the WebTransport transports');
      }
    } else {
      options.logger.debug({ reason: quic.reason }, 'native QUIC unavailable');
    }
  }
  const lib = await loadWebTransportLibrary();

  if (options.transport !== 'h2' && options.transport !== 'quic' && !udpSilent) {
    const support = await detectHttp3();
    if (!support.available) {
      if (options.transport === 'h3') throw new QuicgateError('QG_ERR_TRANSPORT_UNAVAILABLE', `HTTP/3 is not available: ${support.reason}`);
      options.logger.debug({ reason: support.reason }, 'HTTP/3 unavailable, using HTTP/2');
    } else {
      try {
        const attempt = options.transport === 'auto' ? { ...options, connectTimeoutMs: Math.min(options.connectTimeoutMs, AUTO_H3_ATTEMPT_MS) } : options;
        return await connectH3(lib, target, credentials, pins, attempt);
      } catch (err) {
        if (options.transport === 'h3' || isRefusal(err)) throw err;
        options.logger.info({ err }, 'HTTP/3 connect failed, falling back to HTTP/2');
      }
    }
  }
  return connectH2(lib, target, credentials, pins, options);
}

interface GatewayTarget {
  readonly host: string;
  readonly port: number;
  /** origin without path, e.g. https://[2001:db8::1]:4433 */
  readonly origin: string;
}

function parseGatewayUrl(raw: string): GatewayTarget {
  let url: URL;
  try {
    url = new URL(raw);
  } catch (err) {
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', `gateway url "${raw}" is not a URL`, { cause: err });
  }
  if (url.protocol !== 'https:') throw new QuicgateError('QG_ERR_CONFIG_INVALID', `gateway url "${raw}" must use https:`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { host, port: url.port === '' ? 443 : Number(url.port), origin: url.origin };
}

function parsePin(pin: string): WtHash {
  const hex = pin.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new QuicgateError('QG_ERR_CONFIG_INVALID', `pinned certificate hash "${pin}" is not 64 hex digits`);
  return { algorithm: 'sha-256', value: new Uint8Array(Buffer.from(hex, 'hex')) };
}

async function connectH2(lib: WtLibrary, target: GatewayTarget, credentials: Credentials, pins: readonly WtHash[], options: ConnectTunnelOptions): Promise<TunnelConnection> {
  const wtOptions: WtClientOptions = {
    forceReliable: true,
    headers: credentialHeaders(credentials),
    quicConnectTimeout: options.connectTimeoutMs,
    webTransportConnectTimeout: options.connectTimeoutMs,
    ...(pins.length > 0 ? { serverCertificateHashes: pins } : {}),
    ...(options.caPem !== undefined ? { ca: options.caPem } : {}),
  };
  const wt = new lib.WebTransport(`${target.origin}${TUNNEL_PATH}`, wtOptions);
  return openSession(wt, 'h2', target, options);
}

async function connectH3(lib: WtLibrary, target: GatewayTarget, credentials: Credentials, pins: readonly WtHash[], options: ConnectTunnelOptions): Promise<TunnelConnection> {
  await lib.quicheLoaded;
  const hashes = pins.length > 0 ? pins : [await fetchVerifiedLeafHash(target, options)];
  const wt = new lib.WebTransport(`${target.origin}${credentialPath(credentials)}`, {
    requireUnreliable: true,
    serverCertificateHashes: hashes,
    quicConnectTimeout: options.connectTimeoutMs,
    webTransportConnectTimeout: options.connectTimeoutMs,
  });
  return openSession(wt, 'h3', target, options);
}

async function openSession(wt: WtClient, kind: 'h2' | 'h3', target: GatewayTarget, options: ConnectTunnelOptions): Promise<TunnelConnection> {
  // A failed handshake rejects `closed`; unobserved it would crash the process.
  let closedWith: { closeCode?: number | undefined; reason?: string | undefined } | undefined;
  wt.closed.then((info) => (closedWith = info), () => {});
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QuicgateError('QG_ERR_CONNECT_FAILED', `no session within ${options.connectTimeoutMs} ms`)), options.connectTimeoutMs);
  });
  try {
    await Promise.race([wt.ready.catch((err: unknown) => Promise.reject(handshakeFailure(err, kind))), timeout]);
    const controlStream = await Promise.race([wt.createBidirectionalStream(), timeout]);
    return WebTransportConnection.open({
      kind,
      role: 'client',
      peer: `${target.host}:${target.port}`,
      session: wt,
      controlStream,
      drainStream: kind === 'h2' ? findHttp2SessionStream(wt.sessionint) : null,
      sendQueuePackets: options.sendQueuePackets,
      logger: options.logger,
    });
  } catch (err) {
    try {
      wt.close({ closeCode: 0, reason: 'connect failed' });
    } catch {
      // not open
    }
    if (err instanceof QuicgateError) throw err;
    // HTTP/3: a refusal closes the session right after it opened (wt-auth.ts); opening the control stream then fails.
    const refusal = closedWith && decodeRefusal(closedWith.closeCode, closedWith.reason ?? '');
    if (refusal) throw rejectedError(refusal, kind, err);
    throw new QuicgateError('QG_ERR_CONNECT_FAILED', `WebTransport session failed: ${String(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

function handshakeFailure(err: unknown, kind: 'h2' | 'h3'): QuicgateError {
  const { status, headers, cause } = readHandshakeError(err);
  if (status !== undefined && status !== 200) {
    const code = headerText(headers?.[ERROR_HEADER]) ?? `http_${status}`;
    return rejectedError({ status, code, message: headerText(headers?.[MESSAGE_HEADER]) ?? '' }, kind, err);
  }
  const tlsCode = (cause as { code?: unknown } | undefined)?.code;
  if (typeof tlsCode === 'string' && TLS_ERROR_CODES.has(tlsCode)) {
    return new QuicgateError('QG_ERR_TLS', `server certificate refused: ${tlsCode}`, { cause: err, details: { tlsCode, transport: kind } });
  }
  const detail = cause instanceof Error ? cause.message : err instanceof Error ? err.message : String(err);
  return new QuicgateError('QG_ERR_CONNECT_FAILED', `WebTransport handshake failed (${kind}): ${detail}`, { cause: err, details: { transport: kind } });
}

function headerText(value: unknown): string | undefined {
  const text = typeof value === 'string' ? value : Array.isArray(value) && typeof value[0] === 'string' ? value[0] : undefined;
  if (text === undefined) return undefined;
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function isRefusal(err: unknown): boolean {
  return err instanceof QuicgateError && (err.code === 'QG_ERR_REJECTED' || err.code === 'QG_ERR_TLS');
}

/** The gateway's leaf certificate hash, fetched over TLS on the TCP port and verified like the HTTP/2 path. */
function fetchVerifiedLeafHash(target: GatewayTarget, options: ConnectTunnelOptions): Promise<WtHash> {
  return new Promise<WtHash>((resolve, reject) => {
    const socket = tlsConnect({
      host: target.host,
      port: target.port,
      ALPNProtocols: ['h2'],
      ...(options.caPem !== undefined ? { ca: options.caPem } : {}),
      ...(isIpLiteral(target.host) ? {} : { servername: target.host }),
      timeout: options.connectTimeoutMs,
    });
    socket.once('secureConnect', () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve({ algorithm: 'sha-256', value: new Uint8Array(createHash('sha256').update(raw).digest()) });
    });
    socket.once('timeout', () => socket.destroy(new Error('TLS probe timed out')));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      reject(TLS_ERROR_CODES.has(code) ? new QuicgateError('QG_ERR_TLS', `server certificate refused: ${code}`, { cause: err }) : err);
    });
  });
}

function isIpLiteral(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}
