/**
 * Loads the QUIC addon (native/build/Release/quicgate_quic.node: quicgate's own QUIC datagram transport on
 * ngtcp2 + GnuTLS, native/src/quic/) and types its surface. Built by `npm install` when pkg-config finds
 * libngtcp2, libngtcp2_crypto_gnutls and gnutls (scripts/build-native.mjs); detectQuic() says why not otherwise.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the addon tells JS, one call per event or per receive batch (never per packet). */
export interface NativeQuicHandlers {
  /** Server: a valid Initial from `source` would open connection `slot`; false refuses it silently. */
  onAccept(source: string, slot: number): boolean;
  /** The TLS handshake completed; `remote` is the peer's "ip:port". */
  onHandshake(slot: number, remote: string): void;
  /** Bytes of the control stream (a copy the receiver may keep). */
  onStream(slot: number, data: Buffer): void;
  /** `count` datagrams wait in the receive area: rxMeta[3i] slot, [3i+1] offset into rxData, [3i+2] length. */
  onDatagrams(count: number): void;
  /** The connection ended without a closeConnection() from JS (see QuicCloseKind); its slot is gone. */
  onClose(slot: number, kind: number, code: number, reason: string): void;
  /** The connection's send queue went below its low mark after blocked[slot] was set. */
  onWritable(slot: number): void;
  /** The peer's address changed (migration); `remote` is the new "ip:port". */
  onPath(slot: number, remote: string): void;
}

/** onClose kinds (native/src/quic/endpoint.cc CloseKind). */
export const QuicCloseKind = { peerApplication: 0, peerTransport: 1, idle: 2, handshakeTimeout: 3, localError: 4 } as const;

export interface NativeQuicOptions {
  readonly server: boolean;
  /** Server: the address and UDP port to bind. */
  readonly host?: string;
  readonly port?: number;
  readonly certPem?: string;
  readonly keyPem?: string;
  readonly alpn: string;
  /** Largest UDP payload sent (1200..1472); 1452 fits a 1500-byte path over IPv4 and IPv6. */
  readonly maxUdpPayload: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly rxData: Uint8Array;
  readonly rxMeta: Uint32Array;
  readonly txData: Uint8Array;
  readonly txMeta: Uint32Array;
  /** One byte per slot: 1 while that connection's send queue is above its high mark. */
  readonly blocked: Uint8Array;
}

export interface NativeQuicStats {
  readonly connections: number;
  readonly udpPacketsReceived: number;
  readonly udpReceiveCalls: number;
  readonly udpPacketsSent: number;
  readonly udpSendCalls: number;
  readonly udpSendDrops: number;
  readonly malformedPackets: number;
  readonly unknownConnectionPackets: number;
  readonly refusedConnections: number;
  readonly rxDatagramsDropped: number;
  readonly txDatagramsDropped: number;
}

export interface NativeQuicEndpoint {
  /** Client: open the one connection of this endpoint; returns its slot. Verification: pins if given, else the CA (null: system store) with verifyHost. */
  connect(host: string, port: number, verifyHost: string, caPem: string | null, pins: readonly Uint8Array[]): number;
  /** Datagrams in the send area (txMeta[2i] slot, [2i+1] length; txData packed from 0); returns how many were taken. */
  sendBatch(count: number): number;
  writeStream(slot: number, data: Uint8Array): boolean;
  /** CONNECTION_CLOSE with an application error code and reason; no onClose follows. */
  closeConnection(slot: number, code: number, reason: string): void;
  maxDatagramBytes(slot: number): number;
  updateCertificate(certPem: string, keyPem: string): void;
  stats(): NativeQuicStats;
  address(): { address: string; port: number };
  close(): void;
}

export interface NativeQuicAddon {
  QuicEndpoint: new (options: NativeQuicOptions, handlers: NativeQuicHandlers) => NativeQuicEndpoint;
  readonly ngtcp2Version: string;
  readonly gnutlsVersion: string;
}

export type QuicSupport = { readonly available: true; readonly addon: NativeQuicAddon } | { readonly available: false; readonly reason: string };

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'quicgate_quic.node');
let detection: QuicSupport | undefined;

/** Whether the QUIC addon is built and loads; memoized. */
export function detectQuic(): QuicSupport {
  detection ??= probe();
  return detection;
}

function probe(): QuicSupport {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const file = path.join(root, ADDON_RELATIVE);
  if (!existsSync(file)) {
    return { available: false, reason: `${ADDON_RELATIVE} is not built (needs libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev pkg-config, then npm install)` };
  }
  try {
    const loaded = createRequire(import.meta.url)(file) as Partial<NativeQuicAddon>;
    if (typeof loaded.QuicEndpoint !== 'function') return { available: false, reason: `${file} is not the quicgate QUIC addon` };
    return { available: true, addon: loaded as NativeQuicAddon };
  } catch (err) {
    return { available: false, reason: `${file} cannot be loaded: ${err instanceof Error ? err.message : String(err)}` };
  }
}
