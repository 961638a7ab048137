/**
 * The narrow interface between the gateway (or client) and the tunnel transport (after wireguard-go's
 * conn.Bind). Implementations: WebTransport over HTTP/2 and HTTP/3 (src/transport/wt-server.ts, wt-client.ts, wt-connection.ts),
 * quicgate's own QUIC datagram transport (quic-server.ts, quic-client.ts, quic-connection.ts) and an
 * in-memory pair for unit tests (src/transport/memory.ts). The gateway never sees the WebTransport library.
 */
import type { ConnectionGuardStats } from './connection-guard.js';
import type { ControlMessage } from './control.js';

export type TransportKind = 'h2' | 'h3' | 'quic' | 'memory';

/** Receives IP packets from the peer. Buffers are valid only during the call. */
export interface PacketReceiver {
  onPacket(data: Buffer, offset: number, length: number): void;
  /**
   * One super-packet (framing version 2; see src/tun/device.ts): `kind` and `gsoSize` as the peer framed
   * them, headers not yet checked (the TUN writer checks them natively before writing).
   */
  onSuperPacket?(data: Buffer, offset: number, length: number, kind: number, gsoSize: number): void;
  /** End of one received datagram (a batch of packets): where per-batch bookkeeping goes. */
  onBatchEnd(): void;
  /** A datagram could not be decoded and was dropped whole (also counted in TunnelStats.malformed). */
  onMalformed?(): void;
}

export interface CloseInfo {
  /** One of the session end reasons (src/gateway/session.ts) or a transport-level reason. */
  readonly reason: string;
  readonly message?: string;
  /**
   * Whether the client should reconnect. Sent in the `close` message; when omitted the transport derives it
   * from the reason (false for admin_kill, user_removed, quota_exceeded, replaced, user_disabled, auth_failed;
   * see NO_RETRY_REASONS in connection-base.ts). The client decides on this flag alone: false ends it, true
   * or absent (the transport ended without the peer's word) reconnects with backoff.
   */
  readonly retry?: boolean;
  /** Set when the gateway refused the session at admission (HTTP/3 carries it in the session close). */
  readonly refused?: Refusal;
}

/** A refusal at admission: the HTTP status and the refusal code (a QG_ERR_* code or a session end reason such as user_limit) with its message. */
export interface Refusal {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

export interface TunnelStats {
  datagramsSent: number;
  datagramsReceived: number;
  /** Packets dropped because the bounded send queue was full. */
  queueDrops: number;
  /** Datagrams or control messages that could not be decoded (dropped). */
  malformed: number;
}

export interface TunnelConnection {
  readonly kind: TransportKind;
  /** "ip:port" of the peer as seen by this side. */
  readonly peer: string;
  readonly stats: TunnelStats;
  /** The largest datagram the transport carries now (HTTP/3: the QUIC path's; it may change). */
  readonly maxDatagramBytes: number;
  /**
   * Queue one IP packet for sending (copied; the caller may reuse its buffer). Packets are coalesced into
   * datagrams. Returns false when the bounded send queue is full: the packet was dropped and counted.
   */
  sendPacket(data: Uint8Array, offset: number, length: number): boolean;
  /**
   * Whether sendSuperPacket may be used: the wire carries datagrams of 64 KB (HTTP/2) and the peer announced
   * framing version 2. Else, or when the super-packet is longer than MAX_WIRE_SUPER_PACKET_BYTES (framing.ts),
   * the caller segments it (src/tun/gso.ts) and sends real packets.
   */
  readonly carriesSuperPackets: boolean;
  /** Queue one super-packet as a unit (copied); false when dropped (queue full or not framable), counted. */
  sendSuperPacket(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): boolean;
  /** Hand queued packets to the wire; called at the end of every batch. */
  flush(): void;
  setReceiver(receiver: PacketReceiver): void;
  setControlHandler(handler: (message: ControlMessage) => void): void;
  sendControl(message: ControlMessage): void;
  /** Close with a reason sent to the peer first (best effort). Idempotent. */
  close(info: CloseInfo): void;
  /** Settles once when the connection is gone, whoever closed it; never rejects. */
  readonly closed: Promise<CloseInfo>;
}

/** What the gateway learns about an incoming session request before any session state exists. */
export interface ConnectRequest {
  readonly user: string;
  readonly password: string;
  /** Source address of the request (no port), for per-source throttling. */
  readonly sourceAddress: string;
  readonly peer: string;
  /** Addresses the client held before (reconnect), a hint only. */
  readonly previousAddresses: readonly string[];
  /** The session this client had and its resume secret (from its assignment), or null: see ResumeClaim. */
  readonly resume: ResumeClaim | null;
  readonly clientVersion: string;
  readonly transport: TransportKind;
}

/**
 * A reconnecting client's claim to its previous session: the id and the secret it was given in that session's
 * assignment. A valid claim ends the old session (`resumed`) and hands its addresses to the new one.
 */
export interface ResumeClaim {
  readonly sessionId: string;
  readonly secret: string;
}

export type AdmissionResult =
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly status: 401 | 403 | 429 | 503; readonly code: string; readonly message: string };

/** Called in the request callback, before the session is accepted. */
export type Admission = (request: ConnectRequest) => Promise<AdmissionResult>;

export interface AcceptedConnection {
  readonly connection: TunnelConnection;
  readonly request: ConnectRequest;
}

export interface TunnelListener {
  readonly kinds: readonly TransportKind[];
  /** Sessions that passed admission and are open. */
  onConnection(handler: (accepted: AcceptedConnection) => void): void;
  /** Stop accepting and close the listener (existing connections are closed by their owners). */
  close(): Promise<void>;
  /** Connections without a session and what was closed for it (listeners with a connection guard). */
  connectionStats?(): ConnectionGuardStats;
}
