/**
 * The client side of quicgate's own QUIC transport: one native endpoint (its own UDP socket) per connection.
 *
 * Flow: resolve the gateway host -> QUIC handshake, the certificate verified by GnuTLS (pins: the leaf's SHA-256
 *   must be one of them and the leaf valid now; else the CA given, or the system store, with the host name or
 *   IP) -> the connect line on the control stream (quic-auth.ts) -> QuicConnection. A refusal arrives as the
 *   connection's close right after (CloseInfo.refused), as on HTTP/3.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { QuicgateError } from '../errors.js';
import { encodeConnectLine } from './quic-auth.js';
import { QuicConnection } from './quic-connection.js';
import { QuicEndpointHost } from './quic-endpoint.js';
import { QuicCloseKind, detectQuic } from './quic-native.js';
import { QUIC_IDLE_TIMEOUT_MS } from './quic-server.js';
import type { Credentials } from './wt-auth.js';

export interface QuicConnectOptions {
  readonly host: string;
  readonly port: number;
  readonly credentials: Credentials;
  readonly caPem?: string;
  /** SHA-256 of accepted leaf certificates, 32 bytes each. */
  readonly pins: readonly Uint8Array[];
  readonly connectTimeoutMs: number;
  readonly sendQueuePackets: number;
  readonly logger: Logger;
}

/** TLS alerts a client sends when the server's certificate does not verify (RFC 8446 6.2). */
const CERTIFICATE_ALERTS = new Set([42, 43, 44, 45, 46, 48]);

export async function connectQuic(options: QuicConnectOptions): Promise<QuicConnection> {
  const support = detectQuic();
  if (!support.available) throw new QuicgateError('QG_ERR_TRANSPORT_UNAVAILABLE', `native QUIC is not available: ${support.reason}`);
  const address = isIP(options.host) !== 0 ? options.host : (await lookup(options.host)).address;
  let slot = -1;
  let settle: ((error: QuicgateError | null) => void) | null = null;
  const handshake = new Promise<QuicgateError | null>((resolve) => (settle = resolve));
  const host = new QuicEndpointHost(support.addon, { server: false, handshakeTimeoutMs: options.connectTimeoutMs, idleTimeoutMs: QUIC_IDLE_TIMEOUT_MS });
  const waiting = {
    onHandshake: () => settle?.(null),
    onStream: () => {},
    onDatagram: () => {},
    onWritable: () => {},
    onPath: () => {},
    onClose: (kind: number, code: number, reason: string) => settle?.(handshakeError(kind, code, reason)),
  };
  const timer = setTimeout(() => settle?.(new QuicgateError('QG_ERR_CONNECT_FAILED', `no QUIC handshake within ${options.connectTimeoutMs} ms`, { details: { transport: 'quic', silent: true } })), options.connectTimeoutMs);
  try {
    slot = host.native.connect(address, options.port, options.host, options.caPem ?? null, options.pins);
    host.attach(slot, waiting);
    const failed = await handshake;
    if (failed !== null) throw failed;
  } catch (err) {
    host.close();
    if (err instanceof QuicgateError) throw err;
    throw new QuicgateError('QG_ERR_CONNECT_FAILED', `QUIC connect failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err, details: { transport: 'quic' } });
  } finally {
    clearTimeout(timer);
    settle = null;
  }
  host.detach(slot, waiting);
  host.native.writeStream(slot, new TextEncoder().encode(encodeConnectLine(options.credentials)));
  const peer = address.includes(':') ? `[${address}]:${options.port}` : `${address}:${options.port}`;
  return new QuicConnection({ host, slot, role: 'client', peer, sendQueuePackets: options.sendQueuePackets, logger: options.logger, onDisposed: () => host.close() });
}

function handshakeError(kind: number, code: number, reason: string): QuicgateError {
  // Our side refused the server's certificate: GnuTLS's verification failed with a certificate alert.
  if (kind === QuicCloseKind.localError && code >= 0x100 && CERTIFICATE_ALERTS.has(code - 0x100)) {
    return new QuicgateError('QG_ERR_TLS', `server certificate refused: TLS alert ${code - 0x100} (it does not verify against the CA or pins)`, { details: { transport: 'quic', tlsAlert: code - 0x100 } });
  }
  const silent = kind === QuicCloseKind.handshakeTimeout;
  const what = silent ? 'handshake timeout' : reason || `closed (kind ${kind}, code ${code})`;
  return new QuicgateError('QG_ERR_CONNECT_FAILED', `QUIC handshake failed: ${what}`, { details: { transport: 'quic', kind, code, silent } });
}
